//! Who is calling, and may they change the system. The caller's uid comes from the bus (or, on a
//! peer-to-peer connection, from the socket's credentials), never from an argument.

use std::collections::HashMap;

use zbus::Connection;
use zbus::message::Header;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::errors::BusError;
use spk_dbus::names::polkit;
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

/// polkit action id for the options `force` and `adopt` (taking over files of other packages,
/// or of none), asked in addition to the install or upgrade action.
pub const FORCE_ACTION: &str = polkit::FORCE;

/// polkit action id guarding `action`.
pub fn polkit_action(action: Action) -> &'static str {
    match action {
        Action::Refresh => polkit::REFRESH,
        Action::Install => polkit::INSTALL,
        Action::Upgrade | Action::Rollback | Action::ApplyPrepared => polkit::UPGRADE,
        Action::Remove => polkit::REMOVE,
    }
}

/// Allow root; anyone else needs polkit's yes for the action (an agent may ask for a password).
/// Without polkit on the bus, only root may change the system.
pub async fn authorize(
    conn: &Connection,
    header: &Header<'_>,
    action: Action,
) -> Result<u32, BusError> {
    authorize_id(conn, header, polkit_action(action), action.as_str()).await
}

/// Allow root, or whoever polkit allows `action_id` (`verb` says what for, in messages).
pub async fn authorize_id(
    conn: &Connection,
    header: &Header<'_>,
    action_id: &str,
    verb: &str,
) -> Result<u32, BusError> {
    let uid = caller_uid(conn, header).await?;
    if uid == 0 {
        return Ok(uid);
    }
    let denied = |why: String| BusError::NotAuthorized(format!("uid {uid} may not {verb}: {why}"));
    let subject = Subject::new_for_message_header(header)
        .map_err(|e| denied(format!("cannot identify the caller for polkit: {e}")))?;
    let authority = AuthorityProxy::new(conn)
        .await
        .map_err(|e| denied(format!("polkit is not available ({e})")))?;
    let result = authority
        .check_authorization(
            &subject,
            action_id,
            &HashMap::new(),
            CheckAuthorizationFlags::AllowUserInteraction.into(),
            "",
        )
        .await;
    match result {
        Ok(r) if r.is_authorized => Ok(uid),
        Ok(_) => Err(denied(format!("polkit denied {action_id}"))),
        Err(e) => Err(denied(format!(
            "this needs root, or authorization for {action_id} through polkit, which is not \
             available ({e})"
        ))),
    }
}
