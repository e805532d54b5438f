//! Running a request to its end under the number reserved for it (its bus object, its history
//! id): waiting for the root, dispatching to install / upgrade, remove or rollback, and
//! recording the history (what is worth it: [`worth_recording`]); with what each of those does
//! around fetching and committing (its hooks, the cache).

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::change::Change;
use crate::db::{HistoryEntry, HistoryState, InstalledPackage};
use crate::engine::{Engine, now};
use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::notice::Notice;
use crate::planning::Planned;
use crate::progress::{Reporter, Stage, TxState};
use crate::request::{Action, Options, Outcome, RepoFailure, Request};

/// One running modifying transaction: its number, its progress and what it did so far.
pub(crate) struct Work<'a> {
    pub(crate) tx: u64,
    pub(crate) reporter: &'a Reporter,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) done: &'a mut Vec<Change>,
    pub(crate) notices: &'a mut Vec<Notice>,
}

impl Work<'_> {
    pub(crate) fn notice_all(&mut self, notices: Vec<Notice>) {
        for n in notices {
            tracing::info!(package = %n.package, path = %n.path, kind = n.kind.as_str(), "{}", n.message);
            self.reporter.notice(n.clone());
            self.notices.push(n);
        }
    }
}

impl Engine {
    /// Reserve the number of a transaction about to be created: N of its bus object
    /// `/xyz/smech/Spk1/transaction/N`, its history id, its span in the log. Persisted: never
    /// given twice, across restarts too.
    pub fn reserve_transaction(&self) -> Result<u64> {
        self.db.next_tx()
    }

    /// Run a request to its end as transaction `tx` ([`Engine::reserve_transaction`]).
    /// Modifying requests wait for the previous one first.
    pub async fn run(
        &self,
        tx: u64,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        // Every line the transaction logs carries its one number.
        let span = tracing::info_span!(
            "transaction",
            id = tx,
            action = req.action.as_str(),
            names = ?req.names
        );
        self.run_numbered(tx, req, reporter, cancel)
            .instrument(span)
            .await
    }

    async fn run_numbered(
        &self,
        tx: u64,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        self.validate(req)?;
        if req.action == Action::Refresh {
            reporter.state(TxState::Resolving);
            let updates = self.refresh(cancel).await?;
            return Ok(Outcome {
                updates,
                ..Outcome::default()
            });
        }
        let started = now();
        let mut done = Vec::new();
        let mut notices = Vec::new();
        let result = self
            .modify(tx, req, reporter, cancel, &mut done, &mut notices)
            .await
            .map(|mut o| {
                o.notices = notices.clone();
                o
            });
        match &result {
            Ok(o) => tracing::info!(changed = ?o.changed, "done"),
            Err(e) => tracing::warn!(error = %e.message(), "failed"),
        }
        if worth_recording(req, &result, &done) {
            self.record_history(tx, req, started, &result, done, notices);
        }
        result
    }

