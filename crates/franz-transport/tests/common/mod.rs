//! Helpers shared by the transport's broker tests.
#![allow(clippy::disallowed_methods)] // test support drives real time: it waits and measures
#![allow(dead_code)] // each test file uses its own subset

/// One `#[tokio::test]` per NestJS major for `$body(NestVersion, ..)`.
#[allow(unused_macros)] // used by the NestJS suites only
macro_rules! per_nest_version {
    ($($name:ident => $body:ident;)*) => {
        mod nest11 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $body(franz_testkit::node::NestVersion::V11).await
                }
            )*
        }
        mod nest12 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $body(franz_testkit::node::NestVersion::V12).await
                }
            )*
        }
    };
}

use franz_client::{Admin, Client, ClientConfig};
#[allow(unused_imports)] // each test file uses its own subset
pub(crate) use franz_test_support::{
    bootstrap, create_topic, create_topics, wait_for_group_members, wait_until,
};

/// An admin client on `b`.
pub(crate) async fn admin(b: &str) -> Admin {
    Admin::new(Client::connect(ClientConfig::new(b)).await.unwrap())
}

/// A NestJS script running in the background until [`NestPeer::stop`].
pub(crate) struct NestPeer {
    stop_file: std::path::PathBuf,
    run: tokio::task::JoinHandle<Result<String, franz_testkit::HarnessError>>,
}

impl NestPeer {
    /// Runs `node <script> <args...> <stopFile> <tail...>` on NestJS `nest`:
    /// the script serves until the stop file exists.
    pub(crate) fn start(
        nest: franz_testkit::node::NestVersion,
        script: &str,
        args: &[&str],
        tail: &[&str],
    ) -> Self {
        let stop_file = std::env::temp_dir().join(franz_testkit::unique_topic("nest-stop"));
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.push(stop_file.display().to_string());
        all.extend(tail.iter().map(|a| a.to_string()));
        let run = spawn_script(nest, script, all);
        Self { stop_file, run }
    }

    /// Tells the script to stop and returns its stdout.
    pub(crate) async fn stop(self) -> String {
        std::fs::write(&self.stop_file, b"stop").unwrap();
        let out = self.run.await.unwrap().unwrap();
        let _ = std::fs::remove_file(&self.stop_file);
        out
    }
}

/// The JSON after `prefix` on a line of a script's output.
pub(crate) fn output_line(out: &str, prefix: &str) -> serde_json::Value {
    let text = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("`{prefix}{text}`: {e}"))
}

/// Runs a NestJS script that exits by itself and returns its stdout.
pub(crate) async fn run_nest(
    nest: franz_testkit::node::NestVersion,
    script: &str,
    args: &[&str],
) -> String {
    let args = args.iter().map(|a| a.to_string()).collect();
    spawn_script(nest, script, args).await.unwrap().unwrap()
}

/// The JSON after `prefix` on the first line of a script's output that
/// starts with it (the scripts print `reply {...}`, `events [...]`).
pub(crate) fn json_line(out: &str, prefix: &str) -> serde_json::Value {
    let text = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{out}"));
    serde_json::from_str(text).unwrap()
}

/// Runs `node <script> <args...>` on a blocking thread (deadline 300 s).
pub(crate) fn spawn_script(
    nest: franz_testkit::node::NestVersion,
    script: &str,
    args: Vec<String>,
) -> tokio::task::JoinHandle<Result<String, franz_testkit::HarnessError>> {
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        franz_testkit::node::run_script_on(
            nest,
            &script,
            &refs,
            std::time::Duration::from_secs(300),
        )
    })
}

/// Produces one record (string value, string headers) and waits for its ack.
pub(crate) async fn produce(
    b: &str,
    topic: &str,
    partition: i32,
    value: &str,
    headers: &[(&str, &str)],
) {
    let producer = franz_producer::Producer::new(franz_producer::ProducerConfig::new(b))
        .await
        .unwrap();
    let mut r =
        franz_producer::ProducerRecord::new(topic, value.to_string()).with_partition(partition);
    for (k, v) in headers {
        r = r.with_header(*k, v.to_string());
    }
    producer.send(r).await.unwrap().await.unwrap();
    producer
        .close(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

/// Reads `n` records of `topic` from the start.
pub(crate) async fn read(b: &str, topic: &str, n: usize) -> Vec<franz_consumer::ConsumerRecord> {
    let mut c = franz_consumer::ConsumerConfig::new(b);
    c.auto_offset_reset = franz_consumer::OffsetReset::Earliest;
    let mut consumer = franz_consumer::Consumer::new(c).await.unwrap();
    consumer.assign_topic(topic).await.unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: {} of {n}",
            got.len()
        );
        got.extend(
            consumer
                .poll(std::time::Duration::from_millis(300))
                .await
                .unwrap(),
        );
    }
    got
}
