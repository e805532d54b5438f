//! Who is calling, and may they change the system. The caller's uid comes from the bus (or, on a
//! peer-to-peer connection, from the socket's credentials), never from an argument.

use zbus::Connection;
use zbus::message::Header;

use super::errors::BusError;
use spk_engine::Action;

/// The uid of the process that sent `header`.
pub async fn caller_uid(conn: &Connection, header: &Header<'_>) -> Result<u32, BusError> {
    match header.sender() {
        Some(sender) => {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            Ok(dbus.get_connection_unix_user(sender.clone().into()).await?)
        }
        None => conn
            .peer_creds()
            .await
            .map_err(|e| {
                BusError::NotAuthorized(format!("cannot read the peer's credentials: {e}"))
            })?
            .unix_user_id()
            .ok_or_else(|| BusError::NotAuthorized("the peer's uid is unknown".into())),
    }
}

/// polkit action id guarding `action`.
pub fn polkit_action(action: Action) -> &'static str {
    match action {
        Action::Refresh => "xyz.smech.spk.refresh",
        Action::Install => "xyz.smech.spk.install",
        Action::Upgrade => "xyz.smech.spk.upgrade",
        Action::Remove => "xyz.smech.spk.remove",
    }
}

/// Allow root; anyone else needs polkit's yes for the action (not available here yet, so no).
pub async fn authorize(
    conn: &Connection,
    header: &Header<'_>,
    action: Action,
) -> Result<u32, BusError> {
    let uid = caller_uid(conn, header).await?;
    if uid == 0 {
        return Ok(uid);
    }
    Err(BusError::NotAuthorized(format!(
        "uid {uid} may not {}: this needs root, or authorization for {} through polkit, \
         which is not available",
        action.as_str(),
        polkit_action(action)
    )))
}
