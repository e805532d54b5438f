//! Updates installed at restart, as the notifier offers and tells them: which install it offers
//! first (now, or at the next restart), the update spkd keeps prepared for the next boot, and
//! the one notice after the boot that installed it (or could not).
//!
//! Nothing here does I/O: [`crate::model`] holds these facts, [`crate::settings`] reads the
//! user's choice and keeps [`Remembered`] between logins.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use spk_dbus::{HistoryChange, HistoryRow, Kind, PreparedRow, State};

use crate::job::Report;
use crate::model::Update;

/// When the updates are installed: at once, or by spkd at the next boot (`Upgrade` with option
/// `offline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallWhen {
    Now,
    AtRestart,
}

/// The `default_install` setting: which install the notification and the menu offer first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultInstall {
    /// At restart when any pending update is a system package (Qt, Mesa, Plasma… are replaced
    /// under a running session otherwise), now when all are userland.
    #[default]
    Auto,
    Now,
    AtRestart,
}

impl FromStr for DefaultInstall {
    type Err = String;

    fn from_str(s: &str) -> Result<DefaultInstall, String> {
        match s {
            "auto" => Ok(DefaultInstall::Auto),
            "now" => Ok(DefaultInstall::Now),
            "restart" => Ok(DefaultInstall::AtRestart),
            other => Err(format!(
                "default_install must be auto, now or restart, not '{other}'"
            )),
        }
    }
}

impl DefaultInstall {
    /// The install offered first for these pending `updates`.
    pub fn choose(self, updates: &[Update]) -> InstallWhen {
        match self {
            DefaultInstall::Now => InstallWhen::Now,
            DefaultInstall::AtRestart => InstallWhen::AtRestart,
            DefaultInstall::Auto if updates.iter().any(|u| u.system) => InstallWhen::AtRestart,
            DefaultInstall::Auto => InstallWhen::Now,
        }
    }
}

/// The update spkd prepared for the next boot (its `PreparedUpdate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Unix seconds.
    pub prepared_at: u64,
    pub changes: Vec<HistoryChange>,
    /// Why spkd will discard it at boot instead of installing it; empty when it will install.
    pub stale: String,
}

impl Prepared {
    /// The prepared update of spkd's `row`; `None` when none is prepared.
    pub fn from_row(row: PreparedRow) -> Option<Prepared> {
        row.is_prepared().then_some(Prepared {
            prepared_at: row.prepared_at,
            changes: row.changes,
            stale: row.stale,
        })
    }

    /// Whether the next boot installs it (it is not stale).
    pub fn will_install(&self) -> bool {
        self.stale.is_empty()
    }

    /// Whether it installs `update` (that build of that package).
    pub fn covers(&self, update: &Update) -> bool {
        self.changes.iter().any(|c| {
            c.name == update.name
                && (update.available_version.is_empty() || c.to == update.available_version)
        })
    }

