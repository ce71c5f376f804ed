//! Fixed loopback ports for brokers, reserved across processes.
//!
//! A node keeps its ports across restarts, so they must lie below Linux's
//! ephemeral range (32768–60999): a port up there can be taken by some
//! outgoing connection while the node is down. Each cluster reserves one block
//! of [`BLOCK_SIZE`] ports by holding an exclusive lock on a file named after
//! the block; the lock dies with the process, so a crashed test never leaks a
//! reservation. A block is only taken when every port in it can be bound.

use std::fs::{self, File, TryLockError};
use std::net::TcpListener;
use std::path::PathBuf;

use crate::error::{HarnessError, IoContext};

/// Ports in one block: 3 nodes × [`PORTS_PER_NODE`].
pub(crate) const BLOCK_SIZE: u16 = 32;
/// Ports each node uses, at fixed offsets (see [`NodePorts`]).
pub(crate) const PORTS_PER_NODE: u16 = 8;
const FIRST_PORT: u16 = 20_000;
const LAST_PORT: u16 = 32_767;

/// A reserved block of loopback ports; released when dropped.
#[derive(Debug)]
pub(crate) struct PortBlock {
    base: u16,
    _lock: File,
}

/// The ports of one node, each at a fixed offset in the cluster's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodePorts {
    /// Client-facing PLAINTEXT listener (the broker binds it).
    pub(crate) plaintext: u16,
    /// KRaft controller listener.
    pub(crate) controller: u16,
    /// Inter-broker listener, kept off the client path so a fault proxy never
    /// disturbs replication.
    pub(crate) internal: u16,
    /// SSL listener.
    pub(crate) ssl: u16,
    /// SASL_PLAINTEXT listener.
    pub(crate) sasl_plaintext: u16,
    /// SASL_SSL listener.
    pub(crate) sasl_ssl: u16,
    /// Where the fault proxy listens when the cluster has one.
    pub(crate) proxy: u16,
    /// Where the PLAINTEXT listener goes when the cluster moves it
    /// ([`KafkaCluster::move_client_ports`](crate::KafkaCluster::move_client_ports)).
    pub(crate) spare: u16,
}

impl PortBlock {
    /// Reserves a free block, trying blocks in an order seeded by the pid so
    /// that concurrent test processes rarely contend.
    pub(crate) fn reserve() -> Result<Self, HarnessError> {
        let dir = lock_dir();
        fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let blocks = (LAST_PORT - FIRST_PORT + 1) / BLOCK_SIZE;
        let start = (std::process::id() as u16).wrapping_mul(7919) % blocks;
        let mut busy = 0u32;
        for i in 0..blocks {
            let block = (start + i) % blocks;
            let base = FIRST_PORT + block * BLOCK_SIZE;
            let path = dir.join(format!("ports-{base}.lock"));
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .ctx(|| format!("opening {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    return Err(HarnessError::Io {
                        context: format!("locking {}", path.display()),
                        source: e,
                    });
                }
            }
            if (base..base + BLOCK_SIZE).all(port_is_free) {
                return Ok(Self { base, _lock: file });
            }
            busy += 1;
        }
        Err(HarnessError::PortClash(format!(
            "no block of {BLOCK_SIZE} free loopback ports between {FIRST_PORT} and {LAST_PORT} ({busy} blocks had a port in use by another program, the rest were reserved by other test processes)"
        )))
    }

    /// The ports of node `index` (0-based) in this block.
    pub(crate) fn node(&self, index: u16) -> NodePorts {
        let b = self.base + index * PORTS_PER_NODE;
        NodePorts {
            plaintext: b,
            controller: b + 1,
            internal: b + 2,
            ssl: b + 3,
            sasl_plaintext: b + 4,
            sasl_ssl: b + 5,
            proxy: b + 6,
            spare: b + 7,
        }
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("franz-testkit-locks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_overlap_and_stay_below_the_ephemeral_range() {
        let a = PortBlock::reserve().unwrap();
        let b = PortBlock::reserve().unwrap();
        assert_ne!(a.base, b.base);
        for block in [&a, &b] {
            let last = block.node(2);
            assert!(last.spare < 32_768);
            assert!(last.spare < block.base + BLOCK_SIZE);
        }
    }
}
