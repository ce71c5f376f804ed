//! Node.js peers (KafkaJS, NestJS) run from the npm project in `tests/node`.
//!
//! [`ensure_npm_packages`] runs `npm ci` there once per lock-file version
//! (a stamp in `node_modules` records which), under a cross-process lock.
//! [`run_script`] runs one of the project's scripts with a deadline and
//! returns its stdout; a failure carries both streams.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::dist::run_with_timeout;
use crate::error::{HarnessError, IoContext};

/// The npm project holding the Node.js peers.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node")
}

/// Checks `node` and `npm` and installs the project's locked packages if
/// they are missing or stale. Blocking.
pub fn ensure_npm_packages() -> Result<PathBuf, HarnessError> {
    let dir = project_dir();
    let version = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|_| {
            HarnessError::Node(
                "no `node` on PATH: the KafkaJS and NestJS peer tests need Node.js 18+ with npm"
                    .into(),
            )
        })?;
    let major: u32 = String::from_utf8_lossy(&version.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Err(HarnessError::Node(format!(
            "Node.js 18+ needed, found {:?}",
            String::from_utf8_lossy(&version.stdout).trim()
        )));
    }
    let lock_file = dir.join("package-lock.json");
    let lock_text =
        fs::read_to_string(&lock_file).ctx(|| format!("reading {}", lock_file.display()))?;
    let stamp_value = format!("{:016x}", crate::dist::fnv1a(lock_text.as_bytes()));
    let stamp = dir.join("node_modules/.franz-installed");

    let guard_path = std::env::temp_dir().join("franz-testkit-locks/npm.lock");
    if let Some(parent) = guard_path.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    let guard = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .ctx(|| format!("opening {}", guard_path.display()))?;
    guard.lock().ctx(|| "locking the npm install".into())?;
    if fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_value.as_str()) {
        return Ok(dir);
    }
    let mut cmd = Command::new("npm");
    cmd.current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(600), "npm ci").map_err(|e| match e {
        HarnessError::Io { .. } => HarnessError::Node(
            "no `npm` on PATH: the KafkaJS and NestJS peer tests install their packages with npm"
                .into(),
        ),
        other => other,
    })?;
    if !out.success {
        return Err(HarnessError::Node(format!(
            "`npm ci` in {} failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            out.stdout,
            out.stderr
        )));
    }
    fs::write(&stamp, stamp_value).ctx(|| format!("writing {}", stamp.display()))?;
    Ok(dir)
}

/// Runs `node <script> <args...>` in the npm project (installing packages
/// first if needed) and returns its stdout. Blocking.
pub fn run_script(script: &str, args: &[&str], timeout: Duration) -> Result<String, HarnessError> {
    let dir = ensure_npm_packages()?;
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg(script)
        .args(args)
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, timeout, script)?;
    if out.success {
        Ok(out.stdout)
    } else {
        Err(HarnessError::Node(format!(
            "`node {script}` failed ({}):\n{}\n{}",
            out.status, out.stdout, out.stderr
        )))
    }
}
