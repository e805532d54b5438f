//! What the notifier knows about spkd, and what it should show: a state machine with no I/O.
//!
//! [`Model`] is fed facts read from the system bus (spkd came or went, the list of upgradable
//! packages, a transaction's properties, signals and end) and answers with [`Effect`]s for the
//! notification and job-progress adapters; [`Model::view`] renders the tray item. It decides
//! once, here, when a notification is due:
//!
//! - updates are announced only when the set holds one not announced before, so neither a
//!   repeated signal nor a reconnect to a restarted spkd notifies twice;
//! - the progress of every modifying transaction is shown while it runs, whoever started it;
//! - a result ("Updates installed", "Update cancelled", a failure) is told only for a
//!   transaction the user asked for here — started from the notifier's "Install updates…", or
//!   cancelled from its job view or progress notice. Who starts a transaction elsewhere (root
//!   with spkctl in a terminal) reads its result there; the tray item still returns to its
//!   state (and a failure still turns it NeedsAttention). A transaction that changed no
//!   package (an upgrade with nothing to do) is never announced;
//! - updates are offered to install now or at the next restart, the one of the `default_install`
//!   setting first; once spkd holds an update prepared for the next boot the item says so and
//!   offers to restart or to cancel it;
//! - the result of a boot that installed a prepared update is told once, at the first look at
//!   spkd's history after it, and never again at a later login ([`Remembered`]).

use std::collections::{BTreeSet, VecDeque};

use spk_dbus::{Activity, HistoryRow, Kind, PreparedRow, State};

pub use crate::job::{Job, Report};
use crate::offline::{BootUpdate, DefaultInstall, InstallWhen, Prepared, Remembered};

/// How many ended transactions the model remembers (to report each end once).
const ENDED_MEMORY: usize = 32;

/// One package that has a newer build in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Update {
    pub name: String,
    pub installed_version: String,
    pub available_version: String,
    /// A `system` package (not `userland`): replacing it under a running session is risky.
    pub system: bool,
}

impl Update {
    /// "kate 1.0-1 → 2.0-1" (or just the name when spkd gave no versions).
    pub fn describe(&self) -> String {
        match (
            self.installed_version.is_empty(),
            self.available_version.is_empty(),
        ) {
            (false, false) => format!(
                "{} {} → {}",
                self.name, self.installed_version, self.available_version
            ),
            (true, false) => format!("{} {}", self.name, self.available_version),
            _ => self.name.clone(),
        }
    }
}

/// How the tray item presents itself (the StatusNotifierItem `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    Passive,
    Active,
    NeedsAttention,
}

/// Everything the tray item shows; rendered by [`Model::view`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub status: ItemStatus,
    /// A freedesktop/Breeze icon name.
    pub icon: &'static str,
    pub tooltip_title: String,
    pub tooltip_body: String,
    /// "Install updates now" and "… at restart" make sense now.
    pub can_install: bool,
    /// Which of the two is offered first (the notification's first action too).
    pub install_first: InstallWhen,
    /// An update is prepared and the next boot installs it: "Restart and install".
    pub can_restart: bool,
    /// An update is prepared (even one the boot will discard): "Cancel prepared update".
    pub can_cancel_prepared: bool,
    /// "Check now" makes sense now.
    pub can_check: bool,
}

/// Something the notifier must do outside the tray item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the user about updates they have not been told about, offering `first` first.
    Announce {
        count: u32,
        updates: Vec<Update>,
        first: InstallWhen,
    },
    /// The announced updates are gone (installed, or spkd has none): close the notification.
    Withdraw,
    /// A modifying transaction started: show its progress.
    JobStarted {
        title: String,
        packages: Vec<String>,
    },
    /// The followed transaction progressed: `progress` is "42 %, 3 of 7", `activity` what
    /// happens now ("Downloading kate").
    JobProgress {
        title: String,
        percent: u32,
        progress: String,
        activity: String,
    },
    /// Tell the user how a transaction they asked for ended (before its [`Effect::JobEnded`]
    /// when it is the followed one, so the notice can take the progress notice's place).
    Report(Report),
    /// The followed transaction ended: stop showing its progress; `error` is `None` on
    /// success.
    JobEnded { error: Option<String> },
    /// Tell the user how the boot installed the prepared update (whatever shows progress).
    Inform(Report),
}

/// The notifier's knowledge.
#[derive(Debug, Default)]
pub struct Model {
    daemon_present: bool,
    /// `UpdateCount` of spkd.
    count: u32,
    /// The upgradable packages, sorted by name.
    updates: Vec<Update>,
    /// Every update (name, version) the user was told about in this session.
    announced: BTreeSet<(String, String)>,
    /// The modifying transaction being followed.
    job: Option<Job>,
    /// Paths of the last transactions that ended, reported already.
    ended: VecDeque<String>,
    /// A refresh runs ("Checking for updates…").
    checking: Option<String>,
    /// The last transaction failed with this message (until the next one starts).
    failure: Option<String>,
    /// Transactions the user asked for here: their result is reported.
    asked: BTreeSet<String>,
    /// Calls creating a transaction sent and not answered yet.
    requests_pending: u32,
    /// Transactions that ended while a request was pending (with their end state and
    /// message), until its answer says whether they were the user's.
    unclaimed: Vec<(Job, State, String)>,
    /// Transactions the user asked for here that prepare an update for the next boot.
    preparing: BTreeSet<String>,
    /// The user's `default_install` setting.
    default_install: DefaultInstall,
    /// spkd's `PreparedUpdate`, when one is prepared.
    prepared: Option<Prepared>,
    /// What is kept between logins.
    remembered: Remembered,
}

