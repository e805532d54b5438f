//! One spkd transaction as the notifier follows it, and its wording: the title, the overall
//! progress ("42 %, 3 of 7"), what happens now ("Downloading kate, mesa") and the result
//! notice ("Updates installed", "Update cancelled" with what was and was not changed), and for
//! an update prepared for the next restart ("Preparing updates", "Updates ready for restart").
//!
//! Nothing here does I/O; [`crate::model`] decides when the words are shown.

use spk_dbus::{Activity, Kind, State};

/// A transaction of spkd, as last read from its properties and signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Object path `/xyz/smech/Spk1/transaction/N`.
    pub path: String,
    pub kind: Kind,
    /// `Packages`: the names asked for (empty for "upgrade everything").
    pub packages: Vec<String>,
    pub state: State,
    /// `Percentage` of the whole transaction.
    pub percentage: u32,
    /// `CurrentPackage`: the last package spkd started on.
    pub current_package: String,
    /// `ErrorMessage` (set when it failed).
    pub error_message: String,
    /// How many packages it changes, as far as the notifier knows: `Packages`, or for an
    /// upgrade of everything the updates pending when it started (0 = unknown).
    pub total: u32,
    /// `PackageDone(name, version)` so far: "kate 2.0-1".
    pub done: Vec<String>,
    /// Packages with a `Progress` signal and no end yet, in the order they started.
    pub in_flight: Vec<(String, Activity)>,
    /// `Notice` messages so far (a changed configuration file kept beside the new one…).
    pub notices: Vec<String>,
    /// It prepares the update for the next boot (asked here with option `offline`) instead of
    /// installing it.
    pub prepares: bool,
}

/// A result notice: what the user is told when a transaction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub summary: String,
    pub body: String,
}

impl Job {
    /// A job at `path` with nothing known but its kind and state.
    pub fn new(path: &str, kind: Kind, state: State) -> Job {
        Job {
            path: path.to_owned(),
            kind,
            packages: Vec::new(),
            state,
            percentage: 0,
            current_package: String::new(),
            error_message: String::new(),
            total: 0,
            done: Vec::new(),
            in_flight: Vec::new(),
            notices: Vec::new(),
            prepares: false,
        }
    }

    /// Whether spkd has finished with this transaction.
    pub fn is_over(&self) -> bool {
        self.state.is_final()
    }

