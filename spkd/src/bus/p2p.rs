//! Peer-to-peer D-Bus: `spkctl --root` starts a private spkd with one end of a socket pair, so
//! the installer and chroots use the same API with no bus daemon.

use std::os::fd::{FromRawFd, OwnedFd};

use zbus::Connection;

use super::manager::Manager;
use spk_dbus::MANAGER_PATH as PATH;

/// Serve `manager` to the peer on socket `fd` (authenticated as the same user).
pub async fn serve(fd: i32, manager: Manager) -> Result<Connection, String> {
    let is_socket = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
    if fd < 0 || !is_socket {
        return Err(format!("--p2p-fd {fd}: not an open socket"));
    }
    // SAFETY: the fd was checked to be an open socket, and the caller handed it to spkd to own; nothing
    // else in this process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let std_stream = std::os::unix::net::UnixStream::from(owned);
    std_stream
        .set_nonblocking(true)
        .map_err(|e| format!("--p2p-fd {fd}: {e}"))?;
    let stream = tokio::net::UnixStream::from_std(std_stream)
        .map_err(|e| format!("--p2p-fd {fd}: not a socket: {e}"))?;
    zbus::connection::Builder::unix_stream(stream)
        .server(zbus::Guid::generate())
        .map_err(|e| e.to_string())?
        .p2p()
        .serve_at(PATH, manager)
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| format!("peer-to-peer D-Bus: {e}"))
}

/// Resolves when the peer has gone away.
pub async fn closed(conn: &Connection) {
    use futures_util::StreamExt;
    let mut stream = zbus::MessageStream::from(conn);
    while let Some(msg) = stream.next().await {
        if msg.is_err() {
            break;
        }
    }
}
