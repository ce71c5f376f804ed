//! The churn test's member processes: started (this test binary re-run as
//! one member), SIGKILLed, watched for deaths nobody asked for, and their
//! output read into the shared record.

use super::*;

struct Running {
    incarnation: usize,
    child: Child,
    /// Held open: the member exits when it closes.
    _stdin: Option<ChildStdin>,
}

/// The member processes. Dropping it (a panic included) SIGKILLs them all.
pub(crate) struct Members {
    shared: Arc<Mutex<Shared>>,
    bootstrap: String,
    group: String,
    topic: String,
    protocol: &'static str,
    pub(crate) t0: Instant,
    running: Vec<Option<Running>>,
    restarts: Vec<usize>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Members {
    pub(crate) fn new(
        shared: Arc<Mutex<Shared>>,
        bootstrap: &str,
        group: &str,
        topic: &str,
        protocol: &'static str,
    ) -> Self {
        Self {
            shared,
            bootstrap: bootstrap.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            protocol,
            t0: Instant::now(),
            running: (0..MEMBERS).map(|_| None).collect(),
            restarts: vec![0; MEMBERS],
            readers: Vec::new(),
        }
    }

    /// Starts the next incarnation of `slot`.
    pub(crate) fn start(&mut self, slot: usize) {
        assert!(self.running[slot].is_none(), "slot {slot} is running");
        let label = format!("m{slot}.{}", self.restarts[slot]);
        self.restarts[slot] += 1;
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args([
                "churn_member_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("FRANZ_CHURN_MEMBER", &label)
            .env("FRANZ_CHURN_BOOTSTRAP", &self.bootstrap)
            .env("FRANZ_CHURN_GROUP", &self.group)
            .env("FRANZ_CHURN_TOPIC", &self.topic)
            .env("FRANZ_CHURN_PROTOCOL", self.protocol)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting member {label}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let incarnation = {
            let mut s = lock(&self.shared);
            s.incarnations.push(Incarnation {
                label,
                started: self.t0.elapsed(),
                events: Vec::new(),
                other: VecDeque::new(),
                stderr: VecDeque::new(),
                fate: None,
                closed: false,
            });
            s.incarnations.len() - 1
        };
        let shared = Arc::clone(&self.shared);
        self.readers.push(std::thread::spawn(move || {
            read_lines(stdout, |line| {
                let at = Instant::now();
                let event = parse(line);
                let mut s = lock(&shared);
                match event {
                    Some(event) => s.record(incarnation, at, event),
                    None if line.trim().is_empty() => {}
                    None => push_tail(&mut s.incarnations[incarnation].other, line),
                }
            });
            lock(&shared).incarnations[incarnation].closed = true;
        }));
        let shared = Arc::clone(&self.shared);
        self.readers.push(std::thread::spawn(move || {
            read_lines(stderr, |line| {
                push_tail(&mut lock(&shared).incarnations[incarnation].stderr, line);
            });
        }));
        self.running[slot] = Some(Running {
            incarnation,
            _stdin: child.stdin.take(),
            child,
        });
    }

    /// SIGKILLs `slot`'s member and reaps it.
    pub(crate) fn kill(&mut self, slot: usize, why: &str) {
        self.check_alive();
        let Some(mut r) = self.running[slot].take() else {
            return;
        };
        let _ = r.child.kill();
        let status = r
            .child
            .wait()
            .map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
        lock(&self.shared).incarnations[r.incarnation].fate = Some(format!(
            "{why} at +{:.1}s ({status})",
            self.t0.elapsed().as_secs_f64()
        ));
    }

    pub(crate) fn kill_all(&mut self, why: &str) {
        for slot in 0..self.running.len() {
            self.kill(slot, why);
        }
    }

    /// Panics if a member exited without being killed.
    pub(crate) fn check_alive(&mut self) {
        let mut dead = Vec::new();
        for r in self.running.iter_mut().flatten() {
            if let Ok(Some(status)) = r.child.try_wait() {
                dead.push((r.incarnation, status));
            }
        }
        if dead.is_empty() {
            return;
        }
        let labels: Vec<String> = {
            let mut s = lock(&self.shared);
            dead.iter()
                .map(|(i, status)| {
                    s.incarnations[*i].fate = Some(format!(
                        "exited on its own at +{:.1}s: {status}",
                        self.t0.elapsed().as_secs_f64()
                    ));
                    s.incarnations[*i].label.clone()
                })
                .collect()
        };
        // Let the readers collect the last lines it wrote.
        std::thread::sleep(Duration::from_millis(300));
        let state = lock(&self.shared).describe();
        panic!(
            "{}: member {} exited without being killed:\n{state}",
            self.protocol,
            labels.join(", ")
        );
    }

    /// Waits until every reader has read its stream to the end (every
    /// member is dead by then).
    pub(crate) async fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.readers.iter().any(|r| !r.is_finished()) {
            if Instant::now() >= deadline {
                let state = lock(&self.shared).describe();
                panic!(
                    "{}: the members' output did not end within 10 s of their death:\n{state}",
                    self.protocol
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for r in self.readers.drain(..) {
            r.join().expect("a reader thread panicked");
        }
    }

    /// Sleeps until `until`, checking that no member died on its own.
    pub(crate) async fn watch(&mut self, until: Instant) {
        loop {
            self.check_alive();
            let now = Instant::now();
            if now >= until {
                return;
            }
            tokio::time::sleep(CHECK_EVERY.min(until - now)).await;
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for r in self.running.iter_mut().filter_map(Option::take) {
            let mut child = r.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
