//! Self-tests of owned clusters and their faults: three nodes with kill and
//! restart, pause and resume, the fault proxy, TLS and SASL listeners, and
//! that no broker outlives a SIGKILLed test process. Owned clusters are
//! exclusive, so these run one at a time whatever the test thread count.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the report
#![allow(clippy::disallowed_methods)] // a test drives real time: it reads the clock to measure and to wait

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use franz_testkit::proxy::api_key;
use franz_testkit::{ClientAuth, KafkaCluster, SecurityProtocol, probe, unique_topic};

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn addr(bootstrap: &str, i: usize) -> SocketAddr {
    bootstrap.split(',').nth(i).unwrap().parse().unwrap()
}

async fn metadata(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<probe::ClusterView, franz_testkit::HarnessError> {
    tokio::task::spawn_blocking(move || probe::metadata(addr, timeout))
        .await
        .unwrap()
}

fn create_topic(cluster: &KafkaCluster, topic: &str, partitions: u32, rf: u32) {
    cluster
        .distribution()
        .run_tool(
            "org.apache.kafka.tools.TopicCommand",
            &[
                "--bootstrap-server",
                &cluster.direct_bootstrap(),
                "--create",
                "--topic",
                topic,
                "--partitions",
                &partitions.to_string(),
                "--replication-factor",
                &rf.to_string(),
            ],
            TOOL_TIMEOUT,
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_a_kill_and_the_node_rejoins() {
    if franz_testkit::real_broker_only("the harness's own three-node cluster") {
        return;
    }
    let cluster = KafkaCluster::three_nodes().await.unwrap();
    let view = cluster.describe().await.unwrap();
    assert_eq!(view.brokers, vec![1, 2, 3]);
    // Internal topics are replicated three ways and fully in sync.
    let offsets = view
        .topics
        .iter()
        .find(|t| t.name == "__consumer_offsets")
        .unwrap();
    assert!(
        offsets
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 3 && p.isr.len() == 3)
    );

    let topic = unique_topic("three-nodes");
    create_topic(&cluster, &topic, 3, 3);

    cluster.kill(2).unwrap();
    assert!(!cluster.is_running(2).unwrap());
    // The survivors keep serving metadata, and fence the dead node.
    cluster
        .wait_for_brokers(vec![1, 3], Duration::from_secs(60))
        .await
        .unwrap();
    let view = metadata(addr(&cluster.bootstrap(), 0), Duration::from_secs(10))
        .await
        .unwrap();
    let t = view.topics.iter().find(|t| t.name == topic).unwrap();
    assert!(
        t.partitions.iter().all(|p| p.leader != 2 && p.leader >= 0),
        "{t:?}"
    );

    cluster.restart(2).await.unwrap();
    assert!(cluster.is_running(2).unwrap());
    cluster
        .wait_for_brokers(vec![1, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();
    cluster
        .wait_for_full_isr(Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        cluster
            .logs(2)
            .unwrap()
            .contains("starting node 2 (start #2)")
    );

    // A clean stop works too, and the node comes back again.
    cluster.stop(3).await.unwrap();
    cluster
        .wait_for_brokers(vec![1, 2], Duration::from_secs(60))
        .await
        .unwrap();
    cluster.restart(3).await.unwrap();
    cluster
        .wait_for_brokers(vec![1, 2, 3], Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_accepts_connections_but_never_answers() {
    if franz_testkit::real_broker_only("the harness's own broker processes") {
        return;
    }
    let cluster = KafkaCluster::single_owned().await.unwrap();
    let broker = addr(&cluster.bootstrap(), 0);
    metadata(broker, Duration::from_secs(10)).await.unwrap();

    cluster.pause(1).unwrap();
    // The kernel still completes the TCP handshake...
    TcpStream::connect_timeout(&broker, Duration::from_secs(2)).unwrap();
    // ...but nothing answers.
    let err = metadata(broker, Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains(&broker.to_string()), "{err}");

    cluster.resume(1).unwrap();
    let view = metadata(broker, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.brokers, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_proxy_forwards_drops_delays_cuts_and_black_holes() {
    if franz_testkit::real_broker_only("the harness's fault proxy on its own broker") {
        return;
    }
    let cluster = KafkaCluster::builder().fault_proxy().start().await.unwrap();
    let proxy = cluster.proxy(1).unwrap();
    let via_proxy = addr(&cluster.bootstrap(), 0);
    assert_eq!(via_proxy, proxy.addr());
    assert_ne!(cluster.bootstrap(), cluster.direct_bootstrap());

    // Forwarding: a request through the proxy is answered.
    let view = metadata(via_proxy, Duration::from_secs(10)).await.unwrap();
    assert_eq!(view.brokers, vec![1]);

    // Drop: the broker answers, the proxy swallows it, the client times out.
    proxy.drop_next_response(api_key::METADATA);
    assert!(metadata(via_proxy, Duration::from_secs(2)).await.is_err());
    assert_eq!(proxy.dropped_responses(api_key::METADATA), 1);
    assert_eq!(proxy.pending_drops(api_key::METADATA), 0);
    // Only the next one: the one after goes through.
    metadata(via_proxy, Duration::from_secs(10)).await.unwrap();
    // A rule for another API leaves Metadata alone.
    proxy.drop_next_response(api_key::PRODUCE);
    metadata(via_proxy, Duration::from_secs(10)).await.unwrap();
    assert_eq!(proxy.pending_drops(api_key::PRODUCE), 1);
    proxy.clear_faults();

    // Delay: the answer comes, but not before the delay.
    proxy.delay_responses(Some(Duration::from_millis(700)));
    let began = Instant::now();
    metadata(via_proxy, Duration::from_secs(10)).await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(700));
    proxy.delay_responses(None);

    // Cut: an open connection is reset (RST, not a clean FIN).
    // The proxy notices a closed client only on its next poll, so first let the
    // earlier connections drain: otherwise the cut could hit one of them while
    // the new connection is still being registered.
    wait_for_open_connections(proxy, 0).await;
    let mut conn = TcpStream::connect(via_proxy).unwrap();
    wait_for_open_connections(proxy, 1).await;
    assert_eq!(proxy.cut_connections(), 1);
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let err = conn.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    // Black hole: connections open, requests vanish, nothing answers.
    proxy.set_black_hole(true);
    assert!(metadata(via_proxy, Duration::from_secs(2)).await.is_err());
    proxy.set_black_hole(false);
    metadata(via_proxy, Duration::from_secs(10)).await.unwrap();
    assert!(proxy.accepted_connections() >= 7);

    // The direct listener never went through the proxy.
    let direct = addr(&cluster.direct_bootstrap(), 0);
    let before = proxy.accepted_connections();
    metadata(direct, Duration::from_secs(10)).await.unwrap();
    assert_eq!(proxy.accepted_connections(), before);
}

/// Waits (up to 10 s) until the proxy holds exactly `n` open connections.
async fn wait_for_open_connections(proxy: &franz_testkit::FaultProxy, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.open_connections() != n {
        assert!(
            Instant::now() < deadline,
            "the proxy still holds {} open connections, expected {n}",
            proxy.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes a Java client config (`--command-config`) with PEM values inline.
fn client_config(dir: &Path, name: &str, lines: &[(&str, String)]) -> String {
    let mut text = String::from("request.timeout.ms=10000\ndefault.api.timeout.ms=20000\n");
    for (k, v) in lines {
        text.push_str(&format!("{k}={}\n", v.replace('\n', "\\n")));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn list_topics(
    cluster: &KafkaCluster,
    protocol: SecurityProtocol,
    config: &str,
) -> Result<String, franz_testkit::HarnessError> {
    cluster.distribution().run_tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &cluster.bootstrap_for(protocol).unwrap(),
            "--command-config",
            config,
            "--list",
        ],
        TOOL_TIMEOUT,
    )
}

fn scram(mechanism: &str, user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("sasl.mechanism", mechanism.to_string()),
        (
            "sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";"
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_sasl_listeners_accept_the_right_credentials_only() {
    if franz_testkit::real_broker_only("the harness's TLS and SASL listeners") {
        return;
    }
    let cluster = KafkaCluster::builder()
        .ssl_listener()
        .sasl_plaintext_listener()
        .sasl_ssl_listener()
        .client_auth(ClientAuth::Required)
        .scram_user("alice", "alice-secret")
        .start()
        .await
        .unwrap();
    let topic = unique_topic("secured");
    create_topic(&cluster, &topic, 1, 1);
    let tls = cluster.tls().unwrap().clone();
    let dir = cluster.dir().to_path_buf();
    let trust = |ca: &str| {
        vec![
            ("ssl.truststore.type", "PEM".to_string()),
            ("ssl.truststore.certificates", ca.to_string()),
        ]
    };
    let client_cert = vec![
        ("ssl.keystore.type", "PEM".to_string()),
        (
            "ssl.keystore.certificate.chain",
            tls.client_cert_pem.clone(),
        ),
        ("ssl.keystore.key", tls.client_key_pem.clone()),
    ];

    // SSL with mTLS: right CA and a client certificate.
    let mut ssl = vec![("security.protocol", "SSL".to_string())];
    ssl.extend(trust(&tls.ca_pem));
    ssl.extend(client_cert.clone());
    let ok = list_topics(
        &cluster,
        SecurityProtocol::Ssl,
        &client_config(&dir, "ssl.properties", &ssl),
    )
    .unwrap();
    assert!(ok.contains(&topic), "{ok}");

    // SSL without the client certificate is refused.
    let mut no_cert = vec![("security.protocol", "SSL".to_string())];
    no_cert.extend(trust(&tls.ca_pem));
    let path = client_config(&dir, "ssl-nocert.properties", &no_cert);
    assert!(list_topics(&cluster, SecurityProtocol::Ssl, &path).is_err());

    // SSL trusting the wrong CA is refused.
    let mut wrong_ca = vec![("security.protocol", "SSL".to_string())];
    wrong_ca.extend(trust(&tls.other_ca_pem));
    wrong_ca.extend(client_cert.clone());
    let path = client_config(&dir, "ssl-wrongca.properties", &wrong_ca);
    assert!(list_topics(&cluster, SecurityProtocol::Ssl, &path).is_err());

    // SASL_PLAINTEXT with SCRAM-SHA-512 and with PLAIN.
    let mut sasl = vec![("security.protocol", "SASL_PLAINTEXT".to_string())];
    sasl.extend(scram("SCRAM-SHA-512", "alice", "alice-secret"));
    let ok = list_topics(
        &cluster,
        SecurityProtocol::SaslPlaintext,
        &client_config(&dir, "scram.properties", &sasl),
    )
    .unwrap();
    assert!(ok.contains(&topic), "{ok}");
    let plain = vec![
        ("security.protocol", "SASL_PLAINTEXT".to_string()),
        ("sasl.mechanism", "PLAIN".to_string()),
        (
            "sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"alice\" password=\"alice-secret\";".to_string(),
        ),
    ];
    let ok = list_topics(
        &cluster,
        SecurityProtocol::SaslPlaintext,
        &client_config(&dir, "plain.properties", &plain),
    )
    .unwrap();
    assert!(ok.contains(&topic), "{ok}");

    // A wrong SCRAM password is refused.
    let mut wrong = vec![("security.protocol", "SASL_PLAINTEXT".to_string())];
    wrong.extend(scram("SCRAM-SHA-512", "alice", "not-the-password"));
    let err = list_topics(
        &cluster,
        SecurityProtocol::SaslPlaintext,
        &client_config(&dir, "wrong.properties", &wrong),
    )
    .unwrap_err();
    assert!(err.to_string().contains("Authentication failed"), "{err}");

    // SASL_SSL with SCRAM-SHA-256 (and the client certificate mTLS wants).
    let mut sasl_ssl = vec![("security.protocol", "SASL_SSL".to_string())];
    sasl_ssl.extend(trust(&tls.ca_pem));
    sasl_ssl.extend(client_cert);
    sasl_ssl.extend(scram("SCRAM-SHA-256", "alice", "alice-secret"));
    let ok = list_topics(
        &cluster,
        SecurityProtocol::SaslSsl,
        &client_config(&dir, "sasl-ssl.properties", &sasl_ssl),
    )
    .unwrap();
    assert!(ok.contains(&topic), "{ok}");
}

/// The brokers of a test process that dies by SIGKILL die with it: the
/// `franz-kafka hold` process stands in for a test binary here.
#[test]
fn brokers_die_with_a_sigkilled_test_process() {
    if franz_testkit::real_broker_only("the harness's own broker processes") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("franz-sigkill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let mut holder = std::process::Command::new(env!("CARGO_BIN_EXE_franz-kafka"))
        .args(["hold", "--state"])
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&state) {
            break text;
        }
        assert!(
            holder.try_wait().unwrap().is_none(),
            "holder exited before the cluster was ready"
        );
        assert!(Instant::now() < deadline, "cluster not ready in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    let pids: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("java_pids="))
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 1);
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    assert!(pids.iter().all(|p| alive(p)));

    holder.kill().unwrap(); // SIGKILL: no destructor runs in the holder
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "broker JVM {pids:?} outlived its SIGKILLed owner"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The socket is free again too, so nothing else holds the broker's port.
    let bootstrap = text
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap="))
        .unwrap();
    let refused = TcpStream::connect_timeout(&bootstrap.parse().unwrap(), Duration::from_secs(2));
    assert!(refused.is_err());
    let _ = std::io::stdout().flush();
}
