//! Runs the real `spkd` and `spkctl` binaries of this workspace as processes.
//!
//! [`Spkd`] starts the daemon on a private bus, waits until it owns `xyz.smech.Spk1`, sends
//! SIGTERM on request and kills it on drop; its stderr goes to a log file the fixture prints
//! when a test fails. [`spkctl`] runs the client with a timeout and returns its exit code and
//! output.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The bus name spkd owns once it is ready.
pub use spk_dbus::BUS_NAME;
/// How long spkd may take to own its name.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one spkctl command may take.
const SPKCTL_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/<profile>/NAME` of this workspace, found next to the running test binary. The
/// binaries are (re)built once per test process: `cargo test` builds only this crate's own
/// targets, and a stale spkd would test yesterday's code.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // The test binary is target/<profile>/deps/<test>-<hash>.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let mut build = Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "spkd",
                "-p",
                "spkctl",
                "-p",
                "spk-publish",
            ])
            .current_dir(workspace_root());
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build");
        assert!(
            status.success(),
            "cargo build of spkd, spkctl and spk-publish failed"
        );
    });
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// The workspace root (parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate is inside the workspace")
        .to_path_buf()
}

/// How to start spkd: its arguments, and a command prefix it runs under (e.g. `nsenter -t PID
/// -m --` to run it inside a test's mount namespace; the prefix must exec spkd, so that the
/// child's pid, signals and exit status are spkd's own).
#[derive(Debug, Clone)]
pub struct Launch {
    pub prefix: Vec<OsString>,
    /// `--root`, as spkd sees it.
    pub root: PathBuf,
    /// `--config`, as spkd sees it.
    pub config: PathBuf,
    pub bus_address: String,
    /// Where its stdout and stderr go (appended).
    pub log: PathBuf,
}

/// A running spkd.
pub struct Spkd {
    child: Child,
    log: PathBuf,
}

impl Spkd {
    /// Start spkd for `root` with `config` on the bus at `bus_address`; its stderr goes to
    /// `log`. Returns once the daemon owns [`BUS_NAME`], or panics with the log.
    pub async fn start(root: &Path, config: &Path, bus_address: &str, log: &Path) -> Spkd {
        Spkd::start_with_env(root, config, bus_address, log, &[]).await
    }

    /// [`Spkd::start`] with these variables added to spkd's environment (e.g.
    /// `SPKD_FAILPOINTS`, which makes it crash at a named point).
    pub async fn start_with_env(
        root: &Path,
        config: &Path,
        bus_address: &str,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Spkd {
        let launch = Launch {
            prefix: Vec::new(),
            root: root.to_path_buf(),
            config: config.to_path_buf(),
            bus_address: bus_address.to_string(),
            log: log.to_path_buf(),
        };
        Spkd::launch(&launch, env).await
    }

    /// Start spkd as `launch` says, with these variables added to its environment.
    pub async fn launch(launch: &Launch, env: &[(&str, &str)]) -> Spkd {
        // Append: a restarted daemon adds to the same log.
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&launch.log)
            .expect("open spkd log");
        let spkd = binary("spkd");
        let mut argv: Vec<OsString> = launch.prefix.clone();
        argv.push(spkd.into_os_string());
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("--root")
            .arg(&launch.root)
            .arg("--config")
            .arg(&launch.config)
            .arg("--bus")
            .arg(&launch.bus_address)
            .arg("--log-level")
            .arg("debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup log"))
            .stderr(stderr)
            .spawn()
            .expect("spawn spkd");
        let mut spkd = Spkd {
            child,
            log: launch.log.clone(),
        };
        spkd.wait_ready(&launch.bus_address).await;
        spkd
    }

    async fn wait_ready(&mut self, bus_address: &str) {
        let conn = zbus::connection::Builder::address(bus_address)
            .expect("bus address")
            .build()
            .await
            .expect("connect to bus");
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .expect("org.freedesktop.DBus proxy");
        let name = zbus::names::BusName::try_from(BUS_NAME).expect("bus name");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if dbus.name_has_owner(name.clone()).await.unwrap_or(false) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "spkd exited with {status} before owning {BUS_NAME}; its log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "spkd did not own {BUS_NAME} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Process id of the daemon.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What spkd wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Wait (at most `timeout`) for spkd to exit by itself, e.g. at a crash point; `None` if
    /// it still runs then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for spkd") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send SIGTERM and wait (at most `timeout`) for the exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.child.try_wait().expect("wait for spkd") {
            return status;
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for spkd") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "spkd did not exit within {timeout:?} of SIGTERM; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spkd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The result of one spkctl run.
#[derive(Debug)]
pub struct CtlOutput {
    pub args: Vec<String>,
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// stdout parsed as JSON, or a panic showing the whole run.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Panic with the whole run unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &CtlOutput {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}, got {:?}:\n{self}",
            self.code
        );
        self
    }

    /// Panic with the whole run unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &CtlOutput {
        self.assert_code(0)
    }

    /// Panic unless stderr contains `text`.
    #[track_caller]
    pub fn assert_stderr_contains(&self, text: &str) -> &CtlOutput {
        assert!(
            self.stderr.contains(text),
            "stderr does not contain {text:?}:\n{self}"
        );
        self
    }

    /// The `note: PACKAGE: MESSAGE` lines of stdout (what a transaction reported about
    /// `.spknew`/`.spksave` files and mount points), in order. Panics unless they are the last
    /// lines of stdout, right after the summary line, as spkctl prints them.
    #[track_caller]
    pub fn notes(&self) -> Vec<&str> {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let first = lines
            .iter()
            .position(|l| l.starts_with("note: "))
            .unwrap_or(lines.len());
        let notes = lines[first..].to_vec();
        assert!(
            notes.iter().all(|l| l.starts_with("note: ")),
            "the notes are not the last lines of stdout:\n{self}"
        );
        assert!(
            notes.is_empty() || first > 0,
            "no summary line before the notes:\n{self}"
        );
        notes
    }

    /// The `error: ...` line of stderr, or a panic.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no line starting with `error: ` on stderr:\n{self}"))
    }
}

impl fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ spkctl {}", self.args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Run `spkctl ARGS` (the caller supplies `--bus` etc.) with a timeout.
pub async fn spkctl<S: AsRef<str>>(args: &[S]) -> CtlOutput {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let child = tokio::process::Command::new(binary("spkctl"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn spkctl");
    let output = tokio::time::timeout(SPKCTL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "spkctl {} did not finish in {SPKCTL_TIMEOUT:?}",
                args.join(" ")
            )
        })
        .expect("wait for spkctl");
    CtlOutput {
        args,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