    /// "Installing updates", "Installing packages", "Removing packages".
    pub fn title(&self) -> &'static str {
        if self.prepares {
            return "Preparing updates for restart";
        }
        match self.kind {
            Kind::Upgrade | Kind::OfflineUpdate => "Installing updates",
            Kind::Install => "Installing packages",
            Kind::Remove => "Removing packages",
            Kind::Refresh => "Checking for updates",
            Kind::Rollback => "Rolling back packages",
        }
    }

    /// Packages done of those it changes: "3 of 7" ("3 done" while the total is unknown, empty
    /// before the first).
    pub fn tally(&self) -> String {
        let done = self.done.len() as u32;
        match (done, self.total.max(done)) {
            (0, 0) => String::new(),
            (done, 0) => format!("{done} done"),
            (done, total) => format!("{done} of {total}"),
        }
    }

    /// The overall progress: "42 %, 3 of 7" (or "42 %").
    pub fn progress(&self) -> String {
        let tally = self.tally();
        if tally.is_empty() {
            format!("{} %", self.percentage)
        } else {
            format!("{} %, {tally}", self.percentage)
        }
    }

    /// A `Progress(package, activity, done, total)` signal: the package is being worked on
    /// while it streams, unpacks, installs or is removed; waiting, staged (`unpacked`) and done
    /// packages are not in flight.
    pub fn package_progress(&mut self, package: &str, activity: Activity, done: u64, total: u64) {
        let working = match activity {
            Activity::Waiting | Activity::Unpacked | Activity::Done => false,
            Activity::Unpacking => true,
            Activity::Downloading
            | Activity::Cached
            | Activity::Installing
            | Activity::Removing => total == 0 || done < total,
        };
        // Updated where it stands: first-seen order, so that two downloads do not swap
        // places (and re-send the notice) with every signal.
        let at = self.in_flight.iter().position(|(name, _)| name == package);
        match (at, working) {
            (Some(i), true) => self.in_flight[i].1 = activity,
            (Some(i), false) => {
                self.in_flight.remove(i);
            }
            (None, true) => self.in_flight.push((package.to_owned(), activity)),
            (None, false) => {}
        }
    }

    /// A `PackageDone(name, version)` signal.
    pub fn package_done(&mut self, name: &str, version: &str) {
        self.in_flight.retain(|(n, _)| n != name);
        self.done.push(format!("{name} {version}"));
    }

    /// What is happening now, e.g. "Downloading kate, mesa", "Waiting for another transaction".
    pub fn activity(&self) -> String {
        if self.state == State::Queued {
            return "Waiting for another transaction".to_owned();
        }
        if self.is_over() {
            return String::new();
        }
        // The packages being downloaded first (several at once), else the one being installed.
        for wanted in [
            Activity::Downloading,
            Activity::Cached,
            Activity::Unpacking,
            Activity::Installing,
            Activity::Removing,
        ] {
            let names: Vec<&str> = self
                .in_flight
                .iter()
                .filter(|(_, a)| *a == wanted)
                .map(|(n, _)| n.as_str())
                .collect();
            if !names.is_empty() {
                return format!("{} {}", verb(wanted), names.join(", "));
            }
        }
        let what = if self.current_package.is_empty() {
            self.packages.join(", ")
        } else {
            self.current_package.clone()
        };
        let verb = match self.state {
            State::Resolving => "Preparing",
            State::Downloading => "Downloading",
            State::Installing if self.kind == Kind::Remove => "Removing",
            _ => "Installing",
        };
        if what.is_empty() {
            verb.to_owned()
        } else {
            format!("{verb} {what}")
        }
    }

    /// The error of this job ending in `state` with spkd's `message`: `None` on success.
    pub fn error(&self, state: State, message: &str) -> Option<String> {
        match state {
            State::Finished => None,
            State::Cancelled => Some(self.cancelled_summary().to_owned()),
            _ if message.is_empty() => Some(format!("The transaction {state}")),
            _ => Some(message.to_owned()),
        }
    }

    /// The result notice of this job ending in `state` with spkd's `message`; `None` when it
    /// succeeded without changing a package (nothing to tell).
    pub fn report(&self, state: State, message: &str) -> Option<Report> {
        if self.prepares {
            return Some(self.prepare_report(state, message));
        }
        let done = self.done.join(", ");
        let mut body = match state {
            State::Finished if self.done.is_empty() => return None,
            State::Finished => self.done.join("\n"),
            State::Cancelled if self.done.is_empty() => "Nothing was changed.".to_owned(),
            State::Cancelled => {
                let left = self.total.saturating_sub(self.done.len() as u32);
                let mut body = format!("{} before the cancel: {done}.", self.past_verb());
                match left {
                    0 => {}
                    1 => body.push_str(" 1 other package was not changed."),
                    n => body.push_str(&format!(" {n} other packages were not changed.")),
                }
                body
            }
            _ => {
                let mut body = self.error(state, message).unwrap_or_default();
                if !self.done.is_empty() {
                    body.push_str(&format!(
                        "\n{} before the failure: {done}.",
                        self.past_verb()
                    ));
                }
                // The number the terminal (`spkctl history`, spkd's log) knows it by.
                if let Some(id) = spk_dbus::transaction_id(&self.path) {
                    body.push_str(&format!("\nTransaction {id} in `spkctl history`."));
                }
                body
            }
        };
        // What the admin has to look at: kept configuration files and the like.
        for notice in &self.notices {
            body.push('\n');
            body.push_str(notice);
        }
        let summary = match (self.kind, state) {
            (_, State::Cancelled) => self.cancelled_summary(),
            (Kind::Upgrade | Kind::OfflineUpdate, State::Finished) => "Updates installed",
            (Kind::Install, State::Finished) => "Packages installed",
            (Kind::Remove, State::Finished) => "Packages removed",
            (Kind::Rollback, State::Finished) => "Packages rolled back",
            (Kind::Refresh, State::Finished) => "Package lists updated",
            (Kind::Upgrade | Kind::OfflineUpdate, _) => "Updates could not be installed",
            (Kind::Remove, _) => "Packages could not be removed",
            (Kind::Rollback, _) => "Packages could not be rolled back",
            (Kind::Refresh, _) => "Could not check for updates",
            (Kind::Install, _) => "Packages could not be installed",
        };
        Some(Report {
            summary: summary.to_owned(),
            body,
        })
    }

    /// The result notice of preparing an update for the next restart (nothing installed).
    fn prepare_report(&self, state: State, message: &str) -> Report {
        match state {
            State::Finished => Report {
                summary: "Updates ready for restart".to_owned(),
                body: "They will be installed the next time the computer restarts, before the \
                       desktop starts."
                    .to_owned(),
            },
            State::Cancelled => Report {
                summary: "Update cancelled".to_owned(),
                body: "Nothing was changed.".to_owned(),
            },
            _ => Report {
                summary: "Updates could not be prepared".to_owned(),
                body: self.error(state, message).unwrap_or_default(),
            },
        }
    }

    /// "Update cancelled", "Installation cancelled", …
    fn cancelled_summary(&self) -> &'static str {
        match self.kind {
            Kind::Upgrade | Kind::OfflineUpdate => "Update cancelled",
            Kind::Install => "Installation cancelled",
            Kind::Remove => "Removal cancelled",
            Kind::Rollback => "Rollback cancelled",
            Kind::Refresh => "Check cancelled",
        }
    }

    /// "Updated", "Installed", "Removed", "Rolled back".
    fn past_verb(&self) -> &'static str {
        match self.kind {
            Kind::Upgrade | Kind::OfflineUpdate => "Updated",
            Kind::Install | Kind::Refresh => "Installed",
            Kind::Remove => "Removed",
            Kind::Rollback => "Rolled back",
        }
    }
}

fn verb(activity: Activity) -> &'static str {
    match activity {
        Activity::Downloading => "Downloading",
        Activity::Cached => "Reading cached",
        Activity::Unpacking => "Unpacking",
        Activity::Installing => "Installing",
        Activity::Removing => "Removing",
        // Never in flight (see `package_progress`).
        Activity::Waiting => "Waiting for",
        Activity::Unpacked => "Unpacked",
        Activity::Done => "Done with",
    }
}