    /// The modifying part of [`Engine::run`]: read the repositories, wait for the root, then
    /// install, remove or roll back; `done` and `notices` collect what happened, also when it
    /// fails half-way.
    async fn modify(
        &self,
        tx: u64,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
        done: &mut Vec<Change>,
        notices: &mut Vec<Notice>,
    ) -> Result<Outcome> {
        // Install and upgrade read the repositories before they wait for the root: a slow
        // mirror then holds this transaction only, not every one queued behind it.
        let failures = if matches!(
            req.action,
            Action::Remove | Action::Rollback | Action::ApplyPrepared
        ) {
            Vec::new()
        } else {
            reporter.state(TxState::Resolving);
            self.refresh_repos(cancel).await?
        };
        let _turn = match self.modify.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                reporter.state(TxState::Queued);
                tokio::select! {
                    guard = self.modify.lock() => guard,
                    () = cancel.cancelled() => return Err(Error::Cancelled),
                }
            }
        };
        tracing::info!(uid = req.requester, "started");
        reporter.root_taken();
        reporter.state(TxState::Resolving);
        self.begin_transaction()?;
        let mut work = Work {
            tx,
            reporter,
            cancel,
            done,
            notices,
        };
        let result = match req.action {
            Action::Remove => self.remove(req, &mut work).await,
            Action::Rollback => self.rollback(req, &mut work).await,
            Action::ApplyPrepared => self.apply_prepared(&mut work).await,
            _ => self.install(req, failures, &mut work).await,
        };
        let clock = std::time::Instant::now();
        self.clear_staging();
        // Still holding the root: no other transaction writes the dump meanwhile.
        if !work.done.is_empty()
            && let Err(e) = self.db.write_dump()
        {
            tracing::warn!(error = %e, "could not write the plain-text dump");
        }
        tracing::debug!(
            ms = clock.elapsed().as_millis() as u64,
            "staging cleared, dump written"
        );
        result
    }

    /// A modifying transaction took the root: finish what an earlier one left (a panic), and
    /// make sure its staging area exists.
    fn begin_transaction(&self) -> Result<()> {
        if !self.db.journal::<crate::commit::Intent>()?.is_empty() {
            self.recover()?;
        }
        // Root's alone: no local user may look into (let alone plant anything in) a package
        // being unpacked.
        let staging = self.layout.root.join(&self.staging);
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging)
            .and_then(|()| {
                std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| Error::io(format!("creating {}", staging.display()), e))
    }

    fn record_history(
        &self,
        tx: u64,
        req: &Request,
        started: u64,
        result: &Result<Outcome>,
        changes: Vec<Change>,
        notices: Vec<Notice>,
    ) {
        let (state, error) = match result {
            Ok(_) => (HistoryState::Finished, String::new()),
            Err(Error::Cancelled) => (HistoryState::Cancelled, String::new()),
            Err(e) => (HistoryState::Failed, e.message()),
        };
        let entry = HistoryEntry {
            id: tx,
            started,
            finished: now(),
            uid: req.requester,
            action: req.action.as_str().to_owned(),
            names: req.names.clone(),
            state,
            error,
            changes,
            notices,
        };
        if let Err(e) = self.db.add_history(&entry) {
            tracing::warn!(error = %e, "could not record the transaction in the history");
        }
    }

    /// Install or upgrade, the repositories refreshed already (`failures` are those that
    /// could not be).
    async fn install(
        &self,
        req: &Request,
        failures: Vec<RepoFailure>,
        work: &mut Work<'_>,
    ) -> Result<Outcome> {
        self.tolerate(req, failures, work)?;
        let plan = self.plan(req)?;
        if req.action == Action::Upgrade && req.names.is_empty() {
            work.notice_all(self.held_back()?);
        }
        let held = self.held()?;
        for p in plan.iter().filter(|p| p.old.is_some()) {
            if held.contains(&p.available.entry.name) {
                work.notice_all(vec![Notice::held(&p.available.entry.name)]);
            }
        }
        self.apply_plan(plan, &req.options, work).await
    }

    /// Download (or take from the cache), verify, stage and commit `plan`, with its hooks.
    async fn apply_plan(
        &self,
        mut plan: Vec<Planned>,
        options: &Options,
        work: &mut Work<'_>,
    ) -> Result<Outcome> {
        let changed: Vec<Change> = plan.iter().map(|p| self.change_of(p)).collect();
        if options.dry_run || plan.is_empty() {
            return Ok(Outcome {
                changed: if options.dry_run { changed } else { Vec::new() },
                ..Outcome::default()
            });
        }
        self.check_space(&plan, &changed, options.download_only)?;
        // Largest first: the long streams start early and small ones fill in beside them.
        plan.sort_by_key(|p| std::cmp::Reverse(p.available.entry.size));
        let streams: Vec<(String, u64)> = plan
            .iter()
            .map(|p| (p.available.entry.name.clone(), p.available.entry.size))
            .collect();
        let commits = if options.download_only { 0 } else { plan.len() };
        work.reporter.plan(&streams, commits);
        for (name, size) in &streams {
            work.reporter.stage(name, Stage::Waiting, 0, *size);
        }
        work.reporter.state(TxState::Downloading);

        let staged = self
            .fetch_and_unpack_all(plan, work, !options.download_only)
            .await?;
        for s in &staged {
            let entry = &s.planned.available.entry;
            if !s.planned.available.is_unverified() {
                self.cache().remember(&entry.name, &entry.sha256)?;
            }
        }
        if options.offline {
            self.keep_prepared(staged, changed, work.tx)?;
            return Ok(Outcome::default());
        }
        if options.download_only {
            self.prune_cache(
                staged
                    .iter()
                    .map(|s| s.planned.available.entry.name.as_str()),
            );
            return Ok(Outcome::default());
        }
        work.reporter.state(TxState::Installing);
        let names: Vec<String> = staged
            .iter()
            .map(|s| s.planned.available.entry.name.clone())
            .collect();
        let outcome = self
            .commit_then_hooks(staged, &changed, options, work)
            .await;
        self.prune_cache(names.iter().map(String::as_str));
        outcome
    }

    async fn rollback(&self, req: &Request, work: &mut Work<'_>) -> Result<Outcome> {
        let (installs, removes) = self.rollback_plan(req)?;
        let mut outcome = self.apply_plan(installs, &req.options, work).await?;
        if !removes.is_empty() {
            let changes: Vec<Change> = removes
                .iter()
                .map(|p| Change::removal(&p.name, &p.version, p.installed_size))
                .collect();
            if req.options.dry_run {
                outcome.changed.extend(changes);
                return Ok(outcome);
            }
            self.remove_hooked(removes, changes, work).await?;
            outcome.changed = work.done.clone();
        }
        Ok(outcome)
    }

    async fn remove(&self, req: &Request, work: &mut Work<'_>) -> Result<Outcome> {
        let changed = self.plan_changes(req)?;
        if req.options.dry_run {
            return Ok(Outcome {
                changed,
                ..Outcome::default()
            });
        }
        let packages = self.removals(req)?;
        work.reporter.plan(&[], packages.len());
        for p in &packages {
            work.reporter.stage(&p.name, Stage::Waiting, 0, 1);
        }
        work.reporter.state(TxState::Installing);
        self.remove_hooked(packages, changed, work).await?;
        Ok(Outcome {
            changed: work.done.clone(),
            ..Outcome::default()
        })
    }

    /// Remove `packages` between the pre- and post-transaction hooks their files trigger. A
    /// failed removal still runs the post-transaction hooks for what did go.
    async fn remove_hooked(
        &self,
        packages: Vec<InstalledPackage>,
        changes: Vec<Change>,
        work: &mut Work<'_>,
    ) -> Result<()> {
        let mut pre = crate::hooks::Changes::default();
        for p in &packages {
            record_change(&mut pre, &p.name, Some(p), None);
        }
        self.run_hooks(crate::hooks::When::PreTransaction, &pre, work)
            .await?;
        let mut post = crate::hooks::Changes::default();
        let result = self.remove_all(packages, changes, work, &mut post);
        let hooked = self
            .run_hooks(crate::hooks::When::PostTransaction, &post, work)
            .await;
        result?;
        hooked
    }

    /// Remove `packages` in turn; `post` collects what went, for the post-transaction hooks.
    fn remove_all(
        &self,
        packages: Vec<InstalledPackage>,
        changed: Vec<Change>,
        work: &mut Work<'_>,
        post: &mut crate::hooks::Changes,
    ) -> Result<()> {
        for (package, change) in packages.into_iter().zip(changed) {
            if work.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            work.reporter.current(&package.name);
            work.reporter.stage(&package.name, Stage::Removing, 0, 1);
            let (name, version) = (package.name.clone(), package.version.clone());
            let mut gone = crate::hooks::Changes::default();
            record_change(&mut gone, &name, Some(&package), None);
            let notices = self.committer().remove(work.tx, package)?;
            post.extend(gone);
            work.notice_all(notices);
            self.prune_cache(std::iter::once(name.as_str()));
            work.reporter.stage(&name, Stage::Done, 1, 1);
            work.reporter.package_done(&name, &version);
            work.done.push(change);
        }
        Ok(())
    }
}