impl Model {
    /// A model with the user's setting and what an earlier login remembered.
    pub fn new(default_install: DefaultInstall, remembered: Remembered) -> Model {
        Model {
            default_install,
            remembered,
            ..Model::default()
        }
    }

    /// What to keep for the next login (saved when it changes).
    pub fn remembered(&self) -> &Remembered {
        &self.remembered
    }

    /// The install offered first for the pending updates.
    pub fn install_first(&self) -> InstallWhen {
        self.default_install.choose(&self.updates)
    }

    pub fn daemon_present(&self) -> bool {
        self.daemon_present
    }

    pub fn updates(&self) -> &[Update] {
        &self.updates
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The followed transaction, if any.
    pub fn job(&self) -> Option<&Job> {
        self.job.as_ref()
    }

    /// spkd owns its name on the bus (again). The caller loads a fresh snapshot next.
    pub fn daemon_appeared(&mut self) {
        self.daemon_present = true;
    }

    /// spkd left the bus: nothing is pending as far as we can tell, and a followed transaction
    /// is over. What was announced stays remembered, so a restarted spkd reporting the same
    /// updates does not notify again.
    pub fn daemon_vanished(&mut self) -> Vec<Effect> {
        self.daemon_present = false;
        self.count = 0;
        self.updates.clear();
        self.checking = None;
        self.prepared = None;
        let mut effects = Vec::new();
        if let Some(job) = self.job.take() {
            effects.extend(self.end(job, State::Failed, "The update service stopped"));
        }
        // A restarted spkd numbers its transactions anew.
        self.asked.clear();
        self.unclaimed.clear();
        self.preparing.clear();
        effects
    }

    /// spkd's current updates (`UpdateCount` and the `upgradable` rows of `ListPackages`).
    /// Announces them when the set holds an update not announced before.
    pub fn set_updates(&mut self, count: u32, mut updates: Vec<Update>) -> Vec<Effect> {
        updates.sort();
        let count = count.max(updates.len() as u32);
        let set: BTreeSet<(String, String)> = updates
            .iter()
            .map(|u| (u.name.clone(), u.available_version.clone()))
            .collect();
        let mut effects = Vec::new();
        if count == 0 {
            if self.count > 0 {
                effects.push(Effect::Withdraw);
            }
        } else if set.iter().any(|u| !self.was_announced(u)) {
            effects.push(Effect::Announce {
                count,
                first: self.default_install.choose(&updates),
                updates: updates.clone(),
            });
        }
        // Remembered for the whole session (a few entries per package build): a restarted spkd
        // that forgot its last refresh and reports the same builds again is no news.
        self.announced.extend(set);
        self.count = count;
        self.updates = updates;
        effects
    }

    /// Whether `(name, version)` was announced; an update known only by its name (spkd's
    /// `UpdatesAvailable` read while its package list could not be) was when any build of that
    /// package was.
    fn was_announced(&self, (name, version): &(String, String)) -> bool {
        if version.is_empty() {
            self.announced.iter().any(|(n, _)| n == name)
        } else {
            self.announced.contains(&(name.clone(), version.clone()))
        }
    }

    /// Whether the transaction at `path` is one the model follows (or has followed).
    pub fn follows(&self, path: &str) -> bool {
        self.job.as_ref().is_some_and(|j| j.path == path)
            || self.checking.as_deref() == Some(path)
            || self.ended.iter().any(|p| p == path)
    }

    /// Whether a modifying transaction is followed now.
    pub fn is_following_job(&self) -> bool {
        self.job.is_some()
    }

    /// The user asked here for a transaction (`Upgrade`); its path comes with
    /// [`Model::request_answered`].
    pub fn request_sent(&mut self) {
        self.requests_pending += 1;
    }

    /// spkd answered a request to install `when` with the new transaction's `path` (`None`:
    /// it refused). A result that came before the answer is reported now.
    pub fn request_answered(&mut self, path: Option<&str>, when: InstallWhen) -> Vec<Effect> {
        self.requests_pending = self.requests_pending.saturating_sub(1);
        let mut effects = Vec::new();
        if let Some(path) = path {
            self.asked.insert(path.to_owned());
            if when == InstallWhen::AtRestart {
                self.preparing.insert(path.to_owned());
                if let Some(job) = self.job_at(path) {
                    job.prepares = true;
                }
            }
            if let Some(i) = self.unclaimed.iter().position(|(j, ..)| j.path == path) {
                let (mut job, state, message) = self.unclaimed.remove(i);
                job.prepares = when == InstallWhen::AtRestart;
                effects.extend(job.report(state, &message).map(Effect::Report));
            }
        }
        if self.requests_pending == 0 {
            self.unclaimed.clear();
        }
        effects
    }

    /// The user asked to cancel the followed transaction (its job view's cancel, the progress
    /// notice's "Cancel"): the path to call `Cancel()` on, if it can still be cancelled. Its
    /// end is reported to the user, who asked for it.
    pub fn cancel_requested(&mut self) -> Option<String> {
        let job = self.job.as_ref().filter(|j| !j.is_over())?;
        self.asked.insert(job.path.clone());
        Some(job.path.clone())
    }

    /// The transaction `job` was read (its properties, or a change of them). Refreshes are
    /// tracked for the tooltip only; the first modifying transaction seen is followed until it
    /// ends (its end may be the state read here).
    pub fn transaction_seen(&mut self, mut job: Job) -> Vec<Effect> {
        job.prepares = self.preparing.contains(&job.path);
        if job.kind == Kind::Refresh {
            if job.is_over() {
                if self.checking.as_deref() == Some(job.path.as_str()) {
                    self.checking = None;
                }
            } else {
                self.checking = Some(job.path);
            }
            return Vec::new();
        }
        let mut effects = Vec::new();
        match &mut self.job {
            Some(current) if current.path == job.path => {
                let before = (current.percentage, current.activity());
                // Percentage never goes down within a transaction; keep it so. What the
                // signals told (packages done, in flight) and the total stay.
                let percentage = job.percentage.max(current.percentage);
                *current = Job {
                    percentage,
                    total: current.total,
                    done: std::mem::take(&mut current.done),
                    in_flight: std::mem::take(&mut current.in_flight),
                    notices: std::mem::take(&mut current.notices),
                    ..job
                };
                if current.is_over() {
                    let state = current.state;
                    let path = current.path.clone();
                    return self.transaction_finished(&path, state, "");
                }
                if before != (current.percentage, current.activity()) {
                    effects.extend(self.progress());
                }
            }
            // Another transaction is followed already; this one shows after it.
            Some(_) => {}
            // Ended before it was seen (or reported already).
            None if self.ended.contains(&job.path) => {}
            None => {
                if !job.is_over() {
                    self.failure = None;
                }
                effects.push(Effect::JobStarted {
                    title: job.title().to_owned(),
                    packages: job.packages.clone(),
                });
                let mut job = job;
                job.total = match (job.kind, job.packages.len() as u32) {
                    (Kind::Upgrade, 0) => self.count,
                    (_, named) => named,
                };
                let (path, state) = (job.path.clone(), job.state);
                self.job = Some(job);
                if state.is_final() {
                    effects.extend(self.transaction_finished(&path, state, ""));
                } else {
                    effects.extend(self.progress());
                }
            }
        }
        effects
    }

    /// The followed job's progress, as an effect.
    fn progress(&self) -> Option<Effect> {
        let job = self.job.as_ref()?;
        Some(Effect::JobProgress {
            title: job.title().to_owned(),
            percent: job.percentage,
            progress: job.progress(),
            activity: job.activity(),
        })
    }

    /// The followed job at `path`, if it is.
    fn job_at(&mut self, path: &str) -> Option<&mut Job> {
        self.job.as_mut().filter(|j| j.path == path)
    }

    /// A transaction sent `Progress(package, activity, done, total)`.
    pub fn package_progress(
        &mut self,
        path: &str,
        package: &str,
        activity: Activity,
        done: u64,
        total: u64,
    ) -> Vec<Effect> {
        let Some(job) = self.job_at(path) else {
            return Vec::new();
        };
        let before = job.activity();
        job.package_progress(package, activity, done, total);
        if job.activity() == before {
            return Vec::new();
        }
        self.progress().into_iter().collect()
    }

    /// A transaction sent `PackageDone(name, version)`.
    pub fn package_done(&mut self, path: &str, name: &str, version: &str) -> Vec<Effect> {
        let Some(job) = self.job_at(path) else {
            return Vec::new();
        };
        job.package_done(name, version);
        self.progress().into_iter().collect()
    }

    /// A transaction sent `Notice(…, message)`.
    pub fn notice(&mut self, path: &str, message: &str) {
        if let Some(job) = self.job_at(path) {
            job.notices.push(message.to_owned());
        }
    }

    /// A transaction sent `Finished(state, error_name, message)`.
    pub fn transaction_finished(&mut self, path: &str, state: State, message: &str) -> Vec<Effect> {
        if self.checking.as_deref() == Some(path) {
            self.checking = None;
            return Vec::new();
        }
        match self.job.take_if(|j| j.path == path) {
            Some(job) => self.end(job, state, message),
            None => Vec::new(),
        }
    }

    /// The followed `job` ended in `state` with spkd's `message`: the result for the user (if
    /// they asked for it and something is to tell), then the end of its progress.
    fn end(&mut self, job: Job, state: State, message: &str) -> Vec<Effect> {
        let message = if message.is_empty() {
            job.error_message.as_str()
        } else {
            message
        };
        let error = job.error(state, message);
        if state == State::Failed {
            self.failure = error.clone();
        }
        let mut effects = Vec::new();
        if self.asked.remove(&job.path) {
            effects.extend(job.report(state, message).map(Effect::Report));
        } else if self.requests_pending > 0 {
            // Maybe the answer to the user's request, still on its way.
            self.unclaimed
                .push((job.clone(), state, message.to_owned()));
        }
        self.preparing.remove(&job.path);
        self.remember_end(job.path);
        effects.push(Effect::JobEnded { error });
        effects
    }

    /// spkd's `PreparedUpdate` (read at start, after the history, and after each of its
    /// changes). Its date is remembered for the notice after the boot, and forgotten when it
    /// is gone (installed and told, or cancelled).
    pub fn set_prepared(&mut self, row: PreparedRow) {
        self.prepared = Prepared::from_row(row);
        self.remembered.prepared_at = self.prepared.as_ref().map(|p| p.prepared_at);
    }

    /// spkd's latest history (`GetHistory`, newest first): the result of a boot that
    /// installed a prepared update, unless the user was told already.
    pub fn history_read(&mut self, history: &[HistoryRow]) -> Vec<Effect> {
        let Some(boot) = BootUpdate::newest(history) else {
            return Vec::new();
        };
        if self
            .remembered
            .announced_boot_update
            .is_some_and(|told| told >= boot.id)
        {
            return Vec::new();
        }
        let report = boot.report(self.remembered.prepared_at);
        self.remembered.announced_boot_update = Some(boot.id);
        vec![Effect::Inform(report)]
    }

    fn remember_end(&mut self, path: String) {
        if self.ended.len() == ENDED_MEMORY {
            self.ended.pop_front();
        }
        self.ended.push_back(path);
    }

    /// The tray item as it should look now.
    pub fn view(&self) -> View {
        let idle = self.job.is_none();
        let installs_at_restart = self.prepared.as_ref().filter(|p| p.will_install());
        // Nothing to install beyond what the next boot installs.
        let all_prepared = installs_at_restart
            .is_some_and(|p| !self.updates.is_empty() && self.updates.iter().all(|u| p.covers(u)));
        let mut view = View {
            status: ItemStatus::Passive,
            icon: "update-none",
            tooltip_title: String::new(),
            tooltip_body: String::new(),
            can_install: self.daemon_present && idle && self.count > 0 && !all_prepared,
            install_first: self.install_first(),
            can_restart: self.daemon_present && installs_at_restart.is_some(),
            can_cancel_prepared: self.daemon_present && idle && self.prepared.is_some(),
            can_check: idle && self.checking.is_none(),
        };
        if !self.daemon_present {
            view.tooltip_title = "Update service not running".to_owned();
            view.tooltip_body = "spkd is not on the system bus; updates cannot be checked.".into();
            return view;
        }
        if let Some(job) = &self.job {
            view.status = ItemStatus::Active;
            view.icon = "system-software-update";
            view.tooltip_title = format!("{} — {}", job.title(), job.progress());
            view.tooltip_body = job.activity();
            return view;
        }
        if let Some(failure) = &self.failure {
            view.status = ItemStatus::NeedsAttention;
            view.icon = "update-high";
            view.tooltip_title = "Updates could not be installed".to_owned();
            view.tooltip_body = failure.clone();
            return view;
        }
        if let Some(prepared) = installs_at_restart {
            view.status = ItemStatus::Active;
            view.icon = "system-reboot";
            view.tooltip_title = "Updates will be installed at restart".to_owned();
            view.tooltip_body = prepared.describe();
            let more = self.updates.iter().filter(|u| !prepared.covers(u)).count() as u32;
            if more > 0 {
                view.tooltip_body.push('\n');
                view.tooltip_body.push_str(&match more {
                    1 => "1 more update available".to_owned(),
                    n => format!("{n} more updates available"),
                });
            }
            return view;
        }
        if self.count > 0 {
            view.status = ItemStatus::Active;
            view.icon = "update-low";
            view.tooltip_title = count_phrase(self.count);
            view.tooltip_body = self
                .updates
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return view;
        }
        view.tooltip_title = "System is up to date".to_owned();
        view.tooltip_body = if self.checking.is_some() {
            "Checking for updates…".to_owned()
        } else {
            "No updates available".to_owned()
        };
        view
    }
}

/// "1 update available", "3 updates available".
pub fn count_phrase(count: u32) -> String {
    if count == 1 {
        "1 update available".to_owned()
    } else {
        format!("{count} updates available")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, to: &str) -> Update {
        Update {
            name: name.into(),
            installed_version: "1.0-1".into(),
            available_version: to.into(),
            system: false,
        }
    }

    fn system_update(name: &str, to: &str) -> Update {
        Update {
            system: true,
            ..update(name, to)
        }
    }

    fn prepared(changes: &[(&str, &str, &str)], stale: &str) -> PreparedRow {
        PreparedRow {
            prepared_at: 1_796_204_554,
            changes: changes
                .iter()
                .map(|(name, from, to)| spk_dbus::HistoryChange {
                    name: (*name).into(),
                    from: (*from).into(),
                    to: (*to).into(),
                })
                .collect(),
            installed_size: 4096,
            stale: stale.into(),
        }
    }

    fn boot_update(id: u64, state: &str, error: &str) -> HistoryRow {
        HistoryRow {
            id,
            started: 1_796_300_000,
            finished: 1_796_300_010,
            uid: 0,
            kind: Kind::OfflineUpdate,
            packages: Vec::new(),
            state: state.parse().unwrap(),
            error: error.into(),
            changes: vec![spk_dbus::HistoryChange {
                name: "kate".into(),
                from: "1.0-1".into(),
                to: "2.0-1".into(),
            }],
        }
    }

    fn job(path: &str, kind: &str, state: &str, percentage: u32) -> Job {
        let mut job = Job::new(path, kind.parse().unwrap(), state.parse().unwrap());
        job.packages = vec!["kate".into()];
        job.percentage = percentage;
        job
    }

    /// The reports among `effects`.
    fn reports(effects: &[Effect]) -> Vec<Report> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Report(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// A model following an upgrade of everything (3 updates) the user started here.
    fn upgrading(path: &str) -> Model {
        let mut m = present();
        m.set_updates(
            3,
            vec![
                update("kate", "2"),
                update("mesa", "2"),
                update("plasma", "2"),
            ],
        );
        m.request_sent();
        m.request_answered(Some(path), InstallWhen::Now);
        let mut upgrade = job(path, "upgrade", "downloading", 10);
        upgrade.packages.clear();
        m.transaction_seen(upgrade);
        m
    }

    fn present() -> Model {
        let mut m = Model::default();
        m.daemon_appeared();
        m
    }

    #[test]
    fn without_spkd_the_item_is_passive_and_says_so() {
        let view = Model::default().view();
        assert_eq!(view.status, ItemStatus::Passive);
        assert_eq!(view.tooltip_title, "Update service not running");
        assert!(!view.can_install);
    }

    #[test]
    fn updates_make_the_item_active_with_the_count_and_names() {
        let mut m = present();
        m.set_updates(2, vec![update("plasma", "6.6"), update("kate", "2.0-1")]);
        let view = m.view();
        assert_eq!(view.status, ItemStatus::Active);
        assert_eq!(view.tooltip_title, "2 updates available");
        assert_eq!(view.tooltip_body, "kate, plasma");
        assert!(view.can_install);
    }

    #[test]
    fn the_end_of_an_upgrade_mentions_kept_configuration_files() {
        let mut m = upgrading("/t/1");
        m.package_done("/t/1", "kate", "2.0-1");
        let kept =
            "etc/kate.conf was changed locally and kept; the new version is etc/kate.conf.spknew";
        m.notice("/t/1", kept);
        m.notice("/t/other", "not this transaction's");
        let effects = m.transaction_finished("/t/1", State::Finished, "");
        let body = reports(&effects).pop().map(|r| r.body);
        assert_eq!(
            body.as_deref(),
            Some(format!("kate 2.0-1\n{kept}").as_str())
        );
    }

    #[test]
    fn no_updates_is_passive() {
        let mut m = present();
        assert_eq!(m.set_updates(0, vec![]), vec![]);
        assert_eq!(m.view().status, ItemStatus::Passive);
        assert_eq!(m.view().tooltip_title, "System is up to date");
    }

    #[test]
    fn the_same_updates_are_announced_once() {
        let mut m = present();
        let first = m.set_updates(1, vec![update("kate", "2.0-1")]);
        assert!(matches!(
            first.as_slice(),
            [Effect::Announce { count: 1, .. }]
        ));
        assert_eq!(m.set_updates(1, vec![update("kate", "2.0-1")]), vec![]);
    }

    #[test]
    fn an_update_known_only_by_name_is_not_announced_twice() {
        let mut m = present();
        assert_eq!(m.set_updates(1, vec![update("kate", "2.0-1")]).len(), 1);
        m.daemon_vanished();
        // spkd's signal read while its list was gone: names only.
        let by_name = Update {
            name: "kate".into(),
            installed_version: String::new(),
            available_version: String::new(),
            system: false,
        };
        assert_eq!(m.set_updates(1, vec![by_name.clone()]), vec![]);
        let other = Update {
            name: "plasma".into(),
            ..by_name
        };
        assert_eq!(m.set_updates(1, vec![other]).len(), 1);
    }

    #[test]
    fn a_new_package_or_build_is_announced_again() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        let more = m.set_updates(2, vec![update("kate", "2.0-1"), update("mesa", "25")]);
        assert!(matches!(
            more.as_slice(),
            [Effect::Announce { count: 2, .. }]
        ));
        // One of them installed: nothing new to tell.
        assert_eq!(m.set_updates(1, vec![update("mesa", "25")]), vec![]);
        let newer = m.set_updates(1, vec![update("mesa", "26")]);
        assert!(matches!(newer.as_slice(), [Effect::Announce { .. }]));
    }

    #[test]
    fn installed_updates_withdraw_the_notification() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        assert_eq!(m.set_updates(0, vec![]), vec![Effect::Withdraw]);
        // spkd forgot its refresh and finds the same build again: no news.
        assert_eq!(m.set_updates(1, vec![update("kate", "2.0-1")]), vec![]);
        let newer = m.set_updates(1, vec![update("kate", "3.0-1")]);
        assert!(matches!(newer.as_slice(), [Effect::Announce { .. }]));
    }

