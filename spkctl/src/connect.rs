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
