//! Finding Java, resolving the pinned Kafka jars with Maven, and running Java
//! tools on that classpath.
//!
//! Resolution runs `mvn dependency:build-classpath` on the pom kept in
//! `crates/franz-testkit/broker/pom.xml`. The jars stay in Maven's own cache
//! (`~/.m2`); the classpath is written once into a cache folder named after
//! the Kafka version and a hash of the pom, so a second run neither downloads
//! nor even starts Maven.
#![allow(clippy::disallowed_methods)] // the testkit drives processes and waits on them

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{HarnessError, IoContext};

/// The Apache Kafka release the harness pins (kept in step with `broker/pom.xml`).
pub const KAFKA_VERSION: &str = "4.1.1";

/// The environment variable that runs the harness on another Kafka release
/// (`just compat`): Maven resolves that release's jars instead.
pub const KAFKA_VERSION_ENV: &str = "FRANZ_KAFKA_VERSION";

/// The Kafka release in use: [`KAFKA_VERSION_ENV`] when it is set to a
/// version (digits and dots, e.g. `3.9.1`), else [`KAFKA_VERSION`].
pub fn kafka_version() -> String {
    std::env::var(KAFKA_VERSION_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or_else(|| KAFKA_VERSION.to_string())
}

const POM: &str = include_str!("../broker/pom.xml");
const BROKER_LOG4J: &str = include_str!("../broker/log4j2.properties");
const TOOLS_LOG4J: &str = include_str!("../broker/tools-log4j2.properties");
const WATCHDOG: &str = include_str!("../broker/watchdog.sh");
const READ_COMMITTED: &str = include_str!("../java/ReadCommitted.java");

/// One record as the Java consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The value, as UTF-8 text.
    pub value: String,
}

/// A resolved Kafka installation: a Java binary and the broker classpath.
#[derive(Debug)]
pub struct KafkaDistribution {
    java: PathBuf,
    classpath: String,
    home: PathBuf,
    /// Tool classes found under another name on this release.
    tool_classes: Mutex<std::collections::HashMap<String, String>>,
}

static RESOLVED: Mutex<Option<Arc<KafkaDistribution>>> = Mutex::new(None);

