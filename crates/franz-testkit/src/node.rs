//! Node.js peers (KafkaJS, NestJS) run from the npm project in `tests/node`
//! (NestJS 11) or `tests/node-nest12` (NestJS 12, same scripts).
//!
//! [`ensure_npm_packages`] runs `npm ci` there once per lock-file version
//! (a stamp in `node_modules` records which), under a cross-process lock.
//! [`run_script`] runs one of the project's scripts with a deadline and
//! returns its stdout; a failure carries both streams. [`run_script_on`]
//! runs it against a chosen NestJS major: the scripts live once, in
//! `tests/node`, and are copied beside the NestJS 12 project's
//! `node_modules` so that their imports resolve there.

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

/// Which `@nestjs/microservices` the Node.js scripts load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NestVersion {
    /// 11.2 (the `tests/node` project).
    V11,
    /// 12.1 (the `tests/node-nest12` project; Node.js 20+).
    V12,
}

impl NestVersion {
    /// Both majors the interop tests cover.
    pub const ALL: [Self; 2] = [Self::V11, Self::V12];

    /// The npm project of this major.
    pub fn project_dir(self) -> PathBuf {
        match self {
            Self::V11 => project_dir(),
            Self::V12 => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node-nest12"),
        }
    }
}

/// Checks `node` and `npm` and installs the project's locked packages if
/// they are missing or stale. Blocking.
pub fn ensure_npm_packages() -> Result<PathBuf, HarnessError> {
    ensure_project(NestVersion::V11)
}

/// [`ensure_npm_packages`] for the project of one NestJS major; for 12 it
/// also copies the scripts of `tests/node` beside its `node_modules`.
pub fn ensure_project(nest: NestVersion) -> Result<PathBuf, HarnessError> {
    let dir = nest.project_dir();
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
    // NestJS 12 needs Node.js 20 (its `engines`); KafkaJS and NestJS 11, 18.
    let needed = if nest == NestVersion::V12 { 20 } else { 18 };
    if major < needed {
        return Err(HarnessError::Node(format!(
            "Node.js {needed}+ needed for the {nest:?} peers, found {:?}",
            String::from_utf8_lossy(&version.stdout).trim()
        )));
    }
    let lock_file = dir.join("package-lock.json");
    let lock_text =
        fs::read_to_string(&lock_file).ctx(|| format!("reading {}", lock_file.display()))?;
    let stamp_value = format!("{:016x}", crate::dist::fnv1a(lock_text.as_bytes()));
    let stamp = dir.join("node_modules/.franz-installed");

    let guard_path = std::env::temp_dir().join(format!("franz-testkit-locks/npm-{nest:?}.lock"));
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
    if nest != NestVersion::V11 {
        copy_scripts(&project_dir(), &dir)?;
    }
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

/// Copies the `.mjs` scripts of `from` into `to` when they differ.
fn copy_scripts(from: &Path, to: &Path) -> Result<(), HarnessError> {
    for entry in fs::read_dir(from).ctx(|| format!("listing {}", from.display()))? {
        let path = entry.ctx(|| format!("listing {}", from.display()))?.path();
        if path.extension().is_some_and(|e| e == "mjs") {
            let text = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            let target = to.join(path.file_name().unwrap_or_default());
            if fs::read(&target).ok().as_deref() != Some(text.as_slice()) {
                fs::write(&target, text).ctx(|| format!("writing {}", target.display()))?;
            }
        }
    }
    Ok(())
}

/// Runs `node <script> <args...>` in the npm project (installing packages
/// first if needed) and returns its stdout. Blocking.
pub fn run_script(script: &str, args: &[&str], timeout: Duration) -> Result<String, HarnessError> {
    run_script_on(NestVersion::V11, script, args, timeout)
}

/// [`run_script`] against the packages of one NestJS major.
pub fn run_script_on(
    nest: NestVersion,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, HarnessError> {
    let dir = ensure_project(nest)?;
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
