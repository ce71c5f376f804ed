//! The results of `bench`, one JSON line per client run, so that a run can
//! stop between points and resume (`bench producer` skips every run already
//! on file) and `bench report` can rebuild `BENCHMARKS.md` from them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Which part of the suite a sample belongs to: `just bench <part>`.
pub const PARTS: &[&str] = &["producer", "consumer", "transport", "limits"];

/// Where a client run sits in the sweeps: the parameters that vary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Value size in bytes (records benchmarks; the transport's payload).
    pub size: u64,
    /// Partitions of the topic.
    pub partitions: u32,
    /// `none`, `lz4` or `zstd`.
    pub compression: String,
    /// Requests in flight (transport), 0 elsewhere.
    pub in_flight: u32,
    /// Records per transaction, 0 when not transactional.
    pub transaction: u64,
}

impl Point {
    /// A records point: `size` bytes on `partitions`, uncompressed.
    pub fn records(size: u64, partitions: u32) -> Self {
        Point {
            size,
            partitions,
            compression: "none".into(),
            in_flight: 0,
            transaction: 0,
        }
    }
}

/// One client's run at one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// One of [`PARTS`].
    pub part: String,
    /// The client (`franz`, `librdkafka`, `java`, `franz-go`, `kafkajs`,
    /// `nestjs`) or, in `limits`, the limit measured.
    pub client: String,
    /// Where in the sweeps.
    pub point: Point,
    /// The repetition, from 0; clients alternate their order per repetition.
    pub rep: u32,
    /// Records (or requests) moved.
    pub units: u64,
    /// Seconds of the measured phase, by the client's own clock.
    pub secs: f64,
    /// CPU seconds (user + system, all threads) of the client's process.
    pub cpu_secs: f64,
    /// Peak resident set of the client's process, MiB.
    pub peak_rss_mib: f64,
    /// Median latency in µs (transport and latency limits), else 0.
    pub p50_us: f64,
    /// 99th percentile latency in µs, else 0.
    pub p99_us: f64,
    /// The commit of franz measured (`git describe`).
    pub commit: String,
    /// When the run ended, in seconds since the Unix epoch (0 for runs
    /// recorded before the field existed): which runs shared a session.
    #[serde(default)]
    pub at: u64,
}

impl Sample {
    /// Records (or requests) per second.
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.secs
    }

    /// CPU nanoseconds per record (or request).
    pub fn cpu_ns_per_unit(&self) -> f64 {
        self.cpu_secs * 1e9 / self.units as f64
    }

    /// Whether this is `client`'s run at `point`, repetition `rep`, in
    /// `part`: the key a resumed run skips by.
    pub fn is_run(&self, part: &str, client: &str, point: &Point, rep: u32) -> bool {
        self.part == part && self.client == client && &self.point == point && self.rep == rep
    }
}

/// The results folder: one `<part>.jsonl` per part.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, part: &str) -> PathBuf {
        self.dir.join(format!("{part}.jsonl"))
    }

    /// Every sample on file for `part`; a line that does not parse (a run
    /// cut off mid-write) is left out.
    pub fn load(&self, part: &str) -> Vec<Sample> {
        let Ok(f) = std::fs::File::open(self.file(part)) else {
            return Vec::new();
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    }

    /// Every sample of every part.
    pub fn load_all(&self) -> Vec<Sample> {
        PARTS.iter().flat_map(|p| self.load(p)).collect()
    }

    /// Appends one sample to its part's file.
    pub fn append(&self, sample: &Sample) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file(&sample.part))?;
        let line = serde_json::to_string(sample).map_err(std::io::Error::other)?;
        writeln!(f, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(client: &str, rep: u32) -> Sample {
        Sample {
            part: "producer".into(),
            client: client.into(),
            point: Point::records(100, 6),
            rep,
            units: 1000,
            secs: 0.5,
            cpu_secs: 0.25,
            peak_rss_mib: 10.0,
            p50_us: 0.0,
            p99_us: 0.0,
            commit: "abc".into(),
            at: 0,
        }
    }

    #[test]
    fn samples_round_trip_and_a_torn_line_is_left_out() {
        let dir = std::env::temp_dir().join(format!("franz-store-{}", std::process::id()));
        let store = Store::new(&dir);
        store.append(&sample("franz", 0)).unwrap();
        store.append(&sample("java", 1)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("producer.jsonl"))
            .unwrap();
        write!(f, "{{\"part\":\"producer\",\"cli").unwrap();
        let loaded = store.load("producer");
        assert_eq!(loaded, vec![sample("franz", 0), sample("java", 1)]);
        let point = Point::records(100, 6);
        assert!(loaded[0].is_run("producer", "franz", &point, 0));
        assert!(!loaded[0].is_run("producer", "franz", &point, 1));
        assert_eq!(loaded[0].rate(), 2000.0);
        assert_eq!(loaded[0].cpu_ns_per_unit(), 250_000.0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