/// Note in `changes` that package `name` goes from `old` (None: not installed) to the records
/// `new` (None: removed); files and symlinks only.
pub(crate) fn record_change(
    changes: &mut crate::hooks::Changes,
    name: &str,
    old: Option<&InstalledPackage>,
    new: Option<&[FileRecord]>,
) {
    let files = |records: &[FileRecord]| -> Vec<String> {
        records
            .iter()
            .filter(|r| !r.is_dir())
            .map(|r| r.path.clone())
            .collect()
    };
    let old_paths = old.map(|o| files(&o.files)).unwrap_or_default();
    let new_paths = new.map(files).unwrap_or_default();
    changes.package(
        name,
        old_paths.iter().map(String::as_str),
        new_paths.iter().map(String::as_str),
        old.is_some(),
        new.is_some(),
    );
}

/// Whether a modifying transaction enters the history. The history tells what happened to the
/// system and what failed to: every transaction that changed a package, every failure and
/// cancellation; not a dry run, not a prepared offline update (it enters when applied), not
/// one that succeeded with nothing to do (an upgrade with no updates, an install of what is
/// installed, a download-only run: no package changed), and not a request naming a package
/// that does not exist or is not installed while nothing changed (a typo).
fn worth_recording(req: &Request, result: &Result<Outcome>, done: &[Change]) -> bool {
    if req.options.dry_run {
        return false;
    }
    match result {
        Ok(_) => !done.is_empty() && !req.options.offline,
        Err(e) => !(done.is_empty() && e.kind() == crate::error::ErrorKind::UnknownPackage),
    }
}
