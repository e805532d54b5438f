//! Desktop notifications (`org.freedesktop.Notifications` on the session bus).
//!
//! The notifier keeps one notification slot: a new notice replaces the previous one
//! (`replaces_id`), so the user never sees a stack of stale "updates available". Actions only
//! where they lead somewhere: the update notice carries `install` ("Install updates now") and
//! `install-at-restart` ("Install updates at restart"), the default of the two first, and
//! `default` ("Show details", the list of updates); the progress notice (shown where no KDE
//! job tracker runs) carries `cancel` and the `value` hint (0–100) that servers such as dunst
//! draw as a bar, updated in place; a result notice carries none. [`Notices::action`] maps the
//! server's `ActionInvoked` for our notice back to a [`Command`]. A missing notification
//! server is not an error: the tray item still shows everything.

use std::collections::HashMap;

use futures_util::StreamExt;
use futures_util::stream::Select;
use zbus::message::Type as MessageType;
use zbus::zvariant::Value;
use zbus::{Connection, MatchRule, MessageStream, proxy};

use crate::error::Error;
use crate::model::{Update, count_phrase};
use crate::offline::InstallWhen;
use crate::tray::{Command, INSTALL_AT_RESTART, INSTALL_NOW};

/// The application name notification servers show and group by.
pub const APP_NAME: &str = "Software Updates";
/// The icon of every notice (freedesktop/Breeze theme).
const APP_ICON: &str = "system-software-update";
/// The actions that install the updates now, or prepare them for the next restart.
const ACTION_INSTALL: &str = "install";
const ACTION_INSTALL_AT_RESTART: &str = "install-at-restart";
/// The action of a click on the notice body.
const ACTION_DEFAULT: &str = "default";
const ACTION_DEFAULT_LABEL: &str = "Show details";
/// The action that cancels the transaction in progress.
const ACTION_CANCEL: &str = "cancel";
const ACTION_CANCEL_LABEL: &str = "Cancel";
const NOTIFICATIONS_IFACE: &str = "org.freedesktop.Notifications";

#[proxy(
    interface = "org.freedesktop.Notifications",
    default_service = "org.freedesktop.Notifications",
    default_path = "/org/freedesktop/Notifications"
)]
trait Notifications {
    // `Notify(app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout)`
    // takes eight arguments: [`Notices::show`] calls it with one tuple through the proxy.
    fn close_notification(&self, id: u32) -> zbus::Result<()>;
}

/// The notifier's notifications.
pub struct Notices {
    proxy: NotificationsProxy<'static>,
    signals: Select<MessageStream, MessageStream>,
    /// The notice on screen (or in the server's list), if any.
    shown: Option<Shown>,
}

/// Our notice the server holds.
#[derive(Debug, Clone, Copy)]
struct Shown {
    id: u32,
    what: Slot,
}

/// What our notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// It lists pending updates (and goes when they do).
    Updates,
    /// The progress of a transaction (it goes when the transaction ends).
    Progress,
    /// A result or an error (it stays until the user closes it).
    Result,
}

/// How one notice looks: its actions, hints and timeout.
struct Look<'a> {
    what: Slot,
    actions: &'a [&'a str],
    /// The `value` hint: a progress bar at this percentage.
    value: Option<u32>,
}

