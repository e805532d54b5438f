//! What the notifier knows about spkd, and what it should show: a state machine with no I/O.
//!
//! [`Model`] is fed facts read from the system bus (spkd came or went, the list of upgradable
//! packages, a transaction's properties and its end) and answers with [`Effect`]s for the
//! notification and job-progress adapters; [`Model::view`] renders the tray item. It decides
//! once, here, when a notification is due: only for a set of updates not announced before, so
//! neither a repeated signal nor a reconnect to a restarted spkd notifies twice.

use std::collections::{BTreeSet, VecDeque};

use spk_dbus::{Kind, State};

/// How many ended transactions the model remembers (to report each end once).
const ENDED_MEMORY: usize = 32;

/// One package that has a newer build in a repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Update {
    pub name: String,
    pub installed_version: String,
    pub available_version: String,
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

/// A transaction of spkd, as last read from its properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Object path `/xyz/smech/Spk1/transaction/N`.
    pub path: String,
    pub kind: Kind,
    pub packages: Vec<String>,
    pub state: State,
    pub percentage: u32,
    pub current_package: String,
    /// `ErrorMessage` (set when it failed).
    pub error_message: String,
    /// `PackageDone(name, version)` so far: "kate 2.0-1".
    pub done: Vec<String>,
    /// `Notice` messages so far (a changed configuration file kept beside the new one…).
    pub notices: Vec<String>,
}

impl Job {
    /// Whether spkd has finished with this transaction.
    pub fn is_over(&self) -> bool {
        self.state.is_final()
    }