    /// "kate 1.0-1 → 2.0-1", one line per package.
    pub fn describe(&self) -> String {
        self.changes
            .iter()
            .map(|c| match (c.from.is_empty(), c.to.is_empty()) {
                (false, false) => format!("{} {} → {}", c.name, c.from, c.to),
                (true, _) => format!("{} {}", c.name, c.to),
                (false, true) => format!("{} (removed)", c.name),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A prepared update that a boot installed (or discarded): an `offline-update` history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootUpdate {
    /// Its history id.
    pub id: u64,
    pub state: State,
    pub error: String,
    pub changes: Vec<HistoryChange>,
}

impl BootUpdate {
    /// The newest `offline-update` entry of `history` (`GetHistory`'s rows, newest first).
    pub fn newest(history: &[HistoryRow]) -> Option<BootUpdate> {
        let row = history
            .iter()
            .filter(|row| row.kind == Kind::OfflineUpdate)
            .max_by_key(|row| row.id)?;
        Some(BootUpdate {
            id: row.id,
            state: row.state,
            error: row.error.clone(),
            changes: row.changes.clone(),
        })
    }

    /// The notice after the boot: what was installed, or why nothing was. `prepared_at` is
    /// when the update was prepared, if the notifier saw it then.
    pub fn report(&self, prepared_at: Option<u64>) -> Report {
        let installed: Vec<String> = self
            .changes
            .iter()
            .filter(|c| !c.to.is_empty())
            .map(|c| format!("{} {}", c.name, c.to))
            .collect();
        if self.state == State::Finished {
            return Report {
                summary: "Updates installed at restart".to_owned(),
                body: installed.join(", "),
            };
        }
        let which = match prepared_at {
            Some(secs) => format!("The updates prepared on {}", date(secs)),
            None => "The updates prepared for this restart".to_owned(),
        };
        let why = if self.error.is_empty() {
            format!("the installation {}", self.state)
        } else {
            self.error.clone()
        };
        let mut body = format!("{which} could not be installed: {why}");
        if !installed.is_empty() {
            body.push_str(&format!(
                "\nInstalled before the failure: {}.",
                installed.join(", ")
            ));
        }
        body.push_str(&format!("\nTransaction {} in `spkctl history`.", self.id));
        Report {
            summary: "Updates not installed at restart".to_owned(),
            body,
        }
    }
}

/// What the notifier remembers between logins (its state file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// The history id of the last update installed at restart that the user was told about.
    pub announced_boot_update: Option<u64>,
    /// When the update prepared for the next boot was prepared (for the notice after it).
    pub prepared_at: Option<u64>,
}

/// "2026-12-02 09:42 UTC".
pub fn date(secs: u64) -> String {
    let stamp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    // "2026-12-02T09:42:34Z"
    let stamp = stamp.to_string();
    match (stamp.get(..10), stamp.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => stamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, system: bool) -> Update {
        Update {
            name: name.into(),
            installed_version: "1.0-1".into(),
            available_version: "2.0-1".into(),
            system,
        }
    }

    fn change(name: &str, from: &str, to: &str) -> HistoryChange {
        HistoryChange {
            name: name.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn history(id: u64, kind: Kind, state: State, error: &str) -> HistoryRow {
        HistoryRow {
            id,
            started: 0,
            finished: 0,
            uid: 0,
            kind,
            packages: Vec::new(),
            state,
            error: error.into(),
            changes: vec![change("kate", "1.0-1", "2.0-1"), change("mesa", "24", "25")],
        }
    }

    #[test]
    fn a_system_package_makes_the_restart_the_default() {
        let userland = [update("kate", false)];
        let mixed = [update("kate", false), update("mesa", true)];
        assert_eq!(DefaultInstall::Auto.choose(&userland), InstallWhen::Now);
        assert_eq!(DefaultInstall::Auto.choose(&mixed), InstallWhen::AtRestart);
        assert_eq!(DefaultInstall::Now.choose(&mixed), InstallWhen::Now);
        assert_eq!(
            DefaultInstall::AtRestart.choose(&userland),
            InstallWhen::AtRestart
        );
    }

    #[test]
    fn the_setting_reads_auto_now_or_restart() {
        assert_eq!("restart".parse(), Ok(DefaultInstall::AtRestart));
        assert_eq!("now".parse(), Ok(DefaultInstall::Now));
        assert_eq!("auto".parse(), Ok(DefaultInstall::Auto));
        assert!("later".parse::<DefaultInstall>().is_err());
    }

    #[test]
    fn no_prepared_update_is_none() {
        assert_eq!(Prepared::from_row(PreparedRow::default()), None);
    }

    #[test]
    fn the_newest_offline_update_of_the_history_is_told() {
        let rows = [
            history(9, Kind::Upgrade, State::Finished, ""),
            history(8, Kind::OfflineUpdate, State::Finished, ""),
            history(5, Kind::OfflineUpdate, State::Failed, "old"),
        ];
        let boot = BootUpdate::newest(&rows).expect("an offline update");
        assert_eq!(boot.id, 8);
        assert_eq!(
            boot.report(None),
            Report {
                summary: "Updates installed at restart".into(),
                body: "kate 2.0-1, mesa 25".into(),
            }
        );
        assert_eq!(BootUpdate::newest(&rows[..1]), None);
    }

    #[test]
    fn a_discarded_update_says_when_it_was_prepared_and_why() {
        let mut row = history(3, Kind::OfflineUpdate, State::Failed, "kate changed since");
        row.changes.clear();
        let boot = BootUpdate::newest(&[row]).expect("an offline update");
        let report = boot.report(Some(1_796_204_554));
        assert_eq!(report.summary, "Updates not installed at restart");
        assert_eq!(
            report.body,
            "The updates prepared on 2026-12-02 09:42 UTC could not be installed: kate changed since\n\
             Transaction 3 in `spkctl history`."
        );
        assert!(
            boot.report(None)
                .body
                .starts_with("The updates prepared for this restart could not be installed: ")
        );
    }
}