impl KafkaDistribution {
    /// Checks Java and Maven and resolves the jars, once per process.
    ///
    /// Blocking: the first call in a fresh environment downloads the jars.
    pub fn resolve() -> Result<Arc<Self>, HarnessError> {
        let mut slot = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dist) = slot.as_ref() {
            return Ok(Arc::clone(dist));
        }
        let dist = Arc::new(Self::resolve_uncached()?);
        *slot = Some(Arc::clone(&dist));
        Ok(dist)
    }

    fn resolve_uncached() -> Result<Self, HarnessError> {
        let java = find_java()?;
        let home = cache_dir();
        // Another test process may be resolving into the same folder.
        let _lock = lock_dir(&home)?;
        write_if_changed(&home.join("pom.xml"), POM)?;
        write_if_changed(&home.join("log4j2.properties"), BROKER_LOG4J)?;
        write_if_changed(&home.join("tools-log4j2.properties"), TOOLS_LOG4J)?;
        write_if_changed(&home.join("watchdog.sh"), WATCHDOG)?;
        let classpath = resolve_classpath(
            &home,
            &format!("Apache Kafka {}", kafka_version()),
            &["kafka_2.13-", "log4j-slf4j-impl"],
        )?;
        Ok(Self {
            java,
            classpath,
            home,
            tool_classes: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The `java` binary in use.
    pub fn java(&self) -> &Path {
        &self.java
    }

    /// The broker and tools classpath (`:`-separated jar paths).
    pub fn classpath(&self) -> &str {
        &self.classpath
    }

    /// The cache folder holding the pom, the classpath and the log configs.
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub(crate) fn broker_log4j(&self) -> PathBuf {
        self.home.join("log4j2.properties")
    }

    pub(crate) fn watchdog(&self) -> PathBuf {
        self.home.join("watchdog.sh")
    }

    /// A `java` command for `main_class` on the Kafka classpath, with a small
    /// heap and warnings-only logging, ready for arguments. A tool runs
    /// under whichever of its names the release has: Kafka moved tools
    /// between `kafka.tools`, `kafka.admin` and `org.apache.kafka.tools`
    /// (`ConsoleProducer` left `kafka.tools` in 4.0, `ConfigCommand` left
    /// `kafka.admin` after 4.1), and `just compat` runs other releases.
    pub fn tool_command(&self, main_class: &str) -> Command {
        let class = self.tool_class(main_class);
        self.java_command(&class, &self.classpath)
    }

    /// `main_class`, or the first of its older names that a jar on the
    /// classpath holds.
    fn tool_class(&self, main_class: &str) -> String {
        let simple = main_class.rsplit('.').next().unwrap_or(main_class);
        let candidates = [
            main_class.to_string(),
            format!("org.apache.kafka.tools.{simple}"),
            format!("kafka.tools.{simple}"),
            format!("kafka.admin.{simple}"),
        ];
        let mut known = self.tool_classes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = known.get(main_class) {
            return found.clone();
        }
        let jars: Vec<Vec<u8>> = self
            .classpath
            .split(':')
            .filter(|j| j.contains("kafka"))
            .filter_map(|j| fs::read(j).ok())
            .collect();
        let found = candidates
            .iter()
            .find(|c| {
                // A jar's central directory stores entry names as they are.
                // The whole name must match, not the end of a longer one
                // (`org/apache/kafka/tools/X` ends with `kafka/tools/X`).
                let entry = format!("{}.class", c.replace('.', "/"));
                let name_byte =
                    |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'$' | b'.');
                jars.iter().any(|jar| {
                    jar.windows(entry.len() + 1)
                        .any(|w| &w[1..] == entry.as_bytes() && !name_byte(w[0]))
                })
            })
            .cloned()
            .unwrap_or_else(|| main_class.to_string());
        known.insert(main_class.to_string(), found.clone());
        found
    }

    fn java_command(&self, main_class: &str, classpath: &str) -> Command {
        let mut cmd = Command::new(&self.java);
        cmd.arg("-Xmx256m")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-XX:+UseSerialGC")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.home.join("tools-log4j2.properties").display()
            ))
            .arg("-cp")
            .arg(classpath)
            .arg(main_class)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a Java tool to completion (at most `timeout`) and returns its
    /// stdout; a non-zero exit is [`HarnessError::ToolFailed`] with both streams.
    pub fn run_tool(
        &self,
        main_class: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let mut cmd = self.tool_command(main_class);
        cmd.args(args);
        run_with_timeout(cmd, timeout, main_class)?.into_stdout(main_class)
    }
}

impl KafkaDistribution {
    /// Compiles a single-file Java program against the Kafka classpath (once
    /// per source text; the classes are cached) and returns its class folder.
    pub fn compile_java(&self, source: &Path) -> Result<PathBuf, HarnessError> {
        compile_with(&self.java, &self.home, source, &self.classpath)
    }

    /// Runs `main_class` from `classes` (see [`compile_java`](Self::compile_java))
    /// with `stdin` as its input, and returns its stdout.
    pub fn run_java(
        &self,
        classes: &Path,
        main_class: &str,
        stdin: Vec<u8>,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let cp = format!("{}:{}", classes.display(), self.classpath);
        let cmd = self.java_command(main_class, &cp);
        run_with_input(cmd, stdin, timeout, main_class)?.into_stdout(main_class)
    }

