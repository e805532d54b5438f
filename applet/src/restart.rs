//! "Restart and install": ask the desktop session to restart the computer, the way Plasma's own
//! menu does, so the user may still save their work.
//!
//! On the session bus, Plasma 6's `org.kde.LogoutPrompt` (`promptReboot`: the confirmation
//! dialog with its countdown) when something owns it, else ksmserver's `org.kde.Shutdown`
//! (`logoutAndReboot`: ends the session, then reboots). Without either (another desktop) the
//! notifier cannot restart anything and says so; spkd itself never reboots.

use zbus::names::BusName;
use zbus::{Connection, proxy};

const LOGOUT_PROMPT: &str = "org.kde.LogoutPrompt";
const SHUTDOWN: &str = "org.kde.Shutdown";

#[proxy(
    interface = "org.kde.LogoutPrompt",
    default_service = "org.kde.LogoutPrompt",
    default_path = "/LogoutPrompt"
)]
trait LogoutPrompt {
    #[zbus(name = "promptReboot")]
    fn prompt_reboot(&self) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.kde.Shutdown",
    default_service = "org.kde.Shutdown",
    default_path = "/Shutdown"
)]
trait Shutdown {
    #[zbus(name = "logoutAndReboot")]
    fn logout_and_reboot(&self) -> zbus::Result<()>;
}

/// Who was asked to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// Plasma's logout prompt shows its restart dialog.
    LogoutPrompt,
    /// ksmserver ends the session and reboots.
    Shutdown,
    /// Nothing on the session bus can restart the computer.
    Nobody,
}

/// Ask the session on `session` to restart the computer.
pub async fn ask_session_to_restart(session: &Connection) -> zbus::Result<Asked> {
    if has_owner(session, LOGOUT_PROMPT).await? {
        LogoutPromptProxy::builder(session)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .prompt_reboot()
            .await?;
        return Ok(Asked::LogoutPrompt);
    }
    if has_owner(session, SHUTDOWN).await? {
        ShutdownProxy::builder(session)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .logout_and_reboot()
            .await?;
        return Ok(Asked::Shutdown);
    }
    Ok(Asked::Nobody)
}

async fn has_owner(session: &Connection, name: &'static str) -> zbus::Result<bool> {
    let dbus = zbus::fdo::DBusProxy::new(session).await?;
    Ok(dbus.name_has_owner(BusName::from_static_str(name)?).await?)
}
