//! The engine: refreshes repositories, plans and runs install / upgrade / remove transactions
//! against one target root. It knows nothing of D-Bus; callers pass a [`Reporter`] for progress
//! and a cancellation token, and one modifying transaction runs at a time (others wait in FIFO
//! order on `modify`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::{Available, Catalog, Refused, RepoSnapshot};
use crate::commit;
use crate::config::Config;
use crate::db::{self, Database, HistoryEntry, InstalledPackage, Intent};
use crate::error::{Error, Result};
use crate::index::check_package_name;
use crate::layout::Layout;
use crate::manifest::{FileRecord, sort_for_commit};
use crate::progress::{Reporter, Stage, TxState};
use crate::signature::{self, Keyring};
use crate::source;
use crate::stage;

/// The package that upstream ships broken; refused while no release lists it.
const BROKEN_UPSTREAM: &str = "base-system";
/// Most names one request may carry.
pub const MAX_NAMES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Refresh,
    Install,
    Upgrade,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refresh => "refresh",
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub reinstall: bool,
    pub download_only: bool,
    pub dry_run: bool,
    /// Take over files owned by another package.
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub action: Action,
    pub names: Vec<String>,
    pub options: Options,
    /// uid of who asked (recorded in the history).
    pub requester: u32,
}

/// What a finished transaction did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Each package installed, upgraded or removed (for a dry run: what would be).
    pub changed: Vec<Change>,
    /// After a refresh: names with an update available.
    pub updates: Vec<String>,
}

/// What a transaction (would) do to one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub name: String,
    /// Installed version before; empty when it was not installed.
    pub from: String,
    /// Version after; empty when removed.
    pub to: String,
    /// Bytes to download (0 when the cache has it or nothing is downloaded).
    #[serde(default)]
    pub download: u64,
    #[serde(default)]
    pub installed_size: u64,
}

impl Change {
    /// install | upgrade | reinstall | remove
    pub fn action(&self) -> &'static str {
        match (self.from.is_empty(), self.to.is_empty()) {
            (true, _) => "install",
            (false, true) => "remove",
            (false, false) if self.from == self.to => "reinstall",
            (false, false) => "upgrade",
        }
    }
}

/// A package as `ListPackages` and `info` show it.
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    pub kind: String,
    pub state: &'static str,
    pub installed_version: String,
    pub available_version: String,
    pub size: u64,
    pub installed_size: u64,
    pub description: String,
    pub repo: String,
    pub verified_by: String,
    pub files: u64,
}

struct Planned {
    available: Available,
    old: Option<InstalledPackage>,
}

struct Staged {
    planned: Planned,
    files: Vec<FileRecord>,
}

/// Everything one package's staging task owns.
struct StageJob {
    http: reqwest::Client,
    retry: crate::fetch::RetryPolicy,
    cache: std::path::PathBuf,
    dir: std::path::PathBuf,
    reporter: Reporter,
    cancel: CancellationToken,
    mode: stage::Mode,
}

impl StageJob {
    async fn run(self, planned: Planned) -> Result<Staged> {
        let name = planned.available.entry.name.clone();
        let _ = std::fs::remove_dir_all(&self.dir);
        let progress = self.reporter.package(&name, planned.available.entry.size);
        self.reporter.current(&name);
        progress.start();
        let started = std::time::Instant::now();
        let files = stage::stage(
            &self.http,
            &self.retry,
            &self.cache,
            &planned.available,
            &self.dir,
            self.mode,
            &progress,
            &self.cancel,
        )
        .instrument(tracing::info_span!("stage", package = %name))
        .await?;
        tracing::info!(
            package = %name,
            files = files.len(),
            ms = started.elapsed().as_millis() as u64,
            "staged"
        );
        Ok(Staged { planned, files })
    }
}

