//! Shared pieces of franz's benchmarks (see `benches/`): argument parsing
//! and measuring a client that runs as its own process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next().unwrap_or_default();
        }
    }
    default.to_string()
}

/// CPU seconds (user + system) of all waited-for children so far.
pub fn children_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// Peak resident set of `pid` in KiB (VmHWM).
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `cmd`, sampling its peak RSS, and returns (stdout, cpu secs, peak MiB).
pub fn run_measured(mut cmd: Command) -> (String, f64, f64) {
    let before = children_cpu();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    let mut peak = 0;
    loop {
        if let Some(k) = vm_hwm_kib(pid) {
            peak = peak.max(k);
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = reader.join().unwrap_or_default();
    (out, children_cpu() - before, peak as f64 / 1024.0)
}

/// A binary built next to the running one.
pub fn sibling_bin(name: &str) -> PathBuf {
    std::env::current_exe().expect("exe").with_file_name(name)
}

/// The two ratio cells of a results table row, franz over `peer`: rate
/// (higher is better for franz above 1) and CPU per unit of work (lower is
/// better below 1). The franz row itself gets `-`.
pub fn ratio_cells(
    is_franz: bool,
    rates: (f64, f64),
    cpu_per_unit: (f64, f64),
) -> (String, String) {
    if is_franz {
        ("-".to_string(), "-".to_string())
    } else {
        (
            format!("{:.2}", rates.0 / rates.1),
            format!("{:.2}", cpu_per_unit.0 / cpu_per_unit.1),
        )
    }
}
