//! The nodes' lifecycle: broker properties, formatting, spawning, readiness probes and liveness checks.

use super::*;

impl Inner {
    pub(super) fn node(&self, id: i32) -> Result<MutexGuard<'_, Node>, HarnessError> {
        Ok(lock(&self.nodes[index(id, self.nodes.len())?]))
    }

    pub(super) fn write_configs(&self) -> Result<(), HarnessError> {
        let voters = self
            .nodes
            .iter()
            .map(|n| {
                let n = lock(n);
                format!("{}@127.0.0.1:{}", n.id, n.ports.controller)
            })
            .collect::<Vec<_>>()
            .join(",");
        for node in &self.nodes {
            let n = lock(node);
            fs::create_dir_all(n.dir.join("data"))
                .ctx(|| format!("creating {}", n.dir.display()))?;
            let props = self.properties(&n, &voters);
            fs::write(&n.config, render_properties(&props))
                .ctx(|| format!("writing {}", n.config.display()))?;
        }
        Ok(())
    }

    /// The broker properties for one node: harness defaults, listeners, then
    /// the builder's overrides (which win).
    pub(super) fn properties(&self, n: &Node, voters: &str) -> Vec<(String, String)> {
        let s = &self.settings;
        let three = self.nodes.len() == 3;
        let rf = if three { "3" } else { "1" };
        let min_isr = if three { "2" } else { "1" };
        let mut listeners = vec![
            format!("CONTROLLER://127.0.0.1:{}", n.ports.controller),
            format!("INTERNAL://127.0.0.1:{}", n.ports.internal),
        ];
        let mut advertised = vec![format!("INTERNAL://127.0.0.1:{}", n.ports.internal)];
        for l in &s.listeners {
            let port = l.port(&n.ports);
            listeners.push(format!("{}://127.0.0.1:{port}", l.as_str()));
            let adv = if *l == SecurityProtocol::Plaintext && !self.proxies.is_empty() {
                n.ports.proxy
            } else {
                port
            };
            advertised.push(format!("{}://127.0.0.1:{adv}", l.as_str()));
        }
        let mut p: Vec<(String, String)> = [
            ("process.roles", "broker,controller".to_string()),
            ("node.id", n.id.to_string()),
            ("controller.quorum.voters", voters.to_string()),
            ("listeners", listeners.join(",")),
            ("advertised.listeners", advertised.join(",")),
            ("inter.broker.listener.name", "INTERNAL".into()),
            ("controller.listener.names", "CONTROLLER".into()),
            (
                "listener.security.protocol.map",
                "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL".into(),
            ),
            ("log.dirs", n.dir.join("data").display().to_string()),
            ("num.partitions", "1".into()),
            ("default.replication.factor", rf.into()),
            ("min.insync.replicas", min_isr.into()),
            ("offsets.topic.replication.factor", rf.into()),
            ("offsets.topic.num.partitions", "3".into()),
            ("transaction.state.log.replication.factor", rf.into()),
            ("transaction.state.log.min.isr", min_isr.into()),
            ("transaction.state.log.num.partitions", "3".into()),
            ("share.coordinator.state.topic.replication.factor", rf.into()),
            ("share.coordinator.state.topic.min.isr", min_isr.into()),
            ("auto.create.topics.enable", "false".into()),
            ("group.initial.rebalance.delay.ms", "0".into()),
            // Classic groups: allow short session timeouts in tests.
            ("group.min.session.timeout.ms", "1000".into()),
            // KIP-848 groups: seconds, not the 5 s / 45 s production defaults.
            ("group.consumer.heartbeat.interval.ms", "1000".into()),
            ("group.consumer.min.heartbeat.interval.ms", "100".into()),
            ("group.consumer.session.timeout.ms", "10000".into()),
            ("group.consumer.min.session.timeout.ms", "1000".into()),
            // Two cores: few threads, small buffers.
            ("num.network.threads", "2".into()),
            ("num.io.threads", if three { "2" } else { "4" }.into()),
            ("num.replica.fetchers", "1".into()),
            ("background.threads", "2".into()),
            ("log.cleaner.threads", "1".into()),
            ("log.cleaner.dedupe.buffer.size", "16777216".into()),
            // Three JVMs on two cores stall now and then; do not let a GC
            // pause start a controller election or fence a broker.
            ("controller.quorum.election.timeout.ms", if three { "3000" } else { "1000" }.into()),
            ("controller.quorum.fetch.timeout.ms", if three { "6000" } else { "2000" }.into()),
            ("broker.session.timeout.ms", "6000".into()),
            ("broker.heartbeat.interval.ms", "1000".into()),
            ("replica.lag.time.max.ms", "10000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        if let Some(tls) = &self.tls {
            let auth = match s.client_auth {
                ClientAuth::None => "none",
                ClientAuth::Requested => "requested",
                ClientAuth::Required => "required",
            };
            for l in s.listeners.iter().filter(|l| l.uses_tls()) {
                let prefix = format!("listener.name.{}.", l.as_str().to_ascii_lowercase());
                for (k, v) in [
                    ("ssl.keystore.type", "PEM"),
                    (
                        "ssl.keystore.certificate.chain",
                        tls.server_chain_pem.as_str(),
                    ),
                    ("ssl.keystore.key", tls.server_key_pem.as_str()),
                    ("ssl.truststore.type", "PEM"),
                    ("ssl.truststore.certificates", tls.ca_pem.as_str()),
                    ("ssl.client.auth", auth),
                ] {
                    p.push((format!("{prefix}{k}"), v.to_string()));
                }
            }
        }
        if s.listeners.iter().any(|l| l.uses_sasl()) {
            p.push((
                "sasl.enabled.mechanisms".into(),
                "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER".into(),
            ));
            let plain_users: String = s
                .users
                .iter()
                .map(|u| format!(" user_{}=\"{}\"", u.name, u.password))
                .collect();
            for l in s.listeners.iter().filter(|l| l.uses_sasl()) {
                let prefix = format!("listener.name.{}.", l.as_str().to_ascii_lowercase());
                p.push((
                    format!("{prefix}plain.sasl.jaas.config"),
                    format!("org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};"),
                ));
                for mech in ["scram-sha-256", "scram-sha-512"] {
                    p.push((
                        format!("{prefix}{mech}.sasl.jaas.config"),
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
                    ));
                }
                // The broker's built-in unsecured JWS validator: tests sign
                // nothing, the token's `sub` claim is the principal.
                p.push((
                    format!("{prefix}oauthbearer.sasl.jaas.config"),
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";".into(),
                ));
            }
        }
        let node_overrides = s
            .node_overrides
            .iter()
            .filter(|(id, _, _)| *id == n.id)
            .map(|(_, k, v)| (k, v));
        for (k, v) in s
            .overrides
            .iter()
            .map(|(k, v)| (k, v))
            .chain(node_overrides)
        {
            match p.iter_mut().find(|(pk, _)| pk == k) {
                Some(entry) => entry.1.clone_from(v),
                None => p.push((k.clone(), v.clone())),
            }
        }
        p
    }

    /// Formats every node's storage with one cluster id, in parallel.
    pub(super) fn format_all(&self, cluster_id: &str) -> Result<(), HarnessError> {
        let mut extra: Vec<String> = Vec::new();
        for f in &self.settings.features {
            extra.push("--feature".into());
            extra.push(f.clone());
        }
        for u in &self.settings.users {
            for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                extra.push("--add-scram".into());
                extra.push(format!("{mech}=[name={},password={}]", u.name, u.password));
            }
        }
        let configs: Vec<PathBuf> = self.nodes.iter().map(|n| lock(n).config.clone()).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = configs
                .iter()
                .map(|config| {
                    let extra = &extra;
                    scope.spawn(move || {
                        let mut args = vec![
                            "format".to_string(),
                            "--config".into(),
                            config.display().to_string(),
                            // `=` form: a random id may start with '-', which
                            // argparse would take for an option.
                            format!("--cluster-id={cluster_id}"),
                            "--ignore-formatted".into(),
                        ];
                        args.extend(extra.iter().cloned());
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        self.dist
                            .run_tool("kafka.tools.StorageTool", &args, Duration::from_secs(120))
                            .map(|_| ())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Config(
                        "storage format thread panicked".into(),
                    ))
                })
            })
        })
    }

    pub(super) fn spawn(&self, id: i32) -> Result<(), HarnessError> {
        let mut n = self.node(id)?;
        n.starts += 1;
        let heap = format!("{}m", self.heap_mb);
        let args = vec![
            format!("-Xms{heap}"),
            format!("-Xmx{heap}"),
            "-XX:+UseG1GC".into(),
            "-XX:MaxGCPauseMillis=20".into(),
            "-XX:ParallelGCThreads=1".into(),
            "-XX:ConcGCThreads=1".into(),
            "-XX:CICompilerCount=2".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
            "-Djava.awt.headless=true".into(),
            format!(
                "-Dlog4j2.configurationFile={}",
                self.dist.broker_log4j().display()
            ),
            format!("-Dkafka.logs.dir={}", n.dir.join("logs").display()),
            "-cp".into(),
            self.dist.classpath().to_string(),
            "kafka.Kafka".into(),
            n.config.display().to_string(),
        ];
        let banner = format!("starting node {} (start #{})", n.id, n.starts);
        let process = BrokerProcess::spawn(
            &self.dist.watchdog(),
            &n.log,
            self.dist.java(),
            &args,
            &banner,
        )?;
        n.process = Some(process);
        n.paused = false;
        Ok(())
    }

    /// Waits for: each running node's port, the metadata listing every
    /// running node, the group coordinator, and full ISRs on internal topics.
    pub(super) fn wait_ready(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let running: Vec<i32> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let n = lock(n);
                n.process.is_some().then_some(n.id)
            })
            .collect();
        for &id in &running {
            self.wait_port(id, deadline, timeout)?;
        }
        self.poll_until(
            deadline,
            timeout,
            "the metadata to list every running broker",
            |v| running.iter().all(|id| v.brokers.contains(id)),
        )?;
        let addr = self.any_live_addr()?;
        // FindCoordinator makes the broker create __consumer_offsets, so the
        // first group test does not pay for it (or time out on it).
        loop {
            self.check_alive()?;
            match probe::find_group_coordinator(
                addr,
                "franz-testkit-warmup",
                Duration::from_secs(5),
            ) {
                Ok(0) => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(code) => {
                    return Err(HarnessError::Timeout {
                        what: format!("the group coordinator (last error code {code})"),
                        secs: timeout.as_secs(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let replicas = running.len();
        self.poll_until(
            deadline,
            timeout,
            "internal topics to have full ISRs",
            |v| {
                v.topics
                    .iter()
                    .filter(|t| t.internal)
                    .all(|t| full_isr(t, Some(replicas)))
            },
        )
    }

    pub(super) fn wait_port(
        &self,
        id: i32,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let port = self.node(id)?.ports.plaintext;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            self.check_alive()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let n = self.node(id)?;
                return Err(HarnessError::BrokerExited {
                    node: id,
                    what: format!(
                        "did not open its listener 127.0.0.1:{port} within {}s",
                        timeout.as_secs()
                    ),
                    log: n.log.clone(),
                    tail: tail_file(&n.log, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails with the log tail if a node that should run has exited.
    pub(super) fn check_alive(&self) -> Result<(), HarnessError> {
        for node in &self.nodes {
            let mut n = lock(node);
            let Some(p) = n.process.as_mut() else {
                continue;
            };
            if let Some(status) = p.exit_status() {
                let what = format!("exited during start-up ({status})");
                n.process = None;
                let log = n.log.clone();
                let tail = tail_file(&log, 40);
                let what = if tail.contains("Address already in use") {
                    format!("{what}: port clash, another program holds one of its ports")
                } else {
                    what
                };
                return Err(HarnessError::BrokerExited {
                    node: n.id,
                    what,
                    log,
                    tail,
                });
            }
        }
        Ok(())
    }

    pub(super) fn any_live_addr(&self) -> Result<SocketAddr, HarnessError> {
        self.nodes
            .iter()
            .find_map(|n| {
                let n = lock(n);
                (n.process.is_some() && !n.paused)
                    .then(|| SocketAddr::from(([127, 0, 0, 1], n.ports.plaintext)))
            })
            .ok_or_else(|| HarnessError::Config("no broker is running".into()))
    }

    pub(super) fn metadata_from_any(&self, timeout: Duration) -> Result<ClusterView, HarnessError> {
        let mut last = None;
        for node in &self.nodes {
            let (live, port) = {
                let n = lock(node);
                (n.process.is_some() && !n.paused, n.ports.plaintext)
            };
            if !live {
                continue;
            }
            match probe::metadata(SocketAddr::from(([127, 0, 0, 1], port)), timeout) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Config("no broker is running".into())))
    }

    pub(super) fn poll_until(
        &self,
        deadline: Instant,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&ClusterView) -> bool,
    ) -> Result<(), HarnessError> {
        loop {
            self.check_alive()?;
            let last = match self.metadata_from_any(Duration::from_secs(5)) {
                Ok(view) if done(&view) => return Ok(()),
                Ok(view) => format!("brokers {:?}", view.brokers),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{what} (last seen: {last})"),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(mut p) = lock(node).process.take() {
                p.kill_now();
            }
        }
        if std::env::var_os("FRANZ_TESTKIT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
