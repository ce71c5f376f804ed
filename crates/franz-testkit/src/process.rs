//! One broker JVM, run under `watchdog.sh` so it can never outlive the test
//! process, plus the signals the fault tests send it.
#![allow(clippy::disallowed_methods)] // the testkit drives processes and waits on them

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{HarnessError, IoContext};

/// A running broker: the watchdog child and the JVM's pid.
#[derive(Debug)]
pub(crate) struct BrokerProcess {
    watchdog: Child,
    /// Held, never written: when the test process dies the pipe closes and
    /// the watchdog kills the JVM.
    _lifeline: ChildStdin,
    java_pid: Pid,
}

impl BrokerProcess {
    /// Starts `java args...` under `watchdog`, appending output to `log`.
    pub(crate) fn spawn(
        watchdog: &Path,
        log: &Path,
        java: &Path,
        args: &[String],
        banner: &str,
    ) -> Result<Self, HarnessError> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .ctx(|| format!("opening {}", log.display()))?;
        writeln!(f, "==== franz-testkit: {banner} ====")
            .ctx(|| format!("writing {}", log.display()))?;
        drop(f);

        let mut child = Command::new("bash")
            .arg(watchdog)
            .arg(log)
            .arg(java)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ctx(|| "starting the broker watchdog (bash)".into())?;
        let lifeline = child
            .stdin
            .take()
            .ok_or_else(|| HarnessError::Config("watchdog stdin missing".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Config("watchdog stdout missing".into()))?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .ctx(|| "reading the broker pid from the watchdog".into())?;
        let pid: i32 = line.trim().parse().map_err(|_| {
            HarnessError::Config(format!("watchdog printed {line:?} instead of a pid"))
        })?;
        Ok(Self {
            watchdog: child,
            _lifeline: lifeline,
            java_pid: Pid::from_raw(pid),
        })
    }

    /// The JVM's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.java_pid.as_raw()
    }

    /// `Some(status)` once the JVM (and so the watchdog) has exited.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match self.watchdog.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Sends `signal` to the JVM. A process that is already gone is fine.
    pub(crate) fn signal(&self, signal: Signal) {
        let _ = kill(self.java_pid, signal);
    }

    /// Waits up to `timeout` until every thread of the JVM is stopped
    /// (state `T`). SIGSTOP reaches a many-threaded process thread by
    /// thread, so a request sent right after the signal could still be
    /// answered.
    pub(crate) fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let dir = format!("/proc/{}/task", self.java_pid.as_raw());
        loop {
            let all_stopped = fs::read_dir(&dir)
                .map(|tasks| {
                    tasks.flatten().all(|t| {
                        fs::read_to_string(t.path().join("stat"))
                            .ok()
                            .and_then(|s| {
                                s.rfind(')')
                                    .and_then(|i| s[i + 1..].trim_start().chars().next())
                            })
                            .is_none_or(|state| matches!(state, 'T' | 't' | 'Z' | 'X'))
                    })
                })
                .unwrap_or(true);
            if all_stopped {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `timeout` for the JVM to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exit_status().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill_now(&mut self) {
        // A stopped (paused) JVM still dies on SIGKILL.
        self.signal(Signal::SIGKILL);
        if !self.wait_exit(Duration::from_secs(10)) {
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
    }

    /// SIGTERM (Kafka's controlled shutdown), SIGKILL after `grace`.
    pub(crate) fn terminate(&mut self, grace: Duration) -> bool {
        // A paused JVM cannot handle SIGTERM until it runs again.
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        if self.wait_exit(grace) {
            return true;
        }
        self.kill_now();
        false
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            self.kill_now();
        }
    }
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub(crate) fn tail_file(path: &Path, n: usize) -> String {
    fs::read(path)
        .map(|b| crate::dist::last_lines(&String::from_utf8_lossy(&b), n))
        .unwrap_or_default()
}