    /// Reads all of `topic` with the Java client as a `read_committed`
    /// consumer, up to each partition's last stable offset: the reference
    /// for what a transaction made visible. Blocking.
    pub fn read_committed(
        &self,
        bootstrap: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<JavaRecord>, HarnessError> {
        let source = self.home.join("ReadCommitted.java");
        write_if_changed(&source, READ_COMMITTED)?;
        let classes = self.compile_java(&source)?;
        let cp = format!("{}:{}", classes.display(), self.classpath);
        let mut cmd = self.java_command("ReadCommitted", &cp);
        cmd.args([bootstrap, topic]);
        let stdout =
            run_with_timeout(cmd, timeout, "ReadCommitted")?.into_stdout("ReadCommitted")?;
        stdout
            .lines()
            .map(|line| {
                let mut f = line.splitn(3, '\t');
                let bad = || HarnessError::Config(format!("ReadCommitted printed {line:?}"));
                let partition = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let offset = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
                let value = f.next().ok_or_else(bad)?.to_string();
                Ok(JavaRecord {
                    partition,
                    offset,
                    value,
                })
            })
            .collect()
    }

    /// Starts `main_class` from `classes` (see [`compile_java`](Self::compile_java))
    /// in the background with `args`, stdin and stdout piped and stderr
    /// inherited, and returns the running child; the caller reads its stdout,
    /// writes its stdin, and waits for (or kills) it.
    pub fn spawn_java(
        &self,
        classes: &Path,
        main_class: &str,
        args: &[&str],
    ) -> Result<std::process::Child, HarnessError> {
        let cp = format!("{}:{}", classes.display(), self.classpath);
        let mut cmd = self.java_command(main_class, &cp);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd.spawn().ctx(|| format!("starting {main_class}"))
    }
}

/// What a finished child process printed.
pub(crate) struct Finished {
    pub(crate) success: bool,
    pub(crate) status: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    /// Its stdout, or [`HarnessError::ToolFailed`] with both streams when
    /// `tool` exited non-zero.
    pub(crate) fn into_stdout(self, tool: impl Into<String>) -> Result<String, HarnessError> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(HarnessError::ToolFailed {
                tool: tool.into(),
                status: self.status,
                output: format!("{}\n{}", self.stdout, self.stderr),
            })
        }
    }
}

/// Runs `cmd`, capturing both streams, and kills it after `timeout`.
pub(crate) fn run_with_timeout(
    cmd: Command,
    timeout: Duration,
    what: &str,
) -> Result<Finished, HarnessError> {
    run_with_input(cmd, Vec::new(), timeout, what)
}

