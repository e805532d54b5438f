//! The StatusNotifierItem: the tray icon, its tooltip and its menu (via `ksni`).
//!
//! The item only renders a [`View`] computed by the model; clicks become [`Command`]s sent to
//! the notifier's main loop, which talks to spkd. A left click shows the details, like the
//! "Show details" menu entry.

use ksni::menu::{MenuItem, StandardItem};
use ksni::{Category, Status, ToolTip};
use tokio::sync::mpsc::UnboundedSender;

use crate::model::{ItemStatus, View};

/// What the user asked for, from the tray menu or a notification action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `Upgrade([], {})`.
    Install,
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
        vec![
            StandardItem {
                label: "Install updates".into(),
                icon_name: "system-software-update".into(),
                enabled: self.view.can_install,
                activate: Box::new(|tray: &mut Self| tray.send(Command::Install)),
                ..Default::default()
            }
            .into(),
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
        ]
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
