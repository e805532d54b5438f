//! Reaching spkd: the bus connection, and telling "daemon unreachable" (exit 3) apart from an
//! operation that failed.

use spk_dbus::ManagerProxy;

/// A failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_UNREACHABLE: u8 = 3;

impl Failure {
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    pub fn unreachable(detail: impl std::fmt::Display) -> Self {
        let detail = detail.to_string().replace('\n', " ");
        Failure {
            code: EXIT_UNREACHABLE,
            // One line, as every error of spkctl.
            message: format!(
                "cannot reach spkd ({detail}): start it with `rc-service spkd start` (as root), \
                 or pass --bus ADDRESS for a daemon on another bus"
            ),
        }
    }
}

/// Method errors: a missing daemon is "unreachable"; a D-Bus error from spkd carries its message.
impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Self {
        if let zbus::Error::MethodError(name, msg, _) = &e {
            let name = name.as_str();
            if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
                || name == "org.freedesktop.DBus.Error.NoReply"
            {
                return Failure::unreachable(msg.as_deref().unwrap_or(name));
            }
            return Failure::failed(msg.clone().unwrap_or_else(|| name.to_owned()));
        }
        if let zbus::Error::FDO(fdo) = &e
            && matches!(
                **fdo,
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
            )
        {
            return Failure::unreachable(fdo);
        }
        Failure::failed(e.to_string())
    }
}

/// Where the installer and build host mount a SmechOS system under construction.
pub const BUILD_ROOT: &str = "/mnt/smechos";

/// Whether [`BUILD_ROOT`] is a mount point (field 5 of /proc/self/mountinfo).
pub fn build_root_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(BUILD_ROOT)))
}

/// A private spkd serving one `--root` over a socket pair; it exits when the connection closes.
pub struct PrivateDaemon {
    child: std::process::Child,
}

impl PrivateDaemon {
    /// Close our end and wait for spkd to finish (it stops at a safe point).
    pub async fn finish(mut self, conn: zbus::Connection) {
        // Dropping is not enough: zbus's socket task keeps the connection open.
        let _ = conn.close().await;
        let _ = tokio::task::spawn_blocking(move || self.child.wait()).await;
    }
}

/// Where spkd is: `SPKD` from the environment, beside this spkctl, or the installed paths.
fn spkd_binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("SPKD") {
        return p.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("spkd")));
    [
        beside,
        Some("/usr/sbin/spkd".into()),
        Some("/usr/libexec/spkd".into()),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .unwrap_or_else(|| "spkd".into())
}

/// Start `spkd --root ROOT --p2p-fd 0` on one end of a socket pair and talk D-Bus over the
/// other: the same API and engine, with no bus daemon. spkd logs to ROOT/var/log/spkd.log.
/// Should spkd exit before answering (a typo in spk.toml), this fails at once with spkd's own
/// error, read back from that log.
pub async fn connect_root(
    root: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Result<(zbus::Connection, ManagerProxy<'static>, PrivateDaemon), Failure> {
    use std::process::{Command, Stdio};
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| Failure::failed(format!("socket pair: {e}")))?;
    let log_dir = root.join("var/log");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| Failure::failed(format!("creating {}: {e}", log_dir.display())))?;
    let log_path = log_dir.join("spkd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Failure::failed(format!("opening {}: {e}", log_path.display())))?;
    // Where this spkd's lines start (the log is appended to across runs).
    let log_start = log.metadata().map_or(0, |m| m.len());
    let spkd = spkd_binary();
    let mut cmd = Command::new(&spkd);
    cmd.arg("--root").arg(root).args(["--p2p-fd", "0"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| Failure::unreachable(format!("cannot start {}: {e}", spkd.display())))?;
    // The command still holds spkd's end of the socket pair: close it here, or the handshake
    // below never sees the end of the connection when spkd dies, and waits for ever.
    drop(cmd);
    let mut daemon = PrivateDaemon { child };
    let gone = |detail: String| Failure {
        code: EXIT_UNREACHABLE,
        message: format!(
            "the private spkd for {} {detail}{}",
            root.display(),
            spkd_error(&log_path, log_start)
                .map(|e| format!(":\n{e}"))
                .unwrap_or_default()
        ),
    };
    ours.set_nonblocking(true)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let stream =
        tokio::net::UnixStream::from_std(ours).map_err(|e| Failure::failed(e.to_string()))?;
    let handshake = zbus::connection::Builder::unix_stream(stream).p2p().build();
    let conn = tokio::select! {
        built = handshake => match built {
            Ok(conn) => conn,
            Err(e) => {
                // Most likely spkd is exiting: its status (and its error, in the log, which it
                // wrote before exiting) say more than the broken handshake.
                let waited = std::time::Duration::from_secs(2);
                return Err(match tokio::time::timeout(waited, exited(&mut daemon.child)).await {
                    Ok(status) => gone(format!("exited before answering ({status})")),
                    Err(_) => gone(format!("did not start ({e})")),
                });
            }
        },
        status = exited(&mut daemon.child) => {
            return Err(gone(format!("exited before answering ({status})")));
        }
    };
    let manager = ManagerProxy::new(&conn).await.map_err(Failure::from)?;
    Ok((conn, manager, daemon))
}

/// Resolves when `child` has exited, with how.
async fn exited(child: &mut std::process::Child) -> String {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => return format!("cannot wait for it: {e}"),
        }
    }
}

/// What spkd said last in its log after `start`: from its last `spkd: ` line (the error it
/// exits with, which may span lines, e.g. a TOML error with its snippet) to the end, else
/// its last lines; at most a few KiB.
fn spkd_error(log: &std::path::Path, start: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const MAX: u64 = 4096;
    let mut file = std::fs::File::open(log).ok()?;
    let end = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(start.max(end.saturating_sub(MAX))))
        .ok()?;
    let mut bytes = Vec::new();
    file.take(MAX).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("spkd: "))
        .unwrap_or(lines.len().saturating_sub(5));
    let tail = lines[from..].join("\n");
    let tail = tail.trim();
    (!tail.is_empty()).then(|| tail.to_owned())
}

pub async fn connect(
    bus: Option<&str>,
) -> Result<(zbus::Connection, ManagerProxy<'static>), Failure> {
    let conn = match bus {
        Some(address) => {
            zbus::connection::Builder::address(address)
                .map_err(|e| Failure {
                    code: 2,
                    message: format!("invalid bus address '{address}': {e}"),
                })?
                .build()
                .await
        }
        None => zbus::Connection::system().await,
    }
    .map_err(|e| Failure::unreachable(format!("cannot connect to the bus: {e}")))?;
    let manager = ManagerProxy::new(&conn).await.map_err(Failure::from)?;
    Ok((conn, manager))
}
