//! The sans-io frame codec: Kafka's responses are frames of a 4-byte
//! big-endian length and that many bytes. [`FrameDecoder`] cuts complete
//! frames from the front of a buffer and says how many bytes it needs when
//! none is complete, so the reader task only moves bytes and the rules live
//! here, testable without a socket.
//!
//! The length is checked against the limit before anything is reserved for
//! it: a hostile or corrupt length (2 GiB, negative) costs nothing and is a
//! typed [`DecodeError::LengthOutOfRange`].

use bytes::{Buf, Bytes, BytesMut};
use franz_protocol::DecodeError;

/// The size of the length prefix.
const PREFIX: usize = 4;

/// What [`FrameDecoder::decode`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framed {
    /// A complete frame's body (correlation id first), without its length;
    /// it shares the buffer's memory.
    Frame(Bytes),
    /// No complete frame yet: the buffer must hold at least this many bytes
    /// in total before the next call can return one.
    Need(usize),
}

/// Cuts size-prefixed frames out of a byte stream, refusing lengths outside
/// `4..=max_frame` (a body always holds at least a correlation id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder accepting bodies of at most `max_frame` bytes.
    pub(crate) fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// Takes the next complete frame from the front of `buf`, or says how
    /// much of it there must be. A bad length is an error and leaves `buf`
    /// as it was: the stream cannot be trusted past it.
    pub(crate) fn decode(&self, buf: &mut BytesMut) -> Result<Framed, DecodeError> {
        let Some(prefix) = buf.first_chunk::<PREFIX>() else {
            return Ok(Framed::Need(PREFIX));
        };
        let len = i32::from_be_bytes(*prefix);
        let Some(len) = usize::try_from(len)
            .ok()
            .filter(|l| (PREFIX..=self.max_frame).contains(l))
        else {
            return Err(DecodeError::LengthOutOfRange {
                field: "response frame length",
                length: i64::from(len),
                limit: self.max_frame,
            });
        };
        if buf.len() < PREFIX + len {
            return Ok(Framed::Need(PREFIX + len));
        }
        buf.advance(PREFIX);
        Ok(Framed::Frame(buf.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn frames_arriving_in_pieces_come_out_whole_and_in_order() {
        let mut stream = framed(&[0, 0, 0, 1, 0xaa]);
        stream.extend(framed(&[0, 0, 0, 2]));
        let decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in stream {
            buf.extend_from_slice(&[byte]);
            while let Ok(Framed::Frame(f)) = decoder.decode(&mut buf) {
                frames.push(f);
            }
        }
        assert_eq!(
            frames,
            vec![
                Bytes::from_static(&[0, 0, 0, 1, 0xaa]),
                Bytes::from_static(&[0, 0, 0, 2])
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn an_incomplete_frame_asks_for_its_whole_length() {
        let decoder = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Framed::Need(4)));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Framed::Need(14)));
        assert_eq!(buf.len(), 6, "nothing is consumed until the frame is whole");
    }

    #[test]
    fn lengths_outside_the_limit_are_refused_before_any_body_arrives() {
        let decoder = FrameDecoder::new(1 << 20);
        for prefix in [
            [0x7f, 0xff, 0xff, 0xff],
            [0xff, 0xff, 0xff, 0xff],
            [0, 0, 0, 3],
            [0, 0x10, 0, 1],
        ] {
            let mut buf = BytesMut::from(&prefix[..]);
            let err = decoder.decode(&mut buf).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::LengthOutOfRange {
                        limit: 0x10_0000,
                        ..
                    }
                ),
                "{prefix:?}: {err}"
            );
            assert_eq!(buf.len(), 4);
        }
        let mut buf = BytesMut::from(&framed(&[0; 0x10_0000])[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Framed::Frame(f)) if f.len() == 0x10_0000));
    }
}