    /// "Installing updates", "Installing packages", "Removing packages".
    pub fn title(&self) -> &'static str {
        match self.kind {
            Kind::Upgrade => "Installing updates",
            Kind::Install => "Installing packages",
            Kind::Remove => "Removing packages",
            Kind::Refresh => "Checking for updates",
            Kind::Rollback => "Rolling back packages",
            Kind::OfflineUpdate => "Installing updates",
        }
    }

    /// The [`Effect::JobEnded`] for this job ending in `state` (`finished` = success) with
    /// spkd's `message`.
    fn ended(&self, state: State, message: &str) -> Effect {
        let error = match state {
            State::Finished => None,
            State::Cancelled => Some("Cancelled".to_owned()),
            _ if message.is_empty() => Some(format!("The transaction {state}")),
            _ => Some(message.to_owned()),
        };
        let summary = match (self.kind, &error, state) {
            (_, _, State::Cancelled) => "Cancelled",
            (Kind::Upgrade, None, _) => "Updates installed",
            (Kind::Install, None, _) => "Packages installed",
            (Kind::Remove, None, _) => "Packages removed",
            (Kind::Upgrade, Some(_), _) => "Updates could not be installed",
            (Kind::Remove, Some(_), _) => "Packages could not be removed",
            (Kind::Rollback, None, _) => "Packages rolled back",
            (Kind::Rollback, Some(_), _) => "Packages could not be rolled back",
            _ => "Packages could not be installed",
        };
        let mut body = match &error {
            Some(e) => e.clone(),
            None if !self.done.is_empty() => self.done.join("\n"),
            None if self.packages.is_empty() => "The system is up to date.".to_owned(),
            None => self.packages.join(", "),
        };
        // What the admin has to look at: kept configuration files and the like.
        for notice in &self.notices {
            body.push('\n');
            body.push_str(notice);
        }
        Effect::JobEnded {
            summary: summary.to_owned(),
            body,
            error,
        }
    }

    /// What is happening now, e.g. "Downloading kate", "Waiting for another transaction".
    pub fn activity(&self) -> String {
        let what = if self.current_package.is_empty() {
            self.packages.join(", ")
        } else {
            self.current_package.clone()
        };
        let verb = match self.state {
            State::Queued => return "Waiting for another transaction".to_owned(),
            State::Resolving => "Preparing",
            State::Downloading => "Downloading",
            State::Installing if self.kind == Kind::Remove => "Removing",
            State::Installing => "Installing",
            State::Finished | State::Failed | State::Cancelled => return String::new(),
        };
        if what.is_empty() {
            verb.to_owned()
        } else {
            format!("{verb} {what}")
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
    /// "Install updates" makes sense now.
    pub can_install: bool,
    /// "Check now" makes sense now.
    pub can_check: bool,
}

/// Something the notifier must do outside the tray item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the user about updates they have not been told about.
    Announce { count: u32, updates: Vec<Update> },
    /// The announced updates are gone (installed, or spkd has none): close the notification.
    Withdraw,
    /// A modifying transaction started: show its progress.
    JobStarted {
        title: String,
        packages: Vec<String>,
    },
    /// The followed transaction progressed.
    JobProgress { percent: u32, message: String },
    /// The followed transaction ended: `summary` and `body` say how; `error` is `None` on
    /// success.
    JobEnded {
        summary: String,
        body: String,
        error: Option<String>,
    },
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
    /// Progress is shown by a job view (KDE's JobViewServer), not in the tooltip.
    progress_elsewhere: bool,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
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
        let mut effects = Vec::new();
        if let Some(job) = self.job.take() {
            effects.push(job.ended(State::Failed, "The update service stopped"));
        }
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

    /// Whether a new modifying transaction could be followed now.
    pub fn is_following_job(&self) -> bool {
        self.job.is_some()
    }

    /// The progress of jobs is shown by a job view from now on (or, with `false`, again in the
    /// tooltip).
    pub fn set_progress_elsewhere(&mut self, elsewhere: bool) {
        self.progress_elsewhere = elsewhere;
    }

    /// The current properties of a transaction, from `GetAll` or a `PropertiesChanged`.
    pub fn transaction_seen(&mut self, job: Job) -> Vec<Effect> {
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
                // Percentage never goes down within a transaction; keep it so.
                let percentage = job.percentage.max(current.percentage);
                let done = std::mem::take(&mut current.done);
                *current = Job {
                    percentage,
                    done,
                    ..job
                };
                if current.is_over() {
                    let state = current.state;
                    let path = current.path.clone();
                    return self.transaction_finished(&path, state, "");
                }
                let after = (current.percentage, current.activity());
                if before != after {
                    effects.push(Effect::JobProgress {
                        percent: after.0,
                        message: after.1,
                    });
                }
            }
            // Another transaction is followed already; this one shows after it.
            Some(_) => {}
            // Ended before it was seen (or reported already).
            None if self.ended.contains(&job.path) => {}
            None if job.is_over() => {
                effects.push(Effect::JobStarted {
                    title: job.title().to_owned(),
                    packages: job.packages.clone(),
                });
                let (path, state) = (job.path.clone(), job.state);
                self.job = Some(job);
                effects.extend(self.transaction_finished(&path, state, ""));
            }
            None => {
                self.failure = None;
                effects.push(Effect::JobStarted {
                    title: job.title().to_owned(),
                    packages: job.packages.clone(),
                });
                effects.push(Effect::JobProgress {
                    percent: job.percentage,
                    message: job.activity(),
                });
                self.job = Some(job);
            }
        }
        effects
    }

    /// A transaction sent `PackageDone(name, version)`.
    pub fn package_done(&mut self, path: &str, name: &str, version: &str) {
        if let Some(job) = self.job.as_mut().filter(|j| j.path == path) {
            job.done.push(format!("{name} {version}"));
        }
    }

    /// A transaction sent `Notice(…, message)`.
    pub fn notice(&mut self, path: &str, message: &str) {
        if let Some(job) = self.job.as_mut().filter(|j| j.path == path) {
            job.notices.push(message.to_owned());
        }
    }

    /// A transaction sent `Finished(state, error_name, message)`.
    pub fn transaction_finished(&mut self, path: &str, state: State, message: &str) -> Vec<Effect> {
        if self.checking.as_deref() == Some(path) {
            self.checking = None;
            return Vec::new();
        }
        let Some(job) = self.job.take_if(|j| j.path == path) else {
            return Vec::new();
        };
        let message = if message.is_empty() {
            job.error_message.as_str()
        } else {
            message
        };
        let ended = job.ended(state, message);
        self.remember_end(job.path);
        if let Effect::JobEnded { error: Some(e), .. } = &ended
            && state == State::Failed
        {
            self.failure = Some(e.clone());
        }
        vec![ended]
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
        let mut view = View {
            status: ItemStatus::Passive,
            icon: "update-none",
            tooltip_title: String::new(),
            tooltip_body: String::new(),
            can_install: self.daemon_present && idle && self.count > 0,
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
            view.tooltip_title = if self.progress_elsewhere {
                format!("{}…", job.title())
            } else {
                format!("{}… {} %", job.title(), job.percentage)
            };
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
        }
    }

    fn job(path: &str, kind: &str, state: &str, percentage: u32) -> Job {
        Job {
            path: path.into(),
            kind: kind.parse().unwrap(),
            packages: vec!["kate".into()],
            state: state.parse().unwrap(),
            percentage,
            current_package: String::new(),
            error_message: String::new(),
            done: Vec::new(),
            notices: Vec::new(),
        }
    }

    fn present() -> Model {
        let mut m = Model::new();
        m.daemon_appeared();
        m
    }

    #[test]
    fn without_spkd_the_item_is_passive_and_says_so() {
        let view = Model::new().view();
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
        let mut m = present();
        m.transaction_seen(job("/t/1", "upgrade", "installing", 50));
        m.package_done("/t/1", "kate", "2.0-1");
        let kept =
            "etc/kate.conf was changed locally and kept; the new version is etc/kate.conf.spknew";
        m.notice("/t/1", kept);
        m.notice("/t/other", "not this transaction's");
        let effects = m.transaction_finished("/t/1", State::Finished, "");
        let body = effects.iter().find_map(|e| match e {
            Effect::JobEnded { body, .. } => Some(body.clone()),
            _ => None,
        });
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
        let started = m.transaction_seen(job(t, "upgrade", "downloading", 0));
        assert!(matches!(
            started.as_slice(),
            [Effect::JobStarted { .. }, Effect::JobProgress { .. }]
        ));
        assert!(m.follows(t));
        m.transaction_seen(job(t, "upgrade", "installing", 42));
        let view = m.view();
        assert_eq!(view.tooltip_title, "Installing updates… 42 %");
        assert!(!view.can_install);
        // A stale, lower percentage never shows.
        m.transaction_seen(job(t, "upgrade", "installing", 40));
        assert_eq!(m.job().map(|j| j.percentage), Some(42));
        m.package_done(t, "kate", "2.0-1");
        let ended = m.transaction_finished(t, State::Finished, "");
        assert_eq!(
            ended,
            vec![Effect::JobEnded {
                summary: "Updates installed".into(),
                body: "kate 2.0-1".into(),
                error: None
            }]
        );
        assert!(m.job().is_none());
    }

    #[test]
    fn with_a_job_view_the_tooltip_shows_no_percentage() {
        let mut m = present();
        m.set_progress_elsewhere(true);
        m.transaction_seen(job("/t/1", "upgrade", "installing", 42));
        assert_eq!(m.view().tooltip_title, "Installing updates…");
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
            [Effect::JobStarted { .. }, Effect::JobEnded { error: Some(e), .. }] if e == "no space left"
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
            [Effect::JobEnded { error: Some(_), .. }]
        ));
    }
}
