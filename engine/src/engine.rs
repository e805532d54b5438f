//! The engine: one target root, its package database, configuration and the catalog of the
//! last refresh. It knows nothing of D-Bus; callers pass a [`Reporter`](crate::Reporter) for
//! progress and a cancellation token, and one modifying transaction runs at a time (others wait
//! in FIFO order on `modify`). What it does is spread by concept over sibling modules, each
//! with its own `impl Engine`: `request` (what callers ask and get back), `query`, `refresh`,
//! `holds`, `planning`, `transact` (running a transaction), `fetch_all`, `commit_staged`,
//! `hook_runner`, `caching` and `recovery`.

use std::path::Path;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::{Catalog, RepoSnapshot};
use crate::commit::committer::{self, Committer};
use crate::config::Config;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::live::Live;

pub struct Engine {
    pub(crate) layout: Layout,
    /// `var/lib/spk/staging` as the root resolves it (relative to the root).
    pub(crate) staging: String,
    pub(crate) config: Config,
    pub(crate) db: Database,
    /// One HTTP client per proxy setting; [`crate::proxy::Clients::for_repo`] picks.
    pub(crate) http: crate::proxy::Clients,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) modify: tokio::sync::Mutex<()>,
    /// Held by [`Engine::refresh`]: one refresh at a time.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    /// Threads deleting staging moved aside ([`Engine::finish_background`] waits for them).
    pub(crate) sweeping: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) const LAST_REFRESH: &str = "last-refresh";
/// The held packages (a JSON list of names).
pub(crate) const HELD: &str = "held";

pub(crate) fn repo_key(name: &str) -> String {
    format!("repo/{name}")
}

impl Engine {
    /// Open the database under `root`, finish any commit a crash interrupted, and load the
    /// indexes of the last refresh.
    pub fn open(root: &Path, config: Config) -> Result<Engine> {
        let layout = Layout::new(root);
        let db = Database::open(&layout.state)?;
        let http = crate::proxy::Clients::new(&config)?;
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
            sweeping: std::sync::Mutex::new(Vec::new()),
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

    pub(crate) fn committer(&self) -> Committer<'_> {
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

    /// Wait for what the engine left running in the background (deleting staging moved aside),
    /// before the process exits: a root prepared by `spkctl --root` must not keep it.
    pub fn finish_background(&self) {
        let threads = match self.sweeping.lock() {
            Ok(mut threads) => std::mem::take(&mut *threads),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Root-relative directory of package `name`'s staging in transaction `tx` (its tree is
    /// `tree` beneath; backups of its commit go to `backup`).
    pub(crate) fn area(&self, tx: u64, name: &str) -> String {
        format!("{}/{tx}/{name}", self.staging)
    }
}