pub struct Engine {
    layout: Layout,
    config: Config,
    db: Database,
    http: reqwest::Client,
    catalog: RwLock<Catalog>,
    modify: tokio::sync::Mutex<()>,
    /// Held by [`Engine::refresh`]: one refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const LAST_REFRESH: &str = "last-refresh";

fn repo_key(name: &str) -> String {
    format!("repo/{name}")
}

impl Engine {
    /// Open the database under `root`, finish any commit a crash interrupted, and load the
    /// indexes of the last refresh.
    pub fn open(root: &Path, config: Config) -> Result<Engine> {
        let layout = Layout::new(root);
        let db = Database::open(&layout.state)?;
        let http = crate::fetch::client(config.connect_timeout(), config.stall_timeout())?;
        let mut catalog = Catalog {
            order: config.repos.iter().map(|r| r.name.clone()).collect(),
            ..Catalog::default()
        };
        for repo in &config.repos {
            if let Some(bytes) = db.meta(&repo_key(&repo.name))? {
                match serde_json::from_slice::<RepoSnapshot>(&bytes) {
                    Ok(snapshot) => {
                        catalog.repos.insert(repo.name.clone(), snapshot);
                    }
                    Err(e) => {
                        tracing::warn!(repo = %repo.name, error = %e, "ignoring stored index")
                    }
                }
            }
        }
        let engine = Engine {
            layout,
            config,
            db,
            http,
            catalog: RwLock::new(catalog),
            modify: tokio::sync::Mutex::new(()),
            refreshing: tokio::sync::Mutex::new(()),
        };
        engine.recover()?;
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn last_refresh(&self) -> u64 {
        self.db
            .meta(LAST_REFRESH)
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }

    /// Whether a modifying transaction holds the root right now.
    pub fn busy(&self) -> bool {
        self.modify.try_lock().is_err()
    }

    /// Check a request's arguments before it becomes a transaction.
    pub fn validate(&self, req: &Request) -> Result<()> {
        match req.action {
            Action::Refresh if !req.names.is_empty() => {
                return Err(Error::InvalidArgs("Refresh takes no package names".into()));
            }
            Action::Install | Action::Remove if req.names.is_empty() => {
                return Err(Error::InvalidArgs(format!(
                    "{} needs at least one package name",
                    req.action.as_str()
                )));
            }
            _ => {}
        }
        if req.names.len() > MAX_NAMES {
            return Err(Error::InvalidArgs(format!(
                "too many package names ({}; at most {MAX_NAMES})",
                req.names.len()
            )));
        }
        for name in &req.names {
            check_package_name(name).map_err(Error::InvalidArgs)?;
        }
        Ok(())
    }

    /// Run a request to its end. Modifying requests wait for the previous one first.
    pub async fn run(
        &self,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
    ) -> Result<Outcome> {
        self.validate(req)?;
        if req.action == Action::Refresh {
            reporter.state(TxState::Resolving);
            let updates = self.refresh().await?;
            return Ok(Outcome {
                updates,
                ..Outcome::default()
            });
        }
        let _turn = tokio::select! {
            guard = self.modify.lock() => guard,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let span =
            tracing::info_span!("transaction", action = req.action.as_str(), names = ?req.names);
        async {
            tracing::info!(uid = req.requester, "started");
            let started = now();
            reporter.state(TxState::Resolving);
            let mut done = Vec::new();
            let result = match req.action {
                Action::Remove => self.remove(req, reporter, cancel, &mut done),
                _ => self.install(req, reporter, cancel, &mut done).await,
            };
            match &result {
                Ok(o) => tracing::info!(changed = ?o.changed, "done"),
                Err(e) => tracing::warn!(error = %e, "failed"),
            }
            if !done.is_empty()
                && let Err(e) = self.db.write_dump()
            {
                tracing::warn!(error = %e, "could not write the plain-text dump");
            }
            if !req.options.dry_run {
                self.record_history(req, started, &result, done);
            }
            result
        }
        .instrument(span)
        .await
    }

    fn record_history(
        &self,
        req: &Request,
        started: u64,
        result: &Result<Outcome>,
        changes: Vec<Change>,
    ) {
        let (state, error) = match result {
            Ok(_) => ("finished", String::new()),
            Err(Error::Cancelled) => ("cancelled", String::new()),
            Err(e) => ("failed", e.to_string()),
        };
        let entry = HistoryEntry {
            id: 0,
            started,
            finished: now(),
            uid: req.requester,
            action: req.action.as_str().to_owned(),
            names: req.names.clone(),
            state: state.to_owned(),
            error,
            changes,
        };
        if let Err(e) = self.db.add_history(entry) {
            tracing::warn!(error = %e, "could not record the transaction in the history");
        }
    }

    /// Compare installed files with their manifests (all packages when `names` is empty).
    pub fn verify(&self, names: &[String]) -> Result<Vec<crate::integrity::Problem>> {
        let installed = self.db.installed()?;
        let packages = if names.is_empty() {
            installed.into_values().collect()
        } else {
            let mut out = Vec::new();
            for name in names {
                check_package_name(name).map_err(Error::InvalidArgs)?;
                out.push(
                    installed
                        .get(name)
                        .cloned()
                        .ok_or_else(|| Error::NotInstalled(name.clone()))?,
                );
            }
            out
        };
        Ok(crate::integrity::check(&self.layout.root, &packages))
    }

    /// The configured repositories in priority order: `(name, kind, location, release)`;
    /// release is empty until the first successful refresh.
    pub fn repositories(&self) -> Vec<(String, String, String, String)> {
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        self.config
            .repos
            .iter()
            .map(|r| {
                let (kind, location) = match r.source() {
                    Ok(crate::config::SourceConfig::Index { urls }) => ("index", urls.join(" ")),
                    Ok(crate::config::SourceConfig::Github {
                        api,
                        owner,
                        repo,
                        tag,
                    }) => (
                        "github",
                        format!(
                            "{api}/repos/{owner}/{repo} ({})",
                            tag.as_deref().unwrap_or("latest release")
                        ),
                    ),
                    Err(e) => ("invalid", e),
                };
                let release = catalog
                    .repos
                    .get(&r.name)
                    .map(|s| s.release.clone())
                    .unwrap_or_default();
                (r.name.clone(), kind.to_owned(), location, release)
            })
            .collect()
    }

    /// Past modifying transactions, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        self.db.history(limit)
    }

    /// Fetch every repository's index (conditionally: an unchanged one costs a 304) and
    /// check it against the trusted keys of `etc/spk/keys/`; returns the names with updates.
    /// Refreshes run one at a time, so the rollback guard of each repository only rises.
    pub async fn refresh(&self) -> Result<Vec<String>> {
        let _one_at_a_time = self.refreshing.lock().await;
        let keys = Keyring::load(&signature::keys_dir(&self.layout.root))?;
        let trust = source::Trust {
            keys: &keys,
            allow_unverified: self.config.allow_unverified,
        };
        let previous = self
            .catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .repos
            .clone();
        let fetches = self.config.repos.iter().map(|repo| {
            let previous = previous.get(&repo.name);
            async move {
                let source = repo.source().map_err(Error::InvalidArgs)?;
                let fetched =
                    source::fetch(&self.http, &repo.name, &source, trust, previous).await?;
                Ok::<_, Error>((repo.name.clone(), fetched))
            }
        });
        let results = futures_util::future::join_all(fetches).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok((_, fetched)) if !fetched.changed => {}
                Ok((name, fetched)) => {
                    let bytes = serde_json::to_vec(&fetched.snapshot)
                        .map_err(|e| Error::Database(e.to_string()))?;
                    self.db.set_meta(&repo_key(&name), &bytes)?;
                    self.catalog
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .repos
                        .insert(name, fetched.snapshot);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.db.set_meta(LAST_REFRESH, &now().to_le_bytes())?;
        self.updates()
    }

    /// Installed packages whose repository offers a different build.
    pub fn updates(&self) -> Result<Vec<String>> {
        let installed = self.db.installed()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        Ok(installed
            .values()
            .filter(|p| {
                catalog
                    .get(&p.name)
                    .is_some_and(|a| !a.is_build(&p.sha256, &p.version, p.size))
            })
            .map(|p| p.name.clone())
            .collect())
    }

    pub fn list(&self) -> Result<Vec<PackageInfo>> {
        let installed = self.db.installed()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.all();
        let mut names: Vec<&str> = offered.keys().copied().collect();
        names.extend(installed.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| describe(name, installed.get(name), offered.get(name).copied()))
            .collect())
    }

    pub fn info(&self, name: &str) -> Result<PackageInfo> {
        let installed = self.db.package(name)?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.get(name);
        if installed.is_none() && offered.is_none() {
            return Err(catalog
                .refusal(name)
                .map_or_else(|| unknown(name), Refused::error));
        }
        Ok(describe(name, installed.as_ref(), offered))
    }

    fn plan(&self, req: &Request) -> Result<Vec<Planned>> {
        let installed = self.db.installed()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let mut plan = Vec::new();
        let names: Vec<String> = if req.action == Action::Upgrade && req.names.is_empty() {
            installed.keys().cloned().collect()
        } else {
            req.names.clone()
        };
        for name in names {
            if plan
                .iter()
                .any(|p: &Planned| p.available.entry.name == name)
            {
                continue;
            }
            let old = installed.get(&name).cloned();
            if req.action == Action::Upgrade && old.is_none() {
                return Err(Error::NotInstalled(name));
            }
            let Some(available) = catalog.get(&name).cloned() else {
                if req.action == Action::Upgrade {
                    // Installed, but no longer offered: nothing to upgrade it to.
                    tracing::info!(package = %name, "no repository offers it any more; kept");
                    continue;
                }
                return Err(catalog
                    .refusal(&name)
                    .map_or_else(|| unknown(&name), Refused::error));
            };
            let same = old
                .as_ref()
                .is_some_and(|o| available.is_build(&o.sha256, &o.version, o.size));
            if same && !req.options.reinstall {
                continue;
            }
            plan.push(Planned { available, old });
        }
        Ok(plan)
    }

    /// What `req` would do with the indexes as they are now (no refresh, no change).
    pub fn plan_changes(&self, req: &Request) -> Result<Vec<Change>> {
        self.validate(req)?;
        match req.action {
            Action::Refresh => Ok(Vec::new()),
            Action::Remove => Ok(self
                .removals(req)?
                .iter()
                .map(|p| Change {
                    name: p.name.clone(),
                    from: p.version.clone(),
                    to: String::new(),
                    download: 0,
                    installed_size: p.installed_size,
                })
                .collect()),
            Action::Install | Action::Upgrade => {
                Ok(self.plan(req)?.iter().map(|p| self.change_of(p)).collect())
            }
        }
    }

    fn change_of(&self, p: &Planned) -> Change {
        let e = &p.available.entry;
        let cached = !p.available.is_unverified()
            && stage::cache_file(&self.layout.cache, &e.sha256).is_file();
        Change {
            name: e.name.clone(),
            from: p
                .old
                .as_ref()
                .map(|o| o.version.clone())
                .unwrap_or_default(),
            to: e.version.clone(),
            download: if cached { 0 } else { e.size },
            installed_size: e.installed_size,
        }
    }

    async fn install(
        &self,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
        done: &mut Vec<Change>,
    ) -> Result<Outcome> {
        self.refresh().await?;
        let mut plan = self.plan(req)?;
        let changed: Vec<Change> = plan.iter().map(|p| self.change_of(p)).collect();
        if req.options.dry_run || plan.is_empty() {
            return Ok(Outcome {
                changed: if req.options.dry_run {
                    changed
                } else {
                    Vec::new()
                },
                ..Outcome::default()
            });
        }
        // Largest first: the long streams start early and small ones fill in beside them.
        plan.sort_by_key(|p| std::cmp::Reverse(p.available.entry.size));
        let streams: Vec<(String, u64)> = plan
            .iter()
            .map(|p| (p.available.entry.name.clone(), p.available.entry.size))
            .collect();
        let commits = if req.options.download_only {
            0
        } else {
            plan.len()
        };
        reporter.plan(&streams, commits);
        reporter.state(TxState::Downloading);

        let staged = self
            .stage_all(plan, reporter, cancel, !req.options.download_only)
            .await;
        let staged = match staged {
            Ok(s) => s,
            Err(e) => {
                self.clear_staging();
                return Err(e);
            }
        };
        if req.options.download_only {
            self.clear_staging();
            return Ok(Outcome::default());
        }
        reporter.state(TxState::Installing);
        let result = self.commit_all(staged, &changed, req.options.force, reporter, cancel, done);
        self.clear_staging();
        result?;
        Ok(Outcome {
            changed: done.clone(),
            ..Outcome::default()
        })
    }

    /// Download, verify and unpack every planned package into staging, up to `parallelism()`
    /// at once. Each package streams in its own task so that decoders run on separate cores
    /// (xz decoding is most of an install's CPU time). The first failure stops the others.
    async fn stage_all(
        &self,
        plan: Vec<Planned>,
        reporter: &Reporter,
        cancel: &CancellationToken,
        unpack: bool,
    ) -> Result<Vec<Staged>> {
        let stream_cancel = cancel.child_token();
        let slots = self.config.parallelism();
        let mut pending = plan.into_iter();
        let mut running = tokio::task::JoinSet::new();
        let mut staged = Vec::new();
        loop {
            // Start packages in plan order (largest first) while slots are free.
            while running.len() < slots
                && let Some(planned) = pending.next()
            {
                let mode = if !unpack {
                    stage::Mode::Fetch
                } else if pending.len() < slots {
                    // Nothing will wait for this slot any more: as packages finish, cores
                    // go idle unless the last ones decode on threads of their own.
                    stage::Mode::UnpackThreaded
                } else {
                    stage::Mode::Unpack
                };
                let job = StageJob {
                    http: self.http.clone(),
                    retry: self.config.retry_policy(),
                    cache: self.layout.cache.clone(),
                    dir: self.layout.staging_for(&planned.available.entry.name),
                    reporter: reporter.clone(),
                    cancel: stream_cancel.clone(),
                    mode,
                };
                running.spawn(job.run(planned));
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let result = joined.unwrap_or_else(|e| {
                Err(Error::io(
                    "internal error while staging",
                    std::io::Error::other(e.to_string()),
                ))
            });
            match result {
                Ok(s) => staged.push(s),
                Err(e) => {
                    // One failure fails the transaction before anything is committed.
                    stream_cancel.cancel();
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        Ok(staged)
    }

    /// Commit every staged package, in order; `planned` holds each one's change for `done`.
    fn commit_all(
        &self,
        mut staged: Vec<Staged>,
        planned: &[Change],
        force: bool,
        reporter: &Reporter,
        cancel: &CancellationToken,
        done: &mut Vec<Change>,
    ) -> Result<()> {
        // Check every package before the first one changes the root.
        for s in &mut staged {
            let name = &s.planned.available.entry.name;
            sort_for_commit(&mut s.files);
            if !force
                && let Some((path, owner)) = self.db.conflicts(name, &s.files)?.into_iter().next()
            {
                return Err(Error::FileConflict {
                    package: name.clone(),
                    path,
                    owner,
                });
            }
            commit::preflight(&self.layout.root, &s.files).map_err(|e| Error::PathConflict {
                package: name.clone(),
                path: e.path,
                reason: e.reason,
            })?;
        }
        // Staged bytes must be on disk before renames make them live.
        let started = std::time::Instant::now();
        commit::sync_filesystem(&self.layout.staging)
            .map_err(|e| Error::io("syncing staged files", e))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "staged files synced"
        );
        for s in staged {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let entry = &s.planned.available.entry;
            reporter.current(&entry.name);
            reporter.stage(&entry.name, Stage::Installing, 0, 1);
            let dropped = match &s.planned.old {
                Some(old) => db::dropped_files(&old.files, &s.files),
                None => Vec::new(),
            };
            let intent = Intent::Install {
                staging: self.layout.staging_for(&entry.name),
                package: InstalledPackage {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    kind: entry.kind,
                    sha256: entry.sha256.clone(),
                    repo: s.planned.available.repo.clone(),
                    size: entry.size,
                    installed_size: entry.installed_size,
                    description: entry.description.clone(),
                    installed_at: now(),
                    files: s.files,
                },
                dropped,
            };
            crate::failpoint::hit("commit.before-journal");
            let started = std::time::Instant::now();
            self.db.begin(&intent)?;
            self.apply(&intent)?;
            tracing::info!(
                package = %entry.name,
                version = %entry.version,
                ms = started.elapsed().as_millis() as u64,
                "committed"
            );
            reporter.stage(&entry.name, Stage::Installing, 1, 1);
            reporter.package_done(&entry.name, &entry.version);
            if let Some(change) = planned.iter().find(|c| c.name == entry.name) {
                done.push(change.clone());
            }
        }
        Ok(())
    }

    /// Carry out a journaled intent on the live root and record it. Idempotent: start-up
    /// recovery calls it again for an intent a crash interrupted.
    fn apply(&self, intent: &Intent) -> Result<()> {
        let root = &self.layout.root;
        let place_err = |package: &str, e: commit::PlaceError| Error::PathConflict {
            package: package.to_owned(),
            path: e.path,
            reason: e.reason,
        };
        match intent {
            Intent::Install {
                staging,
                package,
                dropped,
            } => {
                commit::place(root, staging, &package.files)
                    .map_err(|e| place_err(&package.name, e))?;
                crate::failpoint::hit("commit.after-place");
                let mine: Vec<FileRecord> = self.db.owned_by(&package.name, dropped)?;
                commit::remove(root, &mine).map_err(|e| place_err(&package.name, e))?;
            }
            Intent::Remove { package } => {
                let mine: Vec<FileRecord> = self.db.owned_by(&package.name, &package.files)?;
                commit::remove(root, &mine).map_err(|e| place_err(&package.name, e))?;
            }
        }
        // The renames must be durable before the journal entry that could redo them goes.
        commit::sync_filesystem(root).map_err(|e| Error::io("syncing the root", e))?;
        crate::failpoint::hit("commit.before-complete");
        self.db.complete(intent)?;
        if let Intent::Install { staging, .. } = intent {
            let _ = std::fs::remove_dir_all(staging);
        }
        Ok(())
    }

    /// The installed packages `req` names, each once.
    fn removals(&self, req: &Request) -> Result<Vec<InstalledPackage>> {
        let mut packages: Vec<InstalledPackage> = Vec::new();
        for name in &req.names {
            let package = self
                .db
                .package(name)?
                .ok_or_else(|| Error::NotInstalled(name.clone()))?;
            if !packages.iter().any(|p| &p.name == name) {
                packages.push(package);
            }
        }
        Ok(packages)
    }

    fn remove(
        &self,
        req: &Request,
        reporter: &Reporter,
        cancel: &CancellationToken,
        done: &mut Vec<Change>,
    ) -> Result<Outcome> {
        let changed = self.plan_changes(req)?;
        if req.options.dry_run {
            return Ok(Outcome {
                changed,
                ..Outcome::default()
            });
        }
        let packages = self.removals(req)?;
        reporter.plan(&[], packages.len());
        reporter.state(TxState::Installing);
        for (package, change) in packages.into_iter().zip(changed) {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            reporter.current(&package.name);
            reporter.stage(&package.name, Stage::Removing, 0, 1);
            let (name, version) = (package.name.clone(), package.version.clone());
            let intent = Intent::Remove { package };
            self.db.begin(&intent)?;
            self.apply(&intent)?;
            reporter.stage(&name, Stage::Removing, 1, 1);
            reporter.package_done(&name, &version);
            done.push(change);
        }
        Ok(Outcome {
            changed: done.clone(),
            ..Outcome::default()
        })
    }

    /// Finish commits a crash interrupted (roll forward), then drop half-staged packages.
    fn recover(&self) -> Result<()> {
        for intent in self.db.journal()? {
            let name = intent.package_name().to_owned();
            if let Intent::Install { staging, .. } = &intent
                && !staging.exists()
            {
                // Staging vanishes only after the record was completed; nothing to redo.
                tracing::warn!(package = %name, "journal entry without staging; dropped");
                self.db.abandon(&name)?;
                continue;
            }
            tracing::warn!(package = %name, "finishing a commit interrupted by a crash");
            self.apply(&intent)?;
            self.db.write_dump()?;
        }
        self.clear_staging();
        Ok(())
    }

    fn clear_staging(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.layout.staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not clear the staging area");
        }
    }

    /// Installed packages by name (for history, verify, clients).
    pub fn installed(&self) -> Result<BTreeMap<String, InstalledPackage>> {
        self.db.installed()
    }
}

fn unknown(name: &str) -> Error {
    if name == BROKEN_UPSTREAM {
        Error::BrokenUpstream
    } else {
        Error::UnknownPackage(name.to_owned())
    }
}

fn describe(
    name: &str,
    installed: Option<&InstalledPackage>,
    offered: Option<&Available>,
) -> PackageInfo {
    let state = match (installed, offered) {
        (Some(i), Some(a)) if !a.is_build(&i.sha256, &i.version, i.size) => "upgradable",
        (Some(_), _) => "installed",
        _ => "available",
    };
    PackageInfo {
        name: name.to_owned(),
        kind: offered
            .map(|a| a.entry.kind)
            .or(installed.map(|i| i.kind))
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        state,
        installed_version: installed.map(|i| i.version.clone()).unwrap_or_default(),
        available_version: offered.map(|a| a.entry.version.clone()).unwrap_or_default(),
        size: offered.map_or(installed.map_or(0, |i| i.size), |a| a.entry.size),
        installed_size: offered.map_or(installed.map_or(0, |i| i.installed_size), |a| {
            a.entry.installed_size
        }),
        description: offered
            .map(|a| a.entry.description.clone())
            .or(installed.map(|i| i.description.clone()))
            .unwrap_or_default(),
        repo: offered
            .map(|a| a.repo.clone())
            .or(installed.map(|i| i.repo.clone()))
            .unwrap_or_default(),
        verified_by: offered.map(|a| a.verified_by.clone()).unwrap_or_default(),
        files: installed.map_or(0, |i| db::file_count(&i.files) as u64),
    }
}
