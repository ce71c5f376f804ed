//! Tests that kill a client process: a `harness = false` test binary whose
//! `main` either runs the test or, when the test re-runs the binary with a
//! spec in an environment variable, plays the process that the test kills
//! (a transport server, a consume-transform-produce app).
//!
//! ```no_run
//! use franz_testkit::subprocess;
//! fn main() {
//!     let runtime = subprocess::runtime();
//!     if let Ok(spec) = std::env::var("MY_CHILD") {
//!         return runtime.block_on(async move { /* the child, from `spec` */ });
//!     }
//!     subprocess::run_single_test(&runtime, "my_test", async {
//!         let child = subprocess::spawn_self("MY_CHILD", "{}", Some("READY")).unwrap();
//!         // ... kill it, check what happened ...
//!     });
//! }
//! ```
#![allow(clippy::disallowed_methods)] // the testkit drives processes and waits on them

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, IoContext};

/// The runtime such a binary runs its test (or child) on: two workers, as
/// the `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` tests.
///
/// # Panics
/// If tokio cannot start a runtime (no threads): nothing to test with.
pub fn runtime() -> tokio::runtime::Runtime {
    #[allow(clippy::expect_used)] // a test binary's set-up: a panic is the report
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `test` as the binary's one test, printing what libtest prints, so
/// that `cargo test` output reads the same as for harnessed tests. A panic
/// in `test` fails the binary, as in libtest.
pub fn run_single_test(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    test: impl Future<Output = ()>,
) {
    let started = Instant::now();
    println!("\nrunning 1 test");
    runtime.block_on(test);
    println!(
        "test {name} ... ok\n\n\
         test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; \
         finished in {:.2}s\n",
        started.elapsed().as_secs_f64()
    );
}

/// Re-runs this binary with `env` set to `spec`, stderr inherited. With
/// `ready`, waits (up to two minutes) until the child prints that line on
/// stdout; without, its stdout is inherited.
pub fn spawn_self(env: &str, spec: &str, ready: Option<&str>) -> Result<Child, HarnessError> {
    let exe = std::env::current_exe().ctx(|| "finding this test binary".into())?;
    let mut child = Command::new(exe)
        .env(env, spec)
        .stdin(Stdio::null())
        .stdout(if ready.is_some() {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .ctx(|| format!("starting this test binary as {env}"))?;
    let (Some(ready), Some(stdout)) = (ready, child.stdout.take()) else {
        return Ok(child);
    };
    let ready = ready.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == ready {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HarnessError::Config(format!(
            "the {env} subprocess never became ready"
        )));
    }
    Ok(child)
}
