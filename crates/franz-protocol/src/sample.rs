//! Deterministic random values for property and differential tests (feature
//! `sample`). Generated messages use [`SampleGen`] to build a random message
//! that is valid for a given version.

use bytes::Bytes;

/// A small seeded generator (xorshift64*): reproducible from its seed, no
/// dependency.
#[derive(Debug, Clone)]
pub struct SampleGen {
    state: u64,
    depth_budget: u32,
}

impl SampleGen {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            depth_budget: 64,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A boolean.
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// True about one time in four: use null where null is allowed.
    pub fn null(&mut self) -> bool {
        self.below(4) == 0
    }

    /// An `i8`.
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }

    /// An `i16`.
    pub fn i16(&mut self) -> i16 {
        self.next_u64() as i16
    }

    /// A `u16`.
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    /// An `i32`, often small, sometimes extreme.
    pub fn i32(&mut self) -> i32 {
        match self.below(4) {
            0 => self.below(5) as i32 - 1,
            1 => i32::MAX - self.below(2) as i32,
            _ => self.next_u64() as i32,
        }
    }

    /// A `u32`.
    pub fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    /// An `i64`.
    pub fn i64(&mut self) -> i64 {
        match self.below(4) {
            0 => self.below(5) as i64 - 1,
            _ => self.next_u64() as i64,
        }
    }

    /// An `f64` that round-trips exactly.
    pub fn f64(&mut self) -> f64 {
        self.below(1 << 20) as f64 / 8.0
    }

    /// 16 random bytes.
    pub fn uuid(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        id
    }

    /// A short string, sometimes empty, sometimes not ASCII.
    pub fn string(&mut self) -> String {
        const PIECES: &[&str] = &["topic", "-", "g", "0", "é", "✓", "_x", "Z"];
        let n = self.below(6);
        (0..n)
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    /// A short byte string.
    pub fn bytes(&mut self) -> Bytes {
        let n = self.below(12) as usize;
        Bytes::from((0..n).map(|_| self.next_u64() as u8).collect::<Vec<u8>>())
    }

    /// An array length: 0 to 3, shrinking as structures nest so samples stay
    /// small.
    pub fn array_len(&mut self) -> usize {
        if self.depth_budget == 0 {
            return 0;
        }
        self.depth_budget -= 1;
        self.below(4) as usize
    }
}
