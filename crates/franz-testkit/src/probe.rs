//! A tiny blocking Kafka client used only to decide that a cluster is ready.
//!
//! The harness must not depend on the franz codec it exists to test, so this
//! speaks two fixed, non-flexible versions by hand: Metadata v1 (brokers,
//! topics, partition ISRs) and FindCoordinator v1 (which makes the broker
//! create `__consumer_offsets`). Every length is checked against the bytes
//! that remain before anything is read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::HarnessError;

/// What Metadata v1 says about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Node ids of the registered, unfenced brokers.
    pub brokers: Vec<i32>,
    /// Every topic, with its partitions.
    pub topics: Vec<TopicView>,
}

/// One topic in a [`ClusterView`].
#[derive(Debug, Clone)]
pub struct TopicView {
    /// Topic name.
    pub name: String,
    /// Whether Kafka marks it internal (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Topic-level error code (0 = none).
    pub error_code: i16,
    /// Partitions.
    pub partitions: Vec<PartitionView>,
}

/// One partition in a [`TopicView`].
#[derive(Debug, Clone)]
pub struct PartitionView {
    /// Partition index.
    pub index: i32,
    /// Leader node id, -1 when leaderless.
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

const CLIENT_ID: &str = "franz-testkit-probe";
const MAX_FRAME: usize = 16 << 20;

/// Asks `addr` for Metadata v1 on all topics.
pub fn metadata(addr: SocketAddr, timeout: Duration) -> Result<ClusterView, HarnessError> {
    // Body: topics = null (all topics).
    let body = (-1i32).to_be_bytes();
    let resp = round_trip(addr, timeout, 3, 1, &body)?;
    let mut r = Reader::new(&resp);
    let mut view = ClusterView::default();
    for _ in 0..r.array_len()? {
        view.brokers.push(r.i32()?);
        r.string()?; // host
        r.i32()?; // port
        r.nullable_string()?; // rack
    }
    r.i32()?; // controller id
    for _ in 0..r.array_len()? {
        let error_code = r.i16()?;
        let name = r.string()?;
        let internal = r.i8()? != 0;
        let mut partitions = Vec::new();
        for _ in 0..r.array_len()? {
            r.i16()?; // partition error
            let index = r.i32()?;
            let leader = r.i32()?;
            let replicas = r.i32_array()?;
            let isr = r.i32_array()?;
            partitions.push(PartitionView {
                index,
                leader,
                replicas,
                isr,
            });
        }
        view.topics.push(TopicView {
            name,
            internal,
            error_code,
            partitions,
        });
    }
    view.brokers.sort_unstable();
    Ok(view)
}

/// Sends FindCoordinator v1 for `group` and returns the error code (0 once
/// the group coordinator, and so `__consumer_offsets`, is available).
pub fn find_group_coordinator(
    addr: SocketAddr,
    group: &str,
    timeout: Duration,
) -> Result<i16, HarnessError> {
    let mut body = Vec::new();
    put_string(&mut body, group);
    body.push(0); // key type: group
    let resp = round_trip(addr, timeout, 10, 1, &body)?;
    let mut r = Reader::new(&resp);
    r.i32()?; // throttle
    r.i16()
}

fn round_trip(
    addr: SocketAddr,
    timeout: Duration,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Vec<u8>, HarnessError> {
    let io = |e: std::io::Error| HarnessError::Probe(format!("{addr}: {e}"));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let correlation_id = 0x7e57_0001_i32;
    let mut frame = Vec::with_capacity(64 + body.len());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    put_string(&mut frame, CLIENT_ID);
    frame.extend_from_slice(body);
    let len = i32::try_from(frame.len() - 4)
        .map_err(|_| HarnessError::Probe("request too large".into()))?;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&frame).map_err(io)?;

    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(io)?;
    let len = usize::try_from(i32::from_be_bytes(len))
        .ok()
        .filter(|l| (4..=MAX_FRAME).contains(l))
        .ok_or_else(|| HarnessError::Probe(format!("{addr}: bad response length")))?;
    let mut resp = vec![0u8; len];
    stream.read_exact(&mut resp).map_err(io)?;
    let got = i32::from_be_bytes([resp[0], resp[1], resp[2], resp[3]]);
    if got != correlation_id {
        return Err(HarnessError::Probe(format!(
            "{addr}: correlation id {got}, expected {correlation_id}"
        )));
    }
    resp.drain(..4);
    Ok(resp)
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    // Only ever called with short, harness-chosen strings.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HarnessError> {
        if n > self.buf.len() {
            return Err(HarnessError::Probe(format!(
                "response truncated: needed {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn i8(&mut self) -> Result<i8, HarnessError> {
        Ok(i8::from_be_bytes([self.take(1)?[0]]))
    }

    fn i16(&mut self) -> Result<i16, HarnessError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, HarnessError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn array_len(&mut self) -> Result<usize, HarnessError> {
        let n = self.i32()?;
        // -1 (null) reads as empty; anything larger than the remaining bytes
        // could ever hold is malformed.
        let n = usize::try_from(n.max(0)).unwrap_or(0);
        if n > self.buf.len() {
            return Err(HarnessError::Probe(format!(
                "array of {n} in {} bytes",
                self.buf.len()
            )));
        }
        Ok(n)
    }

    fn i32_array(&mut self) -> Result<Vec<i32>, HarnessError> {
        (0..self.array_len()?).map(|_| self.i32()).collect()
    }

    fn nullable_string(&mut self) -> Result<Option<String>, HarnessError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn string(&mut self) -> Result<String, HarnessError> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }
}