    #[test]
    fn a_restarted_spkd_with_the_same_updates_does_not_renotify() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        assert_eq!(m.daemon_vanished(), vec![]);
        assert_eq!(m.view().tooltip_title, "Update service not running");
        m.daemon_appeared();
        assert_eq!(m.set_updates(1, vec![update("kate", "2.0-1")]), vec![]);
        assert_eq!(m.view().status, ItemStatus::Active);
    }

    #[test]
    fn a_transaction_is_followed_from_start_to_end() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        let t = "/xyz/smech/Spk1/transaction/3";
        m.request_sent();
        assert_eq!(m.request_answered(Some(t), InstallWhen::Now), vec![]);
        let started = m.transaction_seen(job(t, "upgrade", "downloading", 0));
        assert!(matches!(
            started.as_slice(),
            [Effect::JobStarted { .. }, Effect::JobProgress { .. }]
        ));
        assert!(m.follows(t));
        m.transaction_seen(job(t, "upgrade", "installing", 42));
        let view = m.view();
        assert_eq!(view.tooltip_title, "Installing updates — 42 %, 0 of 1");
        assert!(!view.can_install);
        // A stale, lower percentage never shows.
        m.transaction_seen(job(t, "upgrade", "installing", 40));
        assert_eq!(m.job().map(|j| j.percentage), Some(42));
        m.package_done(t, "kate", "2.0-1");
        assert_eq!(m.view().tooltip_title, "Installing updates — 42 %, 1 of 1");
        let ended = m.transaction_finished(t, State::Finished, "");
        assert_eq!(
            ended,
            vec![
                Effect::Report(Report {
                    summary: "Updates installed".into(),
                    body: "kate 2.0-1".into(),
                }),
                Effect::JobEnded { error: None }
            ]
        );
        assert!(m.job().is_none());
    }

    #[test]
    fn the_tooltip_shows_the_overall_progress_and_what_is_downloaded() {
        let t = "/t/1";
        let mut m = upgrading(t);
        assert_eq!(m.view().tooltip_title, "Installing updates — 10 %, 0 of 3");
        m.package_progress(t, "kate", Activity::Downloading, 10, 100);
        let effects = m.package_progress(t, "mesa", Activity::Downloading, 5, 100);
        assert!(
            matches!(effects.as_slice(), [Effect::JobProgress { activity, .. }] if activity == "Downloading kate, mesa"),
            "{effects:?}"
        );
        // Signals of the two downloads alternate: the names keep their order, and nothing is
        // re-sent when only the order could have changed.
        assert!(
            m.package_progress(t, "kate", Activity::Downloading, 20, 100)
                .is_empty()
        );
        assert_eq!(m.view().tooltip_body, "Downloading kate, mesa");
        // CurrentPackage names the last package started; the tooltip names both downloads.
        let mut later = job(t, "upgrade", "downloading", 42);
        later.packages.clear();
        later.current_package = "mesa".into();
        m.transaction_seen(later);
        m.package_progress(t, "kate", Activity::Downloading, 100, 100);
        m.package_done(t, "kate", "2");
        m.package_done(t, "plasma", "2");
        let view = m.view();
        assert_eq!(view.tooltip_title, "Installing updates — 42 %, 2 of 3");
        assert_eq!(view.tooltip_body, "Downloading mesa");
    }

    #[test]
    fn the_tooltip_follows_the_newer_stages_and_skips_waiting_ones() {
        let t = "/t/1";
        let mut m = upgrading(t);
        // Waiting packages are not being worked on; a cached one is read, not downloaded.
        m.package_progress(t, "kate", Activity::Waiting, 0, 100);
        m.package_progress(t, "mesa", Activity::Cached, 5, 100);
        assert_eq!(m.view().tooltip_body, "Reading cached mesa");
        // Unpacking shows with all its bytes in; unpacked and done packages are not in flight.
        m.package_progress(t, "mesa", Activity::Unpacking, 100, 100);
        assert_eq!(m.view().tooltip_body, "Unpacking mesa");
        m.package_progress(t, "mesa", Activity::Unpacked, 100, 100);
        m.package_progress(t, "kate", Activity::Installing, 0, 1);
        assert_eq!(m.view().tooltip_body, "Installing kate");
        m.package_progress(t, "kate", Activity::Done, 1, 1);
        assert!(
            !m.view().tooltip_body.contains("kate"),
            "{}",
            m.view().tooltip_body
        );
    }

    #[test]
    fn a_cancelled_update_says_what_was_and_was_not_changed() {
        let mut m = upgrading("/t/1");
        let ended = m.transaction_finished("/t/1", State::Cancelled, "cancelled");
        assert_eq!(
            reports(&ended),
            vec![Report {
                summary: "Update cancelled".into(),
                body: "Nothing was changed.".into()
            }]
        );
        let mut m = upgrading("/t/2");
        m.package_done("/t/2", "kate", "2");
        let ended = m.transaction_finished("/t/2", State::Cancelled, "");
        assert_eq!(
            reports(&ended),
            vec![Report {
                summary: "Update cancelled".into(),
                body: "Updated before the cancel: kate 2. 2 other packages were not changed."
                    .into()
            }]
        );
        assert!(matches!(
            ended.last(),
            Some(Effect::JobEnded { error: Some(e) }) if e == "Update cancelled"
        ));
    }

    #[test]
    fn a_cancelled_removal_or_installation_is_named_so() {
        for (kind, summary) in [
            ("remove", "Removal cancelled"),
            ("install", "Installation cancelled"),
        ] {
            let mut m = present();
            m.request_sent();
            m.request_answered(Some("/t/1"), InstallWhen::Now);
            m.transaction_seen(job("/t/1", kind, "installing", 10));
            let ended = m.transaction_finished("/t/1", State::Cancelled, "");
            let report = reports(&ended).pop().expect("a report");
            assert_eq!(report.summary, summary);
            assert_eq!(report.body, "Nothing was changed.");
        }
    }

    #[test]
    fn an_upgrade_that_changed_nothing_announces_nothing() {
        let mut m = upgrading("/t/1");
        let ended = m.transaction_finished("/t/1", State::Finished, "");
        assert_eq!(ended, vec![Effect::JobEnded { error: None }]);
    }

    #[test]
    fn an_upgrade_started_elsewhere_shows_progress_but_no_result() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        // root runs `spkctl upgrade` in a terminal.
        let started = m.transaction_seen(job("/t/1", "upgrade", "downloading", 0));
        assert!(matches!(
            started.as_slice(),
            [Effect::JobStarted { .. }, Effect::JobProgress { .. }]
        ));
        m.package_done("/t/1", "kate", "2.0-1");
        let ended = m.transaction_finished("/t/1", State::Finished, "");
        assert_eq!(ended, vec![Effect::JobEnded { error: None }]);
    }

    #[test]
    fn a_result_before_the_answer_to_the_request_is_reported_with_it() {
        let mut m = present();
        m.request_sent();
        m.transaction_seen(job("/t/1", "upgrade", "installing", 50));
        m.package_done("/t/1", "kate", "2.0-1");
        let ended = m.transaction_finished("/t/1", State::Finished, "");
        assert_eq!(ended, vec![Effect::JobEnded { error: None }]);
        let answered = m.request_answered(Some("/t/1"), InstallWhen::Now);
        assert_eq!(reports(&answered).len(), 1, "{answered:?}");
        assert_eq!(reports(&answered)[0].summary, "Updates installed");
    }

    #[test]
    fn a_cancel_from_the_job_view_cancels_the_followed_transaction() {
        let mut m = present();
        assert_eq!(m.cancel_requested(), None);
        m.transaction_seen(job("/t/1", "upgrade", "downloading", 5));
        assert_eq!(m.cancel_requested().as_deref(), Some("/t/1"));
        // The user asked for the cancel: they hear how it ended.
        let ended = m.transaction_finished("/t/1", State::Cancelled, "");
        assert_eq!(reports(&ended)[0].summary, "Update cancelled");
        assert_eq!(m.cancel_requested(), None);
    }

    #[test]
    fn a_failed_transaction_needs_attention_until_the_next_starts() {
        let mut m = present();
        m.transaction_seen(job("/t/1", "upgrade", "downloading", 5));
        m.transaction_finished("/t/1", State::Failed, "sha256 mismatch for kate");
        let view = m.view();
        assert_eq!(view.status, ItemStatus::NeedsAttention);
        assert_eq!(view.tooltip_body, "sha256 mismatch for kate");
        m.transaction_seen(job("/t/2", "upgrade", "queued", 0));
        assert_eq!(m.view().status, ItemStatus::Active);
    }

    #[test]
    fn refreshes_are_not_jobs() {
        let mut m = present();
        assert_eq!(
            m.transaction_seen(job("/t/1", "refresh", "resolving", 0)),
            vec![]
        );
        assert!(!m.view().can_check);
        assert_eq!(m.view().tooltip_body, "Checking for updates…");
        m.transaction_finished("/t/1", State::Finished, "");
        assert!(m.view().can_check);
    }

    #[test]
    fn a_transaction_that_ended_before_it_was_seen_is_reported_once() {
        let mut m = present();
        let mut failed = job("/t/7", "upgrade", "failed", 30);
        failed.error_message = "no space left".into();
        let effects = m.transaction_seen(failed.clone());
        assert!(matches!(
            effects.as_slice(),
            [Effect::JobStarted { .. }, Effect::JobEnded { error: Some(e) }] if e == "no space left"
        ));
        assert!(m.follows("/t/7"));
        assert_eq!(m.transaction_seen(failed), vec![]);
        assert_eq!(
            m.transaction_finished("/t/7", State::Failed, "no space left"),
            vec![]
        );
    }

    #[test]
    fn spkd_stopping_ends_the_followed_job() {
        let mut m = present();
        m.transaction_seen(job("/t/1", "upgrade", "installing", 50));
        let effects = m.daemon_vanished();
        assert!(matches!(
            effects.as_slice(),
            [Effect::JobEnded { error: Some(_) }]
        ));
    }
    #[test]
    fn a_system_update_offers_the_install_at_restart_first() {
        let mut m = present();
        let userland = m.set_updates(1, vec![update("kate", "2.0-1")]);
        assert!(matches!(
            userland.as_slice(),
            [Effect::Announce {
                first: InstallWhen::Now,
                ..
            }]
        ));
        assert_eq!(m.view().install_first, InstallWhen::Now);
        let system = m.set_updates(
            2,
            vec![update("kate", "2.0-1"), system_update("mesa", "25")],
        );
        assert!(matches!(
            system.as_slice(),
            [Effect::Announce {
                first: InstallWhen::AtRestart,
                ..
            }]
        ));
        let view = m.view();
        assert_eq!(view.install_first, InstallWhen::AtRestart);
        assert!(view.can_install && !view.can_restart && !view.can_cancel_prepared);
    }

    #[test]
    fn the_setting_overrides_what_the_packages_suggest() {
        let mut m = Model::new(DefaultInstall::Now, Remembered::default());
        m.daemon_appeared();
        m.set_updates(1, vec![system_update("mesa", "25")]);
        assert_eq!(m.view().install_first, InstallWhen::Now);
        let mut m = Model::new(DefaultInstall::AtRestart, Remembered::default());
        m.daemon_appeared();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        assert_eq!(m.view().install_first, InstallWhen::AtRestart);
    }

    #[test]
    fn a_prepared_update_waits_for_the_restart() {
        let mut m = present();
        m.set_updates(1, vec![system_update("kate", "2.0-1")]);
        m.set_prepared(prepared(&[("kate", "1.0-1", "2.0-1")], ""));
        let view = m.view();
        assert_eq!(view.status, ItemStatus::Active);
        assert_eq!(view.icon, "system-reboot");
        assert_eq!(view.tooltip_title, "Updates will be installed at restart");
        assert_eq!(view.tooltip_body, "kate 1.0-1 → 2.0-1");
        assert!(view.can_restart && view.can_cancel_prepared);
        // Everything pending is prepared: nothing else to install.
        assert!(!view.can_install);
        assert_eq!(m.remembered().prepared_at, Some(1_796_204_554));

        // A newer build since: it can be installed (or prepared) besides.
        m.set_updates(
            2,
            vec![system_update("kate", "2.0-1"), update("okular", "2")],
        );
        let view = m.view();
        assert!(view.can_install);
        assert_eq!(
            view.tooltip_body,
            "kate 1.0-1 → 2.0-1\n1 more update available"
        );

        // Cancelled: the updates are pending again.
        m.set_prepared(PreparedRow::default());
        let view = m.view();
        assert_eq!(view.tooltip_title, "2 updates available");
        assert!(!view.can_restart && !view.can_cancel_prepared);
    }

    #[test]
    fn a_stale_prepared_update_offers_no_restart_but_can_be_cancelled() {
        let mut m = present();
        m.set_updates(1, vec![update("kate", "2.0-1")]);
        m.set_prepared(prepared(&[("kate", "1.0-1", "2.0-1")], "okular changed"));
        let view = m.view();
        assert_eq!(view.tooltip_title, "1 update available");
        assert!(!view.can_restart && view.can_cancel_prepared && view.can_install);
    }

    #[test]
    fn preparing_an_update_is_worded_as_such() {
        let mut m = present();
        m.set_updates(1, vec![system_update("kate", "2.0-1")]);
        m.request_sent();
        m.request_answered(Some("/t/1"), InstallWhen::AtRestart);
        let started = m.transaction_seen(job("/t/1", "upgrade", "downloading", 10));
        assert!(
            matches!(started.as_slice(), [Effect::JobStarted { title, .. }, ..] if title == "Preparing updates for restart"),
            "{started:?}"
        );
        let ended = m.transaction_finished("/t/1", State::Finished, "");
        assert_eq!(reports(&ended)[0].summary, "Updates ready for restart");
        // The same when spkd's answer comes after the end.
        m.request_sent();
        m.transaction_seen(job("/t/2", "upgrade", "downloading", 10));
        m.transaction_finished("/t/2", State::Failed, "no space left");
        let answered = m.request_answered(Some("/t/2"), InstallWhen::AtRestart);
        assert_eq!(
            reports(&answered),
            vec![Report {
                summary: "Updates could not be prepared".into(),
                body: "no space left".into(),
            }]
        );
    }

    #[test]
    fn the_update_installed_at_restart_is_told_once() {
        let mut m = present();
        let history = [boot_update(4, "finished", "")];
        assert_eq!(
            m.history_read(&history),
            vec![Effect::Inform(Report {
                summary: "Updates installed at restart".into(),
                body: "kate 2.0-1".into(),
            })]
        );
        assert_eq!(m.remembered().announced_boot_update, Some(4));
        assert_eq!(m.history_read(&history), vec![]);
        // The next login remembers it.
        let mut next = Model::new(DefaultInstall::Auto, m.remembered().clone());
        next.daemon_appeared();
        assert_eq!(next.history_read(&history), vec![]);
    }

    #[test]
    fn a_failed_boot_update_says_when_it_was_prepared() {
        let remembered = Remembered {
            announced_boot_update: Some(2),
            prepared_at: Some(1_796_204_554),
        };
        let mut m = Model::new(DefaultInstall::Auto, remembered);
        m.daemon_appeared();
        let effects = m.history_read(&[boot_update(3, "failed", "okular changed")]);
        assert_eq!(
            effects,
            vec![Effect::Inform(Report {
                summary: "Updates not installed at restart".into(),
                body: "The updates prepared on 2026-12-02 09:42 UTC could not be installed: \
                       okular changed\nInstalled before the failure: kate 2.0-1.\n\
                       Transaction 3 in `spkctl history`."
                    .into(),
            })]
        );
        // Read next: spkd has no prepared update any more, and its date is forgotten.
        m.set_prepared(PreparedRow::default());
        assert_eq!(m.remembered().prepared_at, None);
    }
}
