//! The engine: refreshes repositories, plans and runs install / upgrade / remove transactions
//! against one target root. It knows nothing of D-Bus; callers pass a [`Reporter`] for progress
//! and a cancellation token, and one modifying transaction runs at a time (others wait in FIFO
//! order on `modify`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::{self, Cache};
use crate::catalog::{Available, Catalog, Refused, RepoSnapshot};
use crate::change::Change;
use crate::commit::committer::{self, Committer};
use crate::commit::plan::{self as commit_plan, Plan};
use crate::config::Config;
use crate::db::{Database, HistoryEntry, InstalledPackage, Summary};
use crate::error::{Error, Result};
use crate::index::check_package_name;
use crate::layout::Layout;
use crate::live::Live;
use crate::manifest::{FileRecord, sort_for_commit};
use crate::mounts::{self, MountTable};
use crate::notice::Notice;
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
    /// Back to the previous build of each named package, or (option `undo`) undo what one
    /// past transaction changed; from the cache, never the network.
    Rollback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Refresh => "refresh",
            Action::Install => "install",
            Action::Upgrade => "upgrade",
            Action::Remove => "remove",
            Action::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub reinstall: bool,
    pub download_only: bool,
    pub dry_run: bool,
    /// Take over files owned by another package (and files of none, like `adopt`).
    pub force: bool,
    /// Take over files on disk that no package owns (a system installed by the old tool).
    pub adopt: bool,
    /// Rollback: undo what the history entry with this id changed (instead of named packages).
    pub undo: Option<u64>,
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
    /// What the admin should know (kept configuration files, mount points left alone).
    pub notices: Vec<Notice>,
}

/// A configured repository as clients see it (`GetRepositories`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub name: String,
    /// `index`, `github`, or `invalid`.
    pub kind: String,
    pub location: String,
    /// Release of the index in use; empty until the first successful refresh.
    pub release: String,
    /// When that index was published (unix seconds; 0 = it does not say).
    pub published: u64,
    /// Whether `published` is signed by a trusted key.
    pub signed: bool,
}

/// A repository whose refresh failed, in a refresh that goes on with the others.
#[derive(Debug)]
pub struct RepoFailure {
    pub repo: String,
    pub error: Error,
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
    /// Why the package is broken (state `broken`), else empty.
    pub problem: String,
    /// File capabilities: path → `setcap` text (of the installed version, else the offered).
    pub capabilities: BTreeMap<String, String>,
    /// `upgrade` leaves it alone unless named.
    pub held: bool,
}

struct Planned {
    available: Available,
    old: Option<InstalledPackage>,
}

struct Staged {
    planned: Planned,
    files: Vec<FileRecord>,
    /// Entries the archive gives to another owner than root (resolved before commit).
    owners: Vec<crate::unpack::Owner>,
}

/// One running modifying transaction: its number, its progress and what it did so far.
struct Work<'a> {
    tx: u64,
    reporter: &'a Reporter,
    cancel: &'a CancellationToken,
    done: &'a mut Vec<Change>,
    notices: &'a mut Vec<Notice>,
}

impl Work<'_> {
    fn notice_all(&mut self, notices: Vec<Notice>) {
        for n in notices {
            tracing::info!(package = %n.package, path = %n.path, kind = n.kind.as_str(), "{}", n.message);
            self.reporter.notice(n.clone());
            self.notices.push(n);
        }
    }
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
        let unpacked = stage::stage(
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
            files = unpacked.records.len(),
            ms = started.elapsed().as_millis() as u64,
            "staged"
        );
        Ok(Staged {
            planned,
            files: unpacked.records,
            owners: unpacked.owners,
        })
    }
}

