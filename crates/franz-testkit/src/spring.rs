//! Spring Kafka peers: `java/SpringEcho.java` (a `@KafkaListener` with
//! `@SendTo`, and a `ReplyingKafkaTemplate`) compiled against the Spring
//! Kafka classpath Maven resolves from `spring/pom.xml`, for the
//! transport's interop test and benchmark.
//!
//! ```no_run
//! # fn main() -> Result<(), franz_testkit::HarnessError> {
//! let spring = franz_testkit::spring::SpringPeer::resolve()?;
//! let server = spring.server("127.0.0.1:9092", "echo", "echo-group", 1)?;
//! // ... call it; dropping `server` stops the process.
//! # drop(server); Ok(()) }
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::dist::{
    cache_base, compile_with, find_java, fnv1a, lock_dir, resolve_classpath, run_with_timeout,
    write_if_changed as write,
};
use crate::error::{HarnessError, IoContext};

const POM: &str = include_str!("../spring/pom.xml");
const SOURCE: &str = include_str!("../java/SpringEcho.java");

/// The Spring Kafka peer program, resolved and compiled.
#[derive(Debug)]
pub struct SpringPeer {
    java: PathBuf,
    /// `SpringEcho`'s classes, then the Spring Kafka jars.
    classpath: String,
}

static RESOLVED: Mutex<Option<Arc<SpringPeer>>> = Mutex::new(None);

impl SpringPeer {
    /// Resolves Spring Kafka with Maven and compiles `SpringEcho`, once per
    /// process (and once per machine: both are cached). Blocking.
    pub fn resolve() -> Result<Arc<Self>, HarnessError> {
        let mut slot = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(peer) = slot.as_ref() {
            return Ok(Arc::clone(peer));
        }
        let java = find_java()?;
        let home = cache_base().join(format!("spring-{:016x}", fnv1a(POM.as_bytes())));
        let _lock = lock_dir(&home)?;
        write(&home.join("pom.xml"), POM)?;
        let source = home.join("SpringEcho.java");
        write(&source, SOURCE)?;
        let jars = resolve_classpath(&home, "Spring Kafka", &["spring-kafka-", "kafka-clients-"])?;
        let classes = compile_with(&java, &home, &source, &jars)?;
        let peer = Arc::new(Self {
            java,
            classpath: format!("{}:{jars}", classes.display()),
        });
        *slot = Some(Arc::clone(&peer));
        Ok(peer)
    }

    /// A `java` command running `SpringEcho` with `args` (see its header
    /// for the modes).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.java);
        cmd.arg("-Xmx512m")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-cp")
            .arg(&self.classpath)
            .arg("SpringEcho")
            .args(args);
        cmd
    }

    /// Starts the `@KafkaListener` echoing on `topic` in `group` with
    /// `concurrency` consumers, and waits (at most 90 s) until it holds
    /// partitions.
    pub fn server(
        &self,
        bootstrap: &str,
        topic: &str,
        group: &str,
        concurrency: usize,
    ) -> Result<SpringServer, HarnessError> {
        let mut child = self
            .command(&["server", bootstrap, topic, group, &concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ctx(|| "starting the Spring listener".to_string())?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.trim() == "READY" {
                        let _ = tx.send(());
                    }
                }
            });
        }
        let server = SpringServer { child, stdin };
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(()) => Ok(server),
            Err(_) => Err(HarnessError::Config(
                "the Spring listener did not report READY within 90 s".into(),
            )),
        }
    }

    /// Runs the `ReplyingKafkaTemplate` against `topic`: `requests` calls
    /// with `concurrency` in flight, at most `timeout`; returns its stdout
    /// (the `RESULT` line).
    pub fn client(
        &self,
        bootstrap: &str,
        topic: &str,
        requests: usize,
        concurrency: usize,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let mut cmd = self.command(&[
            "client",
            bootstrap,
            topic,
            &requests.to_string(),
            &concurrency.to_string(),
        ]);
        cmd.stdin(Stdio::null());
        run_with_timeout(cmd, timeout, "SpringEcho client")?.into_stdout("SpringEcho client")
    }
}

/// A running Spring listener; dropped, it is told to stop (stdin closes)
/// and killed if it has not within 10 s.
#[derive(Debug)]
pub struct SpringServer {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for SpringServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