impl Notices {
    /// Subscribe to the server's `ActionInvoked` and `NotificationClosed` on `session`.
    pub async fn new(session: &Connection) -> Result<Notices, Error> {
        let proxy = NotificationsProxy::builder(session)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(Error::call("Notifications proxy"))?;
        let rule = |member: &'static str| {
            MatchRule::builder()
                .msg_type(MessageType::Signal)
                .interface(NOTIFICATIONS_IFACE)
                .and_then(|b| b.member(member))
                .map(|b| b.build())
                .map_err(Error::call("notification match rule"))
        };
        let actions = MessageStream::for_match_rule(rule("ActionInvoked")?, session, Some(64))
            .await
            .map_err(Error::call("AddMatch ActionInvoked"))?;
        let closed = MessageStream::for_match_rule(rule("NotificationClosed")?, session, Some(64))
            .await
            .map_err(Error::call("AddMatch NotificationClosed"))?;
        Ok(Notices {
            proxy,
            signals: futures_util::stream::select(actions, closed),
            shown: None,
        })
    }

    /// "3 updates available", one line per package, with both installs (`first` first) and
    /// "Show details".
    pub async fn announce(&mut self, count: u32, updates: &[Update], first: InstallWhen) {
        let mut actions = install_actions(first).to_vec();
        actions.extend([ACTION_DEFAULT, ACTION_DEFAULT_LABEL]);
        let look = Look {
            what: Slot::Updates,
            actions: &actions,
            value: None,
        };
        self.show(&count_phrase(count), &describe(updates), look)
            .await;
    }

    /// The list of updates, shown on "Show details" (with both installs when there are).
    pub async fn details(&mut self, count: u32, updates: &[Update], first: InstallWhen) {
        if count == 0 {
            self.inform("No updates available", "The system is up to date.")
                .await;
        } else {
            let summary = format!("Available updates ({count})");
            let look = Look {
                what: Slot::Updates,
                actions: &install_actions(first),
                value: None,
            };
            self.show(&summary, &describe(updates), look).await;
        }
    }

    /// A notice without actions (a result, an error).
    pub async fn inform(&mut self, summary: &str, body: &str) {
        let look = Look {
            what: Slot::Result,
            actions: &[],
            value: None,
        };
        self.show(summary, body, look).await;
    }

    /// The progress of a transaction at `percent`, in place of our previous notice, with
    /// "Cancel".
    pub async fn progress(&mut self, summary: &str, body: &str, percent: u32) {
        let look = Look {
            what: Slot::Progress,
            actions: &[ACTION_CANCEL, ACTION_CANCEL_LABEL],
            value: Some(percent.min(100)),
        };
        self.show(summary, body, look).await;
    }

    /// Close the notice listing updates, if it is still there (a result or error stays).
    pub async fn withdraw(&mut self) {
        self.close(Slot::Updates).await;
    }

    /// Close the progress notice, if it is still there (a result took its place otherwise).
    pub async fn end_progress(&mut self) {
        self.close(Slot::Progress).await;
    }

    async fn close(&mut self, what: Slot) {
        if let Some(shown) = self.shown.take_if(|s| s.what == what)
            && let Err(e) = self.proxy.close_notification(shown.id).await
        {
            tracing::debug!(id = shown.id, error = %e, "could not close the notification");
        }
    }

    async fn show(&mut self, summary: &str, body: &str, look: Look<'_>) {
        let mut hints = HashMap::new();
        hints.insert("desktop-entry", Value::from("spk-notifier"));
        let (urgency, timeout) = match look.value {
            // Low urgency, and on screen until the transaction ends.
            Some(value) => {
                hints.insert("value", Value::I32(value as i32));
                (0u8, 0i32)
            }
            None => (1u8, -1i32),
        };
        hints.insert("urgency", Value::U8(urgency));
        let replaces = self.shown.map_or(0, |s| s.id);
        let notify = (
            APP_NAME,
            replaces,
            APP_ICON,
            summary,
            body,
            look.actions,
            hints,
            timeout,
        );
        match self
            .proxy
            .inner()
            .call::<_, _, u32>("Notify", &notify)
            .await
        {
            Ok(id) => {
                tracing::info!(id, summary, value = ?look.value, "notification shown");
                self.shown = Some(Shown {
                    id,
                    what: look.what,
                });
            }
            Err(e) => tracing::warn!(summary, error = %e, "no notification server took the notice"),
        }
    }

    /// The next `ActionInvoked` of our notice, as a command (other signals update the slot and
    /// are swallowed). `None` when the session bus is gone.
    pub async fn action(&mut self) -> Option<Command> {
        loop {
            let msg = match self.signals.next().await? {
                Ok(msg) => msg,
                Err(_) => continue,
            };
            let header = msg.header();
            let member = header.member().map(|m| m.as_str().to_owned());
            match member.as_deref() {
                Some("ActionInvoked") => {
                    let Ok((id, key)) = msg.body().deserialize::<(u32, String)>() else {
                        continue;
                    };
                    if self.shown.is_none_or(|s| s.id != id) {
                        continue;
                    }
                    tracing::info!(id, action = %key, "notification action invoked");
                    match key.as_str() {
                        ACTION_INSTALL => return Some(Command::Install(InstallWhen::Now)),
                        ACTION_INSTALL_AT_RESTART => {
                            return Some(Command::Install(InstallWhen::AtRestart));
                        }
                        ACTION_DEFAULT => return Some(Command::Details),
                        ACTION_CANCEL => return Some(Command::Cancel),
                        _ => {}
                    }
                }
                Some("NotificationClosed") => {
                    if let Ok((id, _reason)) = msg.body().deserialize::<(u32, u32)>()
                        && self.shown.is_some_and(|s| s.id == id)
                    {
                        self.shown = None;
                    }
                }
                _ => {}
            }
        }
    }
}

/// The two install actions (key, label, key, label), `first` first.
fn install_actions(first: InstallWhen) -> [&'static str; 4] {
    let now = [ACTION_INSTALL, INSTALL_NOW];
    let at_restart = [ACTION_INSTALL_AT_RESTART, INSTALL_AT_RESTART];
    let (a, b) = match first {
        InstallWhen::Now => (now, at_restart),
        InstallWhen::AtRestart => (at_restart, now),
    };
    [a[0], a[1], b[0], b[1]]
}

/// One line per update: "kate 1.0-1 → 2.0-1".
fn describe(updates: &[Update]) -> String {
    updates
        .iter()
        .map(Update::describe)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_install_is_the_first_action() {
        assert_eq!(
            install_actions(InstallWhen::AtRestart),
            [
                "install-at-restart",
                "Install updates at restart",
                "install",
                "Install updates now"
            ]
        );
        assert_eq!(
            install_actions(InstallWhen::Now)[..2],
            ["install", INSTALL_NOW]
        );
    }
}