/// [`run_with_timeout`], feeding `input` to the child's stdin.
pub(crate) fn run_with_input(
    mut cmd: Command,
    input: Vec<u8>,
    timeout: Duration,
    what: &str,
) -> Result<Finished, HarnessError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if !input.is_empty() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().ctx(|| format!("starting {what}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().ctx(|| format!("waiting for {what}"))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Timeout {
                what: format!("{what} to finish"),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Finished {
        success: status.success(),
        status: status.to_string(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

pub(crate) fn find_java() -> Result<PathBuf, HarnessError> {
    let java = match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    };
    let out = Command::new(&java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .map_err(|_| HarnessError::JavaMissing)?;
    let text = String::from_utf8_lossy(&out.stderr);
    let major = parse_java_major(&text).ok_or(HarnessError::JavaMissing)?;
    if major < 17 {
        return Err(HarnessError::JavaTooOld {
            found: major,
            path: java.display().to_string(),
        });
    }
    Ok(java)
}

/// Parses the major version out of `java -version` output
/// (`version "17.0.15"` gives 17, `version "1.8.0_392"` gives 8).
fn parse_java_major(text: &str) -> Option<u32> {
    let start = text.find("version \"")? + "version \"".len();
    let rest = &text[start..];
    let version = &rest[..rest.find('"')?];
    let mut parts = version.split(['.', '-', '+', '_']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

fn run_maven(home: &Path, cp_file: &Path, what: &str) -> Result<(), HarnessError> {
    let mvn_check = Command::new("mvn")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !matches!(mvn_check, Ok(ref o) if o.status.success()) {
        return Err(HarnessError::MavenMissing);
    }
    let mut cmd = Command::new("mvn");
    cmd.current_dir(home)
        .arg("-B")
        .arg("-q")
        .arg("-f")
        .arg(home.join("pom.xml"))
        .arg("dependency:build-classpath")
        .arg(format!("-Dkafka.version={}", kafka_version()))
        .arg(format!("-Dmdep.outputFile={}", cp_file.display()))
        .arg("-Dmdep.includeScope=runtime")
        .stdin(Stdio::null());
    let out = run_with_timeout(
        cmd,
        Duration::from_secs(900),
        "mvn dependency:build-classpath",
    )?;
    if !out.success {
        let all = format!("{}\n{}", out.stdout, out.stderr);
        return Err(HarnessError::ResolutionFailed {
            version: what.to_string(),
            pom: home.join("pom.xml"),
            output: last_lines(&all, 40),
        });
    }
    Ok(())
}

/// The classpath in `file`, if every jar it names still exists and it
/// names each of `markers` (parts of jar names).
fn read_valid_classpath(file: &Path, markers: &[&str]) -> Option<String> {
    let cp = fs::read_to_string(file).ok()?;
    let cp = cp.trim().to_string();
    let all_exist = !cp.is_empty() && cp.split(':').all(|jar| Path::new(jar).exists());
    let complete = markers.iter().all(|m| cp.contains(m));
    (all_exist && complete).then_some(cp)
}

/// The classpath of the pom in `home`, from its `classpath.txt` or, when
/// that is missing or stale, from Maven. `what` names the artifacts in
/// errors; the classpath must name each of `markers`.
pub(crate) fn resolve_classpath(
    home: &Path,
    what: &str,
    markers: &[&str],
) -> Result<String, HarnessError> {
    let cp_file = home.join("classpath.txt");
    if let Some(cp) = read_valid_classpath(&cp_file, markers) {
        return Ok(cp);
    }
    run_maven(home, &cp_file, what)?;
    read_valid_classpath(&cp_file, markers).ok_or_else(|| HarnessError::ResolutionFailed {
        version: what.to_string(),
        pom: home.join("pom.xml"),
        output: format!(
            "Maven succeeded but {} is missing or names jars that do not exist",
            cp_file.display()
        ),
    })
}

/// Takes the lock file of cache folder `home` (created if missing); held
/// until the returned file is dropped.
pub(crate) fn lock_dir(home: &Path) -> Result<fs::File, HarnessError> {
    fs::create_dir_all(home).ctx(|| format!("creating the harness cache {}", home.display()))?;
    let lock_path = home.join(".lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ctx(|| format!("opening {}", lock_path.display()))?;
    lock.lock()
        .ctx(|| format!("locking {}", lock_path.display()))?;
    Ok(lock)
}

/// Compiles a single-file Java program against `classpath` with the `javac`
/// beside `java`, into a folder of `home` named after the source text (so
/// once per text), and returns the class folder.
pub(crate) fn compile_with(
    java: &Path,
    home: &Path,
    source: &Path,
    classpath: &str,
) -> Result<PathBuf, HarnessError> {
    let text = fs::read_to_string(source).ctx(|| format!("reading {}", source.display()))?;
    let out = home.join(format!("java-{:016x}", fnv1a(text.as_bytes())));
    let stamp = out.join(".compiled");
    if stamp.exists() {
        return Ok(out);
    }
    fs::create_dir_all(&out).ctx(|| format!("creating {}", out.display()))?;
    let javac = java.with_file_name("javac");
    let javac = if javac.exists() {
        javac
    } else {
        PathBuf::from("javac")
    };
    let mut cmd = Command::new(javac);
    cmd.arg("-d")
        .arg(&out)
        .arg("-cp")
        .arg(classpath)
        .arg(source);
    run_with_timeout(cmd, Duration::from_secs(300), "javac")?
        .into_stdout(format!("javac {}", source.display()))?;
    fs::write(&stamp, b"").ctx(|| format!("writing {}", stamp.display()))?;
    Ok(out)
}

/// The harness's cache root: `FRANZ_TESTKIT_CACHE`, else
/// `~/.cache/franz-testkit`.
pub(crate) fn cache_base() -> PathBuf {
    std::env::var_os("FRANZ_TESTKIT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/franz-testkit")))
        .unwrap_or_else(|| std::env::temp_dir().join("franz-testkit-cache"))
}

fn cache_dir() -> PathBuf {
    let base = cache_base();
    let hash = fnv1a(POM.as_bytes()) ^ fnv1a(WATCHDOG.as_bytes()).rotate_left(17);
    base.join(format!("kafka-{}-{hash:016x}", kafka_version()))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn write_if_changed(path: &Path, contents: &str) -> Result<(), HarnessError> {
    if fs::read_to_string(path).ok().as_deref() == Some(contents) {
        return Ok(());
    }
    fs::write(path, contents).ctx(|| format!("writing {}", path.display()))
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions_parse() {
        assert_eq!(
            parse_java_major("openjdk version \"17.0.15\" 2025-04-15"),
            Some(17)
        );
        assert_eq!(parse_java_major("java version \"1.8.0_392\""), Some(8));
        assert_eq!(
            parse_java_major("openjdk version \"21\" 2023-09-19"),
            Some(21)
        );
        assert_eq!(parse_java_major("no version here"), None);
    }

    #[test]
    fn pom_pins_the_declared_version() {
        assert!(POM.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
    }
}