pub struct Engine {
    layout: Layout,
    /// `var/lib/spk/staging` as the root resolves it (relative to the root).
    staging: String,
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
/// The held packages (a JSON list of names).
const HELD: &str = "held";

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
        let staging = Live::open(root)
            .ok()
            .and_then(|mut live| live.dir(crate::layout::STAGING).ok())
            .map_or_else(|| crate::layout::STAGING.to_owned(), |d| d.path);
        let engine = Engine {
            layout,
            staging,
            config,
            db,
            http,
            catalog: RwLock::new(catalog),
            modify: tokio::sync::Mutex::new(()),
            refreshing: tokio::sync::Mutex::new(()),
        };
        engine.convert_database()?;
        engine.recover()?;
        // Listings read summaries from memory from now on (see `Database::summaries`).
        engine.db.summaries()?;
        Ok(engine)
    }

    /// Databases written before paths were resolved in the root: resolve them now.
    fn convert_database(&self) -> Result<()> {
        if !self.db.needs_rebuild()? {
            return Ok(());
        }
        let mut live = Live::open(&self.layout.root)
            .map_err(|e| Error::io(format!("opening {}", self.layout.root.display()), e))?;
        let mut packages = self.db.installed()?;
        for package in packages.values_mut() {
            committer::canonicalize(&mut live, package);
        }
        tracing::info!(
            packages = packages.len(),
            "package database converted: paths resolved in the root, directories tracked"
        );
        self.db.rebuild(&packages)
    }

    fn committer(&self) -> Committer<'_> {
        Committer {
            root: &self.layout.root,
            db: &self.db,
        }
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
            Action::Rollback if req.options.undo.is_some() && !req.names.is_empty() => {
                return Err(Error::InvalidArgs(
                    "rollback takes package names or a history entry to undo, not both".into(),
                ));
            }
            Action::Rollback if req.options.undo.is_none() && req.names.is_empty() => {
                return Err(Error::InvalidArgs(
                    "rollback needs package names or a history entry to undo".into(),
                ));
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
            let updates = self.refresh(cancel).await?;
            return Ok(Outcome {
                updates,
                ..Outcome::default()
            });
        }
        // Install and upgrade read the repositories before they wait for the root: a slow
        // mirror then holds this transaction only, not every one queued behind it.
        let failures = if matches!(req.action, Action::Remove | Action::Rollback) {
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
        let span =
            tracing::info_span!("transaction", action = req.action.as_str(), names = ?req.names);
        async {
            tracing::info!(uid = req.requester, "started");
            let started = now();
            reporter.state(TxState::Resolving);
            let mut done = Vec::new();
            let mut notices = Vec::new();
            let result = match self.begin_transaction() {
                Err(e) => Err(e),
                Ok(tx) => {
                    let mut work = Work {
                        tx,
                        reporter,
                        cancel,
                        done: &mut done,
                        notices: &mut notices,
                    };
                    let result = match req.action {
                        Action::Remove => self.remove(req, &mut work).await,
                        Action::Rollback => self.rollback(req, &mut work).await,
                        _ => self.install(req, failures, &mut work).await,
                    };
                    self.clear_staging();
                    result
                }
            };
            let result = result.map(|mut o| {
                o.notices = notices.clone();
                o
            });
            match &result {
                Ok(o) => tracing::info!(changed = ?o.changed, "done"),
                Err(e) => tracing::warn!(error = %e.message(), "failed"),
            }
            if !done.is_empty()
                && let Err(e) = self.db.write_dump()
            {
                tracing::warn!(error = %e, "could not write the plain-text dump");
            }
            if !req.options.dry_run {
                self.record_history(req, started, &result, done, notices);
            }
            result
        }
        .instrument(span)
        .await
    }

    /// A modifying transaction starts: finish what an earlier one left (a panic), then take a
    /// transaction number.
    fn begin_transaction(&self) -> Result<u64> {
        if !self.db.journal::<crate::commit::Intent>()?.is_empty() {
            self.recover()?;
        }
        // Root's alone: no local user may look into (let alone plant anything in) a package
        // being unpacked.
        let staging = self.layout.root.join(&self.staging);
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&staging)
                .and_then(|()| {
                    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
        }
        self.db.next_tx()
    }

    fn record_history(
        &self,
        req: &Request,
        started: u64,
        result: &Result<Outcome>,
        changes: Vec<Change>,
        notices: Vec<Notice>,
    ) {
        let (state, error) = match result {
            Ok(_) => ("finished", String::new()),
            Err(Error::Cancelled) => ("cancelled", String::new()),
            Err(e) => ("failed", e.message()),
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
            notices,
        };
        if let Err(e) = self.db.add_history(entry) {
            tracing::warn!(error = %e, "could not record the transaction in the history");
        }
    }

    /// Compare installed files with their manifests (all packages when `names` is empty),
    /// saying as much as `detail` allows.
    pub fn verify(
        &self,
        names: &[String],
        detail: crate::integrity::Detail,
    ) -> Result<Vec<crate::integrity::Problem>> {
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
        Ok(crate::integrity::check(
            &self.layout.root,
            &packages,
            detail,
        ))
    }

    /// The configured repositories in priority order, with the release and date of the index
    /// in use.
    pub fn repositories(&self) -> Vec<RepoInfo> {
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
                let snapshot = catalog.repos.get(&r.name);
                RepoInfo {
                    name: r.name.clone(),
                    kind: kind.to_owned(),
                    location,
                    release: snapshot.map(|s| s.release.clone()).unwrap_or_default(),
                    published: snapshot.and_then(|s| s.published).unwrap_or(0),
                    signed: snapshot.is_some_and(|s| s.signed),
                }
            })
            .collect()
    }

    /// The trusted keys of `etc/spk/keys/` as they are now (read again at every refresh).
    pub fn trusted_keys(&self) -> Result<Keyring> {
        Keyring::load(&self.keys_dir())
    }

    /// Where the trusted keys live (`ROOT/etc/spk/keys`).
    pub fn keys_dir(&self) -> std::path::PathBuf {
        signature::keys_dir(&self.layout.root)
    }

    /// Past modifying transactions, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>> {
        self.db.history(limit)
    }

    /// Fetch every repository's index (conditionally: an unchanged one costs a 304) and
    /// check it against the trusted keys of `etc/spk/keys/`; returns the names with updates,
    /// or the first repository's failure (the others are refreshed all the same).
    pub async fn refresh(&self, cancel: &CancellationToken) -> Result<Vec<String>> {
        if let Some(failure) = self.refresh_repos(cancel).await?.into_iter().next() {
            return Err(failure.error);
        }
        self.updates()
    }

    /// Refresh every repository at once, each within `refresh_timeout`, and keep what each
    /// accepted; returns the repositories that failed (in config order). Only cancellation and
    /// the database fail the whole. Refreshes run one at a time, so the rollback guard of each
    /// repository only rises.
    pub async fn refresh_repos(&self, cancel: &CancellationToken) -> Result<Vec<RepoFailure>> {
        let _one_at_a_time = tokio::select! {
            guard = self.refreshing.lock() => guard,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let keys = self.trusted_keys()?;
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
        let deadline = self.config.refresh_timeout();
        let fetches = self.config.repos.iter().map(|repo| {
            let previous = previous.get(&repo.name);
            async move {
                let source = repo.source().map_err(Error::InvalidArgs)?;
                let in_flight = std::sync::Mutex::new(String::new());
                let fetch = source::fetch(
                    &self.http,
                    &repo.name,
                    &source,
                    trust,
                    repo.allow_insecure,
                    previous,
                    &in_flight,
                );
                let fetched = match tokio::time::timeout(deadline, fetch).await {
                    Ok(result) => result?,
                    Err(_) => {
                        return Err(Error::RefreshTimeout {
                            repo: repo.name.clone(),
                            url: in_flight
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clone(),
                            secs: deadline.as_secs(),
                        });
                    }
                };
                // Also for an unchanged (304) index: a frozen mirror answers just that.
                self.check_age(&fetched.snapshot)?;
                Ok::<_, Error>(fetched)
            }
        });
        // Dropping the fetches on cancellation drops their connections.
        let results = tokio::select! {
            results = futures_util::future::join_all(fetches) => results,
            () = cancel.cancelled() => return Err(Error::Cancelled),
        };
        let mut failures = Vec::new();
        for (repo, result) in self.config.repos.iter().zip(results) {
            match result {
                Ok(fetched) if !fetched.changed => {}
                Ok(fetched) => {
                    let bytes = serde_json::to_vec(&fetched.snapshot)
                        .map_err(|e| Error::Database(e.to_string()))?;
                    self.db.set_meta(&repo_key(&repo.name), &bytes)?;
                    self.catalog
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .repos
                        .insert(repo.name.clone(), fetched.snapshot);
                }
                Err(error) => {
                    tracing::warn!(repo = %repo.name, %error, "refresh failed");
                    failures.push(RepoFailure {
                        repo: repo.name.clone(),
                        error,
                    });
                }
            }
        }
        if failures.is_empty() {
            self.db.set_meta(LAST_REFRESH, &now().to_le_bytes())?;
        }
        Ok(failures)
    }

    /// Refuse an index older than `max_index_age` allows.
    fn check_age(&self, snapshot: &RepoSnapshot) -> Result<()> {
        signature::check_age(snapshot.published, self.config.max_index_age_secs(), now()).map_err(
            |reason| Error::BadIndex {
                url: snapshot
                    .validators
                    .as_ref()
                    .map(|v| v.url.clone())
                    .unwrap_or_default(),
                reason: format!("release {}: {reason}", snapshot.release),
            },
        )
    }

    /// An install or upgrade goes on without the repositories whose refresh failed only when
    /// it needs nothing from them: each has a last good index, not older than
    /// `max_index_age`, and none of the packages concerned is (or might be) theirs. Then the
    /// client is told that a last good index was used; else the repository's error fails the
    /// transaction.
    fn tolerate(
        &self,
        req: &Request,
        failures: Vec<RepoFailure>,
        work: &mut Work<'_>,
    ) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = if req.action == Action::Upgrade && req.names.is_empty() {
            self.db.installed()?.into_keys().collect()
        } else {
            req.names.clone()
        };
        let mut notices = Vec::new();
        {
            let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
            for failure in failures {
                let Some(snapshot) = catalog.repos.get(&failure.repo) else {
                    return Err(failure.error);
                };
                if let Err(too_old) = self.check_age(snapshot) {
                    tracing::warn!(repo = %failure.repo, error = %too_old, "the last good index is too old to stand in");
                    return Err(failure.error);
                }
                // A name no repository offers might be the failed one's.
                let needed = names.iter().find(|name| {
                    catalog
                        .get(name)
                        .is_none_or(|offer| offer.repo == failure.repo)
                });
                if let Some(name) = needed {
                    tracing::warn!(repo = %failure.repo, package = %name, "needed from a repository that could not be refreshed");
                    return Err(failure.error);
                }
                let mut using = format!("release {}", snapshot.release);
                if let Some(date) = snapshot.published {
                    using.push_str(&format!(", dated {}", signature::describe_time(date)));
                }
                tracing::warn!(repo = %failure.repo, error = %failure.error, "refresh failed; using the last good index ({using})");
                let url = snapshot
                    .validators
                    .as_ref()
                    .map(|v| v.url.clone())
                    .unwrap_or_default();
                notices.push(Notice::stale_index(
                    &failure.repo,
                    &url,
                    &failure.error.to_string(),
                    &using,
                ));
            }
        }
        work.notice_all(notices);
        Ok(())
    }

    /// Installed packages whose repository offers a different build.
    /// Installed packages with an update available, held ones left out.
    pub fn updates(&self) -> Result<Vec<String>> {
        let installed = self.db.summaries()?;
        let held = self.held()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        Ok(installed
            .values()
            .filter(|p| {
                !held.contains(&p.name)
                    && catalog
                        .get(&p.name)
                        .is_some_and(|a| !a.is_build(&p.sha256, &p.version, p.size))
            })
            .map(|p| p.name.clone())
            .collect())
    }

    pub fn list(&self) -> Result<Vec<PackageInfo>> {
        let installed = self.db.summaries()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.all();
        let mut names: Vec<&str> = offered.keys().copied().collect();
        names.extend(installed.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        let held = self.held()?;
        Ok(names
            .into_iter()
            .map(|name| {
                let mut info = describe(name, installed.get(name), offered.get(name).copied());
                info.held = held.contains(name);
                info
            })
            .collect())
    }

    pub fn info(&self, name: &str) -> Result<PackageInfo> {
        let installed = self.db.summaries()?.get(name).cloned();
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let offered = catalog.get(name);
        if installed.is_none() && offered.is_none() {
            return Err(catalog
                .refusal(name)
                .map_or_else(|| unknown(name), Refused::error));
        }
        let mut info = describe(name, installed.as_ref(), offered);
        info.held = self.held()?.contains(name);
        Ok(info)
    }

    fn plan(&self, req: &Request) -> Result<Vec<Planned>> {
        let installed = self.db.installed()?;
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        let mut plan = Vec::new();
        let names: Vec<String> = if req.action == Action::Upgrade && req.names.is_empty() {
            // Held packages are upgraded only when named.
            let held = self.held()?;
            installed
                .keys()
                .filter(|n| !held.contains(*n))
                .cloned()
                .collect()
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
            // A broken package is always reinstalled: that is how it is repaired.
            let same = old.as_ref().is_some_and(|o| {
                o.broken.is_none() && available.is_build(&o.sha256, &o.version, o.size)
            });
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
            Action::Rollback => {
                let (installs, removes) = self.rollback_plan(req)?;
                let mut changes: Vec<Change> = installs.iter().map(|p| self.change_of(p)).collect();
                changes.extend(removes.iter().map(|p| Change {
                    name: p.name.clone(),
                    from: p.version.clone(),
                    to: String::new(),
                    download: 0,
                    installed_size: p.installed_size,
                }));
                Ok(changes)
            }
        }
    }

    fn change_of(&self, p: &Planned) -> Change {
        let e = &p.available.entry;
        let cached =
            !p.available.is_unverified() && cache::file(&self.layout.cache, &e.sha256).is_file();
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
        work.reporter.state(TxState::Downloading);

        let staged = self.stage_all(plan, work, !options.download_only).await?;
        for s in &staged {
            let entry = &s.planned.available.entry;
            if !s.planned.available.is_unverified() {
                self.cache().remember(&entry.name, &entry.sha256)?;
            }
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
        let mut post = crate::hooks::Changes::default();
        let result = self
            .commit_all(staged, &changed, options, work, &mut post)
            .await;
        self.prune_cache(names.iter().map(String::as_str));
        // What was committed gets its post-transaction hooks even when a later package failed.
        let hooked = self
            .run_hooks(crate::hooks::When::PostTransaction, &post, work)
            .await;
        result?;
        hooked?;
        Ok(Outcome {
            changed: work.done.clone(),
            ..Outcome::default()
        })
    }

    /// What a rollback does: the builds to install again (from the cache) and the packages to
    /// remove (undoing an install).
    fn rollback_plan(&self, req: &Request) -> Result<(Vec<Planned>, Vec<InstalledPackage>)> {
        let builds = crate::builds::Builds { db: &self.db };
        let cached = |sha: &str| cache::file(&self.layout.cache, sha).is_file();
        let keep = self.config.keep_versions;
        let no_earlier = |name: &str| {
            Error::NotKept(format!(
                "there is no earlier version of {name} in the cache to go back to \
                 (it keeps keep_versions = {keep} per package)"
            ))
        };
        let not_kept = |name: &str, version: &str| {
            Error::NotKept(format!(
                "{name} {version} is no longer in the cache (it keeps keep_versions = {keep} \
                 per package)"
            ))
        };
        let mut installs = Vec::new();
        let mut removes = Vec::new();
        let Some(id) = req.options.undo else {
            for name in &req.names {
                let old = self
                    .db
                    .package(name)?
                    .ok_or_else(|| Error::NotInstalled(name.clone()))?;
                let build = builds
                    .previous(name, &old.sha256, cached)?
                    .ok_or_else(|| no_earlier(name))?;
                if installs
                    .iter()
                    .all(|p: &Planned| p.available.entry.name != *name)
                {
                    installs.push(Planned {
                        available: build.available(),
                        old: Some(old),
                    });
                }
            }
            return Ok((installs, removes));
        };
        let entry = self
            .db
            .history(usize::MAX)?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| Error::InvalidArgs(format!("there is no history entry {id}")))?;
        for change in &entry.changes {
            let old = self.db.package(&change.name)?;
            if change.from.is_empty() {
                // Installed then: remove it (if it is still there).
                if let Some(old) = old {
                    removes.push(old);
                }
                continue;
            }
            if old
                .as_ref()
                .is_some_and(|o| o.version == change.from && o.broken.is_none())
            {
                continue;
            }
            let build = builds
                .of_version(&change.name, &change.from)?
                .filter(|b| cached(&b.entry.sha256))
                .ok_or_else(|| not_kept(&change.name, &change.from))?;
            installs.push(Planned {
                available: build.available(),
                old,
            });
        }
        Ok((installs, removes))
    }

    async fn rollback(&self, req: &Request, work: &mut Work<'_>) -> Result<Outcome> {
        let (installs, removes) = self.rollback_plan(req)?;
        let mut outcome = self.apply_plan(installs, &req.options, work).await?;
        if !removes.is_empty() {
            let changes: Vec<Change> = removes
                .iter()
                .map(|p| Change {
                    name: p.name.clone(),
                    from: p.version.clone(),
                    to: String::new(),
                    download: 0,
                    installed_size: p.installed_size,
                })
                .collect();
            if req.options.dry_run {
                outcome.changed.extend(changes);
                return Ok(outcome);
            }
            let mut pre = crate::hooks::Changes::default();
            for p in &removes {
                record_change(&mut pre, &p.name, Some(p), None);
            }
            self.run_hooks(crate::hooks::When::PreTransaction, &pre, work)
                .await?;
            let mut post = crate::hooks::Changes::default();
            let result = self.remove_all(removes, changes, work, &mut post);
            let hooked = self
                .run_hooks(crate::hooks::When::PostTransaction, &post, work)
                .await;
            result?;
            hooked?;
            outcome.changed = work.done.clone();
        }
        Ok(outcome)
    }

    /// Packages `upgrade` leaves alone unless named.
    pub fn held(&self) -> Result<std::collections::BTreeSet<String>> {
        Ok(self
            .db
            .meta(HELD)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Hold (or with `hold` false, release) the installed packages `names`.
    pub fn set_held(&self, names: &[String], hold: bool) -> Result<()> {
        let mut held = self.held()?;
        for name in names {
            check_package_name(name).map_err(Error::InvalidArgs)?;
            if hold {
                if self.db.package(name)?.is_none() {
                    return Err(Error::NotInstalled(name.clone()));
                }
                held.insert(name.clone());
            } else {
                held.remove(name);
            }
        }
        let bytes = serde_json::to_vec(&held).map_err(|e| Error::Database(e.to_string()))?;
        self.db.set_meta(HELD, &bytes)?;
        tracing::info!(?names, hold, "holds changed");
        Ok(())
    }

    /// Remember a committed build (what rollback goes back to); a failure is only logged.
    fn remember_build(&self, available: &Available) {
        let builds = crate::builds::Builds { db: &self.db };
        if let Err(e) = builds.remember(available) {
            tracing::warn!(package = %available.entry.name, error = %e, "could not remember the build");
        }
    }

    fn cache(&self) -> Cache<'_> {
        Cache {
            dir: &self.layout.cache,
            db: &self.db,
        }
    }

    /// Keep `keep_versions` tarballs of each of `names` (a failure to prune is only logged).
    fn prune_cache<'n>(&self, names: impl Iterator<Item = &'n str>) {
        for name in names {
            let installed = self.db.package(name).ok().flatten();
            let (sha, keep) = match &installed {
                Some(p) => (Some(p.sha256.as_str()), self.config.keep_versions),
                // Removed: only its last tarball stays (to reinstall it without a download).
                None => (None, self.config.keep_versions.min(1)),
            };
            if let Err(e) = self.cache().prune(name, sha, keep) {
                tracing::warn!(package = %name, error = %e, "could not prune the cache");
            }
        }
    }

    /// Refuse before downloading when the cache's or staging's file system lacks room.
    fn check_space(&self, plan: &[Planned], changes: &[Change], download_only: bool) -> Result<()> {
        let download: u64 = changes.iter().map(|c| c.download).sum();
        let unpacked: u64 = if download_only {
            0
        } else {
            plan.iter().map(|p| p.available.entry.installed_size).sum()
        };
        let cache_dir = committer::existing_ancestor(&self.layout.root, "var/cache/spk");
        let staging_dir = committer::existing_ancestor(&self.layout.root, &self.staging);
        let device = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(p).map(|m| m.dev()).ok()
        };
        let names = plan
            .iter()
            .map(|p| p.available.entry.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut needs = vec![(cache_dir.clone(), download, format!("downloading {names}"))];
        if device(&cache_dir) == device(&staging_dir) {
            needs[0].1 += unpacked;
            if unpacked > 0 {
                needs[0].2 = format!("downloading and unpacking {names}");
            }
        } else {
            needs.push((staging_dir, unpacked, format!("unpacking {names}")));
        }
        let table = MountTable::read();
        for (dir, bytes, what) in needs {
            if bytes == 0 {
                continue;
            }
            let free = mounts::free_bytes(&dir)
                .map_err(|e| Error::io(format!("checking free space of {}", dir.display()), e))?;
            if free < bytes {
                let id = Live::open(&dir)
                    .ok()
                    .and_then(|mut l| l.mount_of("").ok())
                    .unwrap_or(0);
                return Err(Error::NoSpace {
                    place: table.describe(id, &self.layout.root, &dir),
                    what,
                    needed: bytes,
                    free,
                });
            }
        }
        Ok(())
    }

    /// Root-relative directory of package `name`'s staging in transaction `tx` (its tree is
    /// `tree` beneath; backups of its commit go to `backup`).
    fn area(&self, tx: u64, name: &str) -> String {
        format!("{}/{tx}/{name}", self.staging)
    }

    /// Download, verify and unpack every planned package into staging, up to `parallelism()`
    /// at once. Each package streams in its own task so that decoders run on separate cores
    /// (xz decoding is most of an install's CPU time). The first failure stops the others.
    async fn stage_all(
        &self,
        plan: Vec<Planned>,
        work: &Work<'_>,
        unpack: bool,
    ) -> Result<Vec<Staged>> {
        let stream_cancel = work.cancel.child_token();
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
                let area = self.area(work.tx, &planned.available.entry.name);
                let job = StageJob {
                    http: self.http.clone(),
                    retry: self.config.retry_policy(),
                    cache: self.layout.cache.clone(),
                    dir: self.layout.root.join(area).join("tree"),
                    reporter: work.reporter.clone(),
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

    /// Plan the commit of one staged package against the live root as it is now.
    fn plan_commit(&self, s: &Staged, tx: u64, options: &Options) -> Result<Plan> {
        let name = &s.planned.available.entry.name;
        let mut live = Live::open(&self.layout.root)
            .map_err(|e| Error::io(format!("opening {}", self.layout.root.display()), e))?;
        let area = self.area(tx, name);
        let tree = format!("{area}/tree");
        let staging_mount = live.mount_of(&tree).map_err(|e| {
            Error::io(
                format!("{name}: finding the file system of {tree}"),
                e.into(),
            )
        })?;
        let owners = self.db.ownership()?;
        let input = commit_plan::Input {
            name,
            records: &s.files,
            old: s.planned.old.as_ref(),
            tree: &tree,
            area: &area,
            tx,
            adopt: options.adopt,
            force: options.force,
        };
        commit_plan::plan(&input, &mut live, &owners, staging_mount)
    }

    /// Commit every staged package, in order; `planned` holds each one's change for `done`.
    /// `post` collects what was committed, for the post-transaction hooks.
    async fn commit_all(
        &self,
        mut staged: Vec<Staged>,
        planned: &[Change],
        options: &Options,
        work: &mut Work<'_>,
        post: &mut crate::hooks::Changes,
    ) -> Result<()> {
        self.prepare_owners(&mut staged, work.tx)?;
        // Check every package before the first one changes the root (each is planned again
        // right before its commit: earlier ones change what it finds).
        let mut claimed: std::collections::HashMap<String, String> = Default::default();
        let mut first_plan = None;
        let mut pre = crate::hooks::Changes::default();
        for s in &mut staged {
            sort_for_commit(&mut s.files);
            let name = s.planned.available.entry.name.clone();
            let plan = self.plan_commit(s, work.tx, options)?;
            record_change(&mut pre, &name, s.planned.old.as_ref(), Some(&plan.records));
            for r in plan.records.iter().filter(|r| !r.is_dir()) {
                if let Some(owner) = claimed.insert(r.path.clone(), name.clone()) {
                    return Err(Error::FileConflict {
                        package: name,
                        path: r.path.clone(),
                        owner,
                    });
                }
            }
            first_plan.get_or_insert(plan);
        }
        self.run_hooks(crate::hooks::When::PreTransaction, &pre, work)
            .await?;
        // Staged bytes must be on disk before renames make them live.
        let started = std::time::Instant::now();
        crate::commit::sync_filesystem(&self.layout.root.join(&self.staging))
            .map_err(|e| Error::io("syncing staged files", e))?;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "staged files synced"
        );
        for s in staged {
            if work.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let entry = &s.planned.available.entry;
            let plan = match first_plan.take() {
                Some(p) => p,
                None => self.plan_commit(&s, work.tx, options)?,
            };
            work.reporter.current(&entry.name);
            work.reporter.stage(&entry.name, Stage::Installing, 0, 1);
            let package = InstalledPackage {
                name: entry.name.clone(),
                version: entry.version.clone(),
                kind: entry.kind,
                sha256: entry.sha256.clone(),
                repo: s.planned.available.repo.clone(),
                size: entry.size,
                installed_size: entry.installed_size,
                description: entry.description.clone(),
                installed_at: now(),
                files: Vec::new(),
                broken: None,
            };
            let started = std::time::Instant::now();
            let paths: Vec<FileRecord> = plan.records.clone();
            let notices = self.committer().install(
                work.tx,
                package,
                plan,
                &self.area(work.tx, &entry.name),
            )?;
            record_change(post, &entry.name, s.planned.old.as_ref(), Some(&paths));
            self.remember_build(&s.planned.available);
            tracing::info!(
                package = %entry.name,
                version = %entry.version,
                ms = started.elapsed().as_millis() as u64,
                "committed"
            );
            work.notice_all(notices);
            work.reporter.stage(&entry.name, Stage::Installing, 1, 1);
            work.reporter.package_done(&entry.name, &entry.version);
            if let Some(change) = planned.iter().find(|c| c.name == entry.name) {
                work.done.push(change.clone());
            }
        }
        Ok(())
    }

    /// Run the hooks of the target root that `changes` trigger at `when` (see `hooks`). A
    /// pre-transaction hook with AbortOnFail that fails stops the transaction; any other failure
    /// is a notice: what was committed stays.
    async fn run_hooks(
        &self,
        when: crate::hooks::When,
        changes: &crate::hooks::Changes,
        work: &mut Work<'_>,
    ) -> Result<()> {
        use crate::hooks::Ran;
        if changes.is_empty() {
            return Ok(());
        }
        let (all, problems) = crate::hooks::load(&self.layout.root);
        for problem in problems {
            work.notice_all(vec![Notice::hook(
                "(files)",
                &format!("not read: {problem}"),
            )]);
        }
        let timeout = std::time::Duration::from_secs(self.config.hook_timeout);
        for (hook, targets) in crate::hooks::triggered(&all, when, changes) {
            let description = if hook.description.is_empty() {
                hook.name.clone()
            } else {
                hook.description.clone()
            };
            tracing::info!(hook = %hook.name, targets = targets.len(), "running hook");
            work.reporter.hook(&hook.name, &description, "running", "");
            let outcome = crate::hooks::run(&self.layout.root, hook, &targets, timeout).await;
            for line in outcome.output.lines() {
                tracing::info!(hook = %hook.name, "{line}");
            }
            let last = outcome
                .output
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_owned();
            let (state, problem) = match &outcome.ran {
                Ran::Succeeded => ("succeeded", None),
                Ran::Missing(why) => {
                    tracing::info!(hook = %hook.name, "skipped: {why}");
                    ("skipped", None)
                }
                Ran::Skipped(why) => ("skipped", Some(format!("not run: {why}"))),
                Ran::Failed(code) => (
                    "failed",
                    Some(match code {
                        Some(c) => format!("failed with exit code {c}"),
                        None => "was killed by a signal".to_owned(),
                    }),
                ),
                Ran::TimedOut => (
                    "timed-out",
                    Some(format!(
                        "did not finish within hook_timeout ({} s) and was killed",
                        self.config.hook_timeout
                    )),
                ),
            };
            let tail = crate::error::bounded(outcome.output.clone());
            work.reporter.hook(&hook.name, &description, state, &tail);
            let Some(problem) = problem else { continue };
            let problem = if last.is_empty() {
                problem
            } else {
                format!("{problem}: {last}")
            };
            tracing::warn!(hook = %hook.name, "{problem}");
            if when == crate::hooks::When::PreTransaction && hook.abort_on_fail {
                return Err(Error::HookAborted {
                    hook: hook.name.clone(),
                    reason: problem,
                });
            }
            work.notice_all(vec![Notice::hook(&hook.name, &problem)]);
        }
        Ok(())
    }

    /// Before anything is committed: create the system users and groups the staged packages
    /// declare (`usr/lib/sysusers.d/*.conf`) in the target root, then give the staged files
    /// the owners their archives name, resolved in the target root, and the capabilities their
    /// index entries list.
    fn prepare_owners(&self, staged: &mut [Staged], tx: u64) -> Result<()> {
        let options = crate::sysusers::Options {
            use_target_tool: true,
            ..Default::default()
        };
        let root = &self.layout.root;
        for s in staged.iter() {
            let name = &s.planned.available.entry.name;
            let confs = self.sysusers_confs(s, tx)?;
            if confs.is_empty() {
                continue;
            }
            let applied =
                crate::sysusers::apply(root, &confs, &options).map_err(|e| e.into_engine(name))?;
            if !applied.is_empty() {
                tracing::info!(package = %name, "{applied}");
            }
        }
        if staged
            .iter()
            .all(|s| s.owners.is_empty() && s.planned.available.entry.capabilities.is_empty())
        {
            return Ok(());
        }
        let accounts = crate::sysusers::Accounts::load(root)
            .map_err(|e| e.into_engine("(accounts of the target root)"))?;
        for s in staged.iter_mut() {
            let entry = &s.planned.available.entry;
            let tree = root.join(self.area(tx, &entry.name)).join("tree");
            let mut tree = crate::live::Tree::open(&tree)
                .map_err(|e| Error::io(format!("opening {}", tree.display()), e))?;
            crate::ownership::apply(&mut tree, entry, &mut s.files, &s.owners, &accounts)?;
        }
        Ok(())
    }

    /// The sysusers.d files a staged package ships: (file name, content).
    fn sysusers_confs(&self, s: &Staged, tx: u64) -> Result<Vec<(String, String)>> {
        const MAX_CONF: u64 = 1 << 20;
        let entry = &s.planned.available.entry;
        let mut confs = Vec::new();
        let mut tree = None;
        for r in &s.files {
            let Some(file) = ["usr/lib/sysusers.d/", "lib/sysusers.d/"]
                .iter()
                .find_map(|d| r.path.strip_prefix(d))
                .filter(|f| f.ends_with(".conf") && !f.contains('/'))
            else {
                continue;
            };
            if !matches!(r.kind, crate::manifest::FileKind::File { size, .. } if size <= MAX_CONF) {
                continue;
            }
            let dir = self
                .layout
                .root
                .join(self.area(tx, &entry.name))
                .join("tree");
            let tree = match &mut tree {
                Some(t) => t,
                None => tree.insert(
                    crate::live::Tree::open(&dir)
                        .map_err(|e| Error::io(format!("opening {}", dir.display()), e))?,
                ),
            };
            let mut text = String::new();
            use std::io::Read;
            tree.open_file(&r.path)
                .map_err(std::io::Error::from)
                .and_then(|f| f.take(MAX_CONF).read_to_string(&mut text))
                .map_err(|e| Error::io(format!("{}: reading {}", entry.name, r.path), e))?;
            confs.push((file.to_owned(), text));
        }
        Ok(confs)
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

    async fn remove(&self, req: &Request, work: &mut Work<'_>) -> Result<Outcome> {
        let changed = self.plan_changes(req)?;
        if req.options.dry_run {
            return Ok(Outcome {
                changed,
                ..Outcome::default()
            });
        }
        let packages = self.removals(req)?;
        let mut pre = crate::hooks::Changes::default();
        for p in &packages {
            record_change(&mut pre, &p.name, Some(p), None);
        }
        work.reporter.plan(&[], packages.len());
        work.reporter.state(TxState::Installing);
        self.run_hooks(crate::hooks::When::PreTransaction, &pre, work)
            .await?;
        let mut post = crate::hooks::Changes::default();
        let result = self.remove_all(packages, changed, work, &mut post);
        let hooked = self
            .run_hooks(crate::hooks::When::PostTransaction, &post, work)
            .await;
        result?;
        hooked?;
        Ok(Outcome {
            changed: work.done.clone(),
            ..Outcome::default()
        })
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
            work.reporter.stage(&name, Stage::Removing, 1, 1);
            work.reporter.package_done(&name, &version);
            work.done.push(change);
        }
        Ok(())
    }

    /// Finish or undo commits a crash (or a panic) interrupted, then drop staging left over.
    fn recover(&self) -> Result<()> {
        if self.committer().recover()? > 0 {
            self.db.write_dump()?;
        }
        self.clear_staging();
        Ok(())
    }

    fn clear_staging(&self) {
        let staging = self.layout.root.join(&self.staging);
        if let Err(e) = std::fs::remove_dir_all(&staging)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "could not clear the staging area");
        }
    }

    /// `spkctl clean`: drop cached tarballs but the installed versions' (all with `all`).
    pub async fn clean(&self, all: bool) -> Result<(u32, u64)> {
        let _turn = self.modify.lock().await;
        let installed = self.db.installed()?;
        let (files, bytes) = self.cache().clean(&installed, all)?;
        tracing::info!(files, bytes, all, "cache cleaned");
        Ok((files, bytes))
    }

    /// Installed packages by name (for history, verify, clients).
    pub fn installed(&self) -> Result<BTreeMap<String, InstalledPackage>> {
        self.db.installed()
    }
}

/// Note in `changes` that package `name` goes from `old` (None: not installed) to the records
/// `new` (None: removed); files and symlinks only.
fn record_change(
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

fn unknown(name: &str) -> Error {
    if name == BROKEN_UPSTREAM {
        Error::BrokenUpstream
    } else {
        Error::UnknownPackage(name.to_owned())
    }
}

fn describe(name: &str, installed: Option<&Summary>, offered: Option<&Available>) -> PackageInfo {
    let state = match (installed, offered) {
        (Some(i), _) if i.broken.is_some() => "broken",
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
        files: installed.map_or(0, |i| i.files),
        problem: installed.and_then(|i| i.broken.clone()).unwrap_or_default(),
        held: false,
        capabilities: match installed {
            Some(i) => i.capabilities.clone(),
            None => offered
                .map(|a| a.entry.capabilities.clone())
                .unwrap_or_default(),
        },
    }
}
