//! Reaching spkd: the bus connection, and telling "daemon unreachable" (exit 3) apart from an
//! operation that failed.

use crate::proxy::ManagerProxy;

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
        Failure {
            code: EXIT_UNREACHABLE,
            message: format!(
                "cannot reach spkd: {detail}\n\
                 Start the daemon with `rc-service spkd start` (as root), or pass --bus ADDRESS \
                 for a daemon on another bus."
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
    let daemon = PrivateDaemon { child };
    ours.set_nonblocking(true)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let stream =
        tokio::net::UnixStream::from_std(ours).map_err(|e| Failure::failed(e.to_string()))?;
    let conn = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log_path)
                .map(|l| l.lines().last().unwrap_or_default().to_owned())
                .unwrap_or_default();
            Failure::unreachable(format!(
                "the private spkd for {} did not start ({e}): {tail}",
                root.display()
            ))
        })?;
    let manager = ManagerProxy::new(&conn).await.map_err(Failure::from)?;
    Ok((conn, manager, daemon))
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
