//! `franz-kafka`: start and stop a local Kafka cluster for manual use
//! (`just kafka-up`, `just kafka-up-3`, `just kafka-down`).
//!
//! `up` starts a detached `hold` process that owns the brokers and prints
//! the bootstrap address once they are ready. `down` stops the holder, which
//! kills its brokers and removes their files. If the holder dies any other
//! way, its watchdogs kill the brokers anyway.
//!
//! ```text
//! franz-kafka up [--nodes 1|3] [--mock] [--state FILE]
//! franz-kafka down [--state FILE]
//! franz-kafka hold [--nodes 1|3] [--mock] [--state FILE]   (what `up` runs)
//! ```
//!
//! `--mock` holds an in-process franz-mock cluster instead of Java brokers
//! (starts at once, topic auto-creation on); `down` stops it the same way.
#![allow(clippy::disallowed_methods)] // a program, not a state machine: it reads the clock to measure

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use franz_testkit::{HarnessError, KafkaCluster};

struct Args {
    command: String,
    nodes: usize,
    mock: bool,
    state: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let command = args
        .next()
        .ok_or("usage: franz-kafka up|down|hold [--nodes 1|3] [--mock] [--state FILE]")?;
    let mut nodes = 1;
    let mut mock = false;
    let mut state = std::env::temp_dir().join("franz-kafka-dev.state");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => {
                nodes = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--nodes takes 1 or 3")?;
            }
            "--mock" => mock = true,
            "--state" => {
                state = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--state takes a file")?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        command,
        nodes,
        mock,
        state,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "up" => up(&args),
        "down" => down(&args),
        "hold" => hold(&args),
        other => Err(format!("unknown command {other}; use up, down or hold")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("franz-kafka: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The state file: `key=value` lines written by `hold` once ready.
fn read_state(path: &PathBuf) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn state_value(state: &[(String, String)], key: &str) -> Option<String> {
    state.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn alive(pid: &str) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn up(args: &Args) -> Result<(), String> {
    if let Some(state) = read_state(&args.state) {
        if let Some(pid) = state_value(&state, "holder_pid").filter(|p| alive(p)) {
            return Err(format!(
                "a cluster is already running (holder pid {pid}, bootstrap {}); run `franz-kafka down` first",
                state_value(&state, "bootstrap").unwrap_or_default()
            ));
        }
        let _ = std::fs::remove_file(&args.state);
    }
    let log = args.state.with_extension("log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut holder = {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(exe);
        if args.mock {
            cmd.arg("hold").arg("--mock");
        } else {
            cmd.arg("hold");
        }
        cmd.arg("--nodes")
            .arg(args.nodes.to_string())
            .arg("--state")
            .arg(&args.state)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            // Its own process group: a Ctrl-C in this terminal does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting the holder: {e}"))?
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(bootstrap) = read_state(&args.state).and_then(|s| state_value(&s, "bootstrap"))
        {
            println!("KAFKA_BOOTSTRAP={bootstrap}");
            return Ok(());
        }
        if let Ok(Some(status)) = holder.try_wait() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("the cluster failed to start ({status}):\n{text}"));
        }
        if Instant::now() > deadline {
            let _ = holder.kill();
            return Err("the cluster did not start within 300s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn down(args: &Args) -> Result<(), String> {
    let Some(state) = read_state(&args.state) else {
        println!("no cluster is running");
        return Ok(());
    };
    if let Some(pid) = state_value(&state, "holder_pid").filter(|p| alive(p)) {
        {
            let raw: i32 = pid.parse().map_err(|_| format!("bad pid {pid}"))?;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while alive(&pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = std::fs::remove_file(&args.state);
    println!("stopped");
    Ok(())
}

fn hold(args: &Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if args.mock {
        return runtime.block_on(async {
            let cluster = franz_mock::MockCluster::builder()
                .brokers(args.nodes)
                .start()
                .map_err(|e| e.to_string())?;
            let state = format!(
                "holder_pid={}\nmock=true\nbootstrap={}\n",
                std::process::id(),
                cluster.bootstrap()
            );
            write_state(&args.state, &state)?;
            eprintln!("franz-mock cluster ready: {}", cluster.bootstrap());
            wait_for_stop().await?;
            drop(cluster);
            let _ = std::fs::remove_file(&args.state);
            Ok(())
        });
    }
    runtime.block_on(async {
        let cluster = KafkaCluster::builder()
            .nodes(args.nodes)
            // A manual cluster must not hold up fault tests.
            .exclusive(false)
            .start()
            .await
            .map_err(|e: HarnessError| e.to_string())?;
        let pids: Vec<String> = cluster
            .node_ids()
            .into_iter()
            .filter_map(|n| cluster.pid(n).ok().flatten())
            .map(|p| p.to_string())
            .collect();
        let state = format!(
            "holder_pid={}\njava_pids={}\ndir={}\nbootstrap={}\n",
            std::process::id(),
            pids.join(","),
            cluster.dir().display(),
            cluster.bootstrap()
        );
        write_state(&args.state, &state)?;
        eprintln!("cluster ready: {}", cluster.bootstrap());
        wait_for_stop().await?;
        drop(cluster);
        let _ = std::fs::remove_file(&args.state);
        Ok::<(), String>(())
    })?;
    Ok(())
}

/// Writes the state file, then renames it into place, so `up` never reads
/// half a file.
fn write_state(path: &PathBuf, state: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, state).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// Until SIGTERM (`down`) or Ctrl-C.
async fn wait_for_stop() -> Result<(), String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
