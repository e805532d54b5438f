//! The StatusNotifierItem: the tray icon, its tooltip and its menu (via `ksni`).
//!
//! The item only renders a [`View`] computed by the model; clicks become [`Command`]s sent to
//! the notifier's main loop, which talks to spkd. A left click shows the details, like the
//! "Show details" menu entry.
//!
//! The menu offers "Install updates now" and "Install updates at restart", the default of the
//! two first; while an update is prepared for the next boot, "Restart and install" and "Cancel
//! prepared update".

use ksni::menu::{MenuItem, StandardItem};
use ksni::{Category, Status, ToolTip};
use tokio::sync::mpsc::UnboundedSender;

use crate::model::{ItemStatus, View};
use crate::offline::InstallWhen;

/// The labels of the two installs (menu entries and notification actions).
pub const INSTALL_NOW: &str = "Install updates now";
pub const INSTALL_AT_RESTART: &str = "Install updates at restart";

/// What the user asked for, from the tray menu or a notification action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `Upgrade([], {})`, or with option `offline` for the next restart.
    Install(InstallWhen),
    /// Ask the session to restart the computer (which installs the prepared update).
    RestartAndInstall,
    /// `CancelPreparedUpdate()`.
    CancelPrepared,
    /// `Refresh({})`.
    Check,
    /// Show the list of updates.
    Details,
    /// `Cancel()` the followed transaction (its job view's or progress notice's cancel).
    Cancel,
}

/// The tray item's state, as ksni reads it.
pub struct UpdatesTray {
    view: View,
    commands: UnboundedSender<Command>,
}

impl UpdatesTray {
    pub fn new(view: View, commands: UnboundedSender<Command>) -> UpdatesTray {
        UpdatesTray { view, commands }
    }

    pub fn set_view(&mut self, view: View) {
        self.view = view;
    }

    fn send(&self, command: Command) {
        // The main loop owns the receiver for the program's whole life.
        let _ = self.commands.send(command);
    }
}

impl ksni::Tray for UpdatesTray {
    fn id(&self) -> String {
        "spk-notifier".into()
    }

    fn title(&self) -> String {
        "Software Updates".into()
    }

    fn category(&self) -> Category {
        Category::SystemServices
    }

    fn status(&self) -> Status {
        match self.view.status {
            ItemStatus::Passive => Status::Passive,
            ItemStatus::Active => Status::Active,
            ItemStatus::NeedsAttention => Status::NeedsAttention,
        }
    }

    fn icon_name(&self) -> String {
        self.view.icon.into()
    }

    fn attention_icon_name(&self) -> String {
        "update-high".into()
    }

    fn tool_tip(&self) -> ToolTip {
        ToolTip {
            icon_name: self.view.icon.into(),
            icon_pixmap: Vec::new(),
            title: self.view.tooltip_title.clone(),
            description: self.view.tooltip_body.clone(),
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.send(Command::Details);
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let install = |when: InstallWhen| -> MenuItem<Self> {
            let (label, icon) = match when {
                InstallWhen::Now => (INSTALL_NOW, "system-software-update"),
                InstallWhen::AtRestart => (INSTALL_AT_RESTART, "system-reboot"),
            };
            StandardItem {
                label: label.into(),
                icon_name: icon.into(),
                enabled: self.view.can_install,
                activate: Box::new(move |tray: &mut Self| tray.send(Command::Install(when))),
                ..Default::default()
            }
            .into()
        };
        let mut menu = match self.view.install_first {
            InstallWhen::Now => vec![install(InstallWhen::Now), install(InstallWhen::AtRestart)],
            InstallWhen::AtRestart => {
                vec![install(InstallWhen::AtRestart), install(InstallWhen::Now)]
            }
        };
        if self.view.can_restart {
            menu.push(
                StandardItem {
                    label: "Restart and install".into(),
                    icon_name: "system-reboot".into(),
                    activate: Box::new(|tray: &mut Self| tray.send(Command::RestartAndInstall)),
                    ..Default::default()
                }
                .into(),
            );
        }
        if self.view.can_cancel_prepared {
            menu.push(
                StandardItem {
                    label: "Cancel prepared update".into(),
                    icon_name: "edit-delete".into(),
                    activate: Box::new(|tray: &mut Self| tray.send(Command::CancelPrepared)),
                    ..Default::default()
                }
                .into(),
            );
        }
        menu.extend([
            StandardItem {
                label: "Check now".into(),
                icon_name: "view-refresh".into(),
                enabled: self.view.can_check,
                activate: Box::new(|tray: &mut Self| tray.send(Command::Check)),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: "Show details".into(),
                icon_name: "documentation".into(),
                activate: Box::new(|tray: &mut Self| tray.send(Command::Details)),
                ..Default::default()
            }
            .into(),
        ]);
        menu
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        // Keep serving: Plasma's watcher may come (back) later and the item re-registers then.
        tracing::info!(?reason, "no StatusNotifierWatcher on the session bus (yet)");
        true
    }

    fn watcher_online(&self) {
        tracing::info!("StatusNotifierWatcher is back; the item registered again");
    }
}
