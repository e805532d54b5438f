//! `xyz.smech.Spk1.Manager` at `/xyz/smech/Spk1`: turns method calls into engine requests and
//! transaction objects, and publishes the daemon-wide properties.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{Connection, interface};

use super::errors::{BusError, bus_error};
use super::transaction::{self, Transaction};
use super::wire;
use spk_dbus::{
    ChangeOptions, CleanOptions, HistoryRow, Kind, MANAGER_PATH as PATH, PackageRow, PlannedChange,
    PreparedRow, Problem, RepositoryRow,
};
use spk_engine::integrity::Detail;
use spk_engine::{Action, Engine, Request};
/// How long a finished transaction stays on the bus for late readers.
pub const RETENTION: Duration = Duration::from_secs(120);
/// Most transactions a caller other than root may have queued or running at once: enough for
/// an applet and a terminal side by side, too few to flood the queue. More calls get
/// `xyz.smech.Spk1.Error.Busy` at once. Root is not limited (it can stop spkd anyway).
pub const MAX_ACTIVE_PER_UID: usize = 4;

/// A transaction on the bus, live or recently finished.
struct Published {
    path: OwnedObjectPath,
    action: Action,
    requester: u32,
    /// Queued or running: cleared as its final state is set (see [`transaction::run`]).
    active: Arc<AtomicBool>,
}

pub struct Manager {
    engine: Arc<Engine>,
    /// Live and recently finished transactions.
    transactions: Arc<Mutex<Vec<Published>>>,
    /// Held from the checks of [`Manager::spawn`] to the new transaction's entry in
    /// `transactions`, so that two calls cannot both pass them.
    admission: tokio::sync::Mutex<()>,
    /// Parent of every transaction's token: cancelled on shutdown.
    shutdown: CancellationToken,
    /// The runtime transactions run on, apart from the one serving the bus.
    work: tokio::runtime::Handle,
}

impl Manager {
    pub fn new(
        engine: Arc<Engine>,
        shutdown: CancellationToken,
        work: tokio::runtime::Handle,
    ) -> Manager {
        Manager {
            engine,
            transactions: Arc::default(),
            admission: tokio::sync::Mutex::new(()),
            shutdown,
            work,
        }
    }

    async fn start(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        action: Action,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
    ) -> Result<OwnedObjectPath, BusError> {
        let mut req = Request {
            action,
            names,
            options: change_options(&options)?,
            requester: 0,
        };
        self.engine.validate(&req).map_err(bus_error)?;
        req.requester = super::auth::authorize(conn, header, action).await?;
        let takes_over = matches!(action, Action::Install | Action::Upgrade)
            && (req.options.force || req.options.adopt);
        if req.requester != 0 && takes_over {
            // Taking over files of other packages (or of none) can replace any file of the
            // system: its own action, always asking for an admin password.
            super::auth::authorize_id(
                conn,
                header,
                super::auth::FORCE_ACTION,
                "take over files of other packages or of none (force, adopt)",
            )
            .await?;
        }
        self.spawn(conn, req).await
    }

    /// Hold or release `names` (Hold, Unhold): the upgrade right decides.
    async fn set_held(
        &self,
        names: &[String],
        hold: bool,
        header: &Header<'_>,
        conn: &Connection,
        emitter: &SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        super::auth::authorize(conn, header, Action::Upgrade).await?;
        self.engine.set_held(names, hold).map_err(bus_error)?;
        let _ = self.update_count_changed(emitter).await;
        Ok(())
    }

    /// The Refresh queued or running now, if any.
    fn active_refresh(list: &[Published]) -> Option<OwnedObjectPath> {
        list.iter()
            .find(|t| t.action == Action::Refresh && t.active.load(Ordering::Acquire))
            .map(|t| t.path.clone())
    }

    /// Publish a transaction object for `req` (already checked and authorized) and run it. A
    /// Refresh while another one is queued or running is that one; a caller other than root
    /// with [`MAX_ACTIVE_PER_UID`] transactions queued or running gets `Busy`.
    pub async fn spawn(
        &self,
        conn: &Connection,
        req: Request,
    ) -> Result<OwnedObjectPath, BusError> {
        let (action, uid) = (req.action, req.requester);
        if self.shutdown.is_cancelled() {
            return Err(BusError::NotAvailable("spkd is shutting down".into()));
        }
        let _admission = self.admission.lock().await;
        {
            let list = self
                .transactions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if action == Action::Refresh
                && let Some(path) = Self::active_refresh(&list)
            {
                tracing::debug!(%path, uid, "refresh already queued or running: joined");
                return Ok(path);
            }
            let active = list
                .iter()
                .filter(|t| t.requester == uid && t.active.load(Ordering::Acquire))
                .count();
            if uid != 0 && active >= MAX_ACTIVE_PER_UID {
                tracing::info!(uid, active, "refused a transaction: too many queued");
                return Err(bus_error(spk_engine::Error::TooManyTransactions {
                    uid,
                    limit: MAX_ACTIVE_PER_UID,
                }));
            }
        }
        // The engine's persisted counter: N of the path is the transaction's history id.
        let id = self.engine.reserve_transaction().map_err(bus_error)?;
        let path = spk_dbus::transaction_path(id);
        let cancel = self.shutdown.child_token();
        let server = conn.object_server();
        server
            .at(&path, Transaction::new(&req, uid, cancel.clone()))
            .await?;
        let iface = server.interface::<_, Transaction>(&path).await?;
        let active = Arc::new(AtomicBool::new(true));
        self.transactions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Published {
                path: path.clone(),
                action,
                requester: uid,
                active: active.clone(),
            });
        tracing::info!(id, uid, action = action.as_str(), names = ?req.names, "transaction queued");

        let engine = self.engine.clone();
        let work = self.work.clone();
        let conn = conn.clone();
        let transactions = self.transactions.clone();
        let tx_path = path.clone();
        // spkd's own lines about the transaction carry its number, as the engine's do.
        let span = tracing::info_span!("transaction", id);
        tokio::spawn(
            async move {
                let outcome =
                    transaction::run(engine.clone(), &work, id, req, cancel, iface, &active).await;
                announce(&conn, action, outcome.as_ref().ok()).await;
                if action == Action::Refresh && outcome.is_ok() {
                    auto_prepare(conn.clone(), engine.clone()).await;
                }
                tokio::time::sleep(RETENTION).await;
                let _ = conn
                    .object_server()
                    .remove::<Transaction, _>(&tx_path)
                    .await;
                transactions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|t| t.path != tx_path);
            }
            .instrument(span),
        );
        Ok(path)
    }
}

/// `auto_prepare`: the updates a refresh found become the update prepared for the next restart,
/// unless the one prepared holds exactly them already.
///
/// Boxed: it starts a transaction from inside one, and the compiler needs the recursion cut.
fn auto_prepare(
    conn: Connection,
    engine: Arc<Engine>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move { prepare_updates(&conn, &engine).await })
}

async fn prepare_updates(conn: &Connection, engine: &Engine) {
    if !engine.config().auto_prepare {
        return;
    }
    let mut updates = match engine.updates() {
        Ok(u) if !u.is_empty() => u,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "auto_prepare: cannot list the updates");
            return;
        }
    };
    updates.sort();
    match engine.prepared() {
        Ok(Some(p)) if p.stale.is_empty() => {
            let mut prepared: Vec<String> = p.changes.into_iter().map(|c| c.name).collect();
            prepared.sort();
            if prepared == updates {
                return;
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "auto_prepare: cannot read the prepared update");
            return;
        }
    }
    let req = Request {
        action: Action::Upgrade,
        names: Vec::new(),
        options: spk_engine::Options {
            offline: true,
            ..spk_engine::Options::default()
        },
        requester: 0,
    };
    let Ok(m) = conn.object_server().interface::<_, Manager>(PATH).await else {
        return;
    };
    match m.get().await.spawn(conn, req).await {
        Ok(path) => tracing::info!(%path, ?updates, "auto_prepare: preparing the updates"),
        Err(e) => tracing::warn!(error = %e, "auto_prepare: could not prepare the updates"),
    }
}

/// A transaction took the root: `Busy` is now true.
pub async fn announce_busy(conn: &Connection) {
    if let Ok(m) = conn.object_server().interface::<_, Manager>(PATH).await {
        let _ = m.get().await.busy_changed(m.signal_emitter()).await;
    }
}

/// The options a caller sent to a change method, for the engine.
fn change_options(options: &HashMap<String, OwnedValue>) -> Result<spk_engine::Options, BusError> {
    ChangeOptions::from_dict(options)
        .map(wire::options)
        .map_err(BusError::InvalidArgs)
}

/// After a transaction: publish the new update count, busy flag, last refresh, and
/// `UpdatesAvailable` when a refresh found updates.
async fn announce(conn: &Connection, action: Action, outcome: Option<&spk_engine::Outcome>) {
    let Ok(m) = conn.object_server().interface::<_, Manager>(PATH).await else {
        return;
    };
    let emitter = m.signal_emitter();
    let manager = m.get().await;
    let _ = manager.update_count_changed(emitter).await;
    let _ = manager.busy_changed(emitter).await;
    let _ = manager.last_refresh_changed(emitter).await;
    // Prepared, or stale now that the installed packages changed.
    let _ = manager.prepared_update_changed(emitter).await;
    drop(manager);
    if let Some(outcome) = outcome
        && action == Action::Refresh
        && !outcome.updates.is_empty()
    {
        let count = u32::try_from(outcome.updates.len()).unwrap_or(u32::MAX);
        if let Err(e) = Manager::updates_available(emitter, count, outcome.updates.clone()).await {
            tracing::warn!(error = %e, "could not emit UpdatesAvailable");
        }
    }
}

#[interface(name = "xyz.smech.Spk1.Manager")]
impl Manager {
    /// Fetch every repository's index; `UpdatesAvailable` follows when updates exist.
    #[zbus(out_args("transaction"))]
    async fn refresh(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        self.start(conn, &header, Action::Refresh, Vec::new(), options)
            .await
    }

    #[zbus(out_args("transaction"))]
    async fn install(
        &self,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        self.start(conn, &header, Action::Install, names, options)
            .await
    }

    /// Upgrade the named packages, or every installed one when `names` is empty.
    #[zbus(out_args("transaction"))]
    async fn upgrade(
        &self,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        self.start(conn, &header, Action::Upgrade, names, options)
            .await
    }

    #[zbus(out_args("transaction"))]
    async fn remove(
        &self,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        self.start(conn, &header, Action::Remove, names, options)
            .await
    }

    /// Go back to the previous build of each named package, from the cache (option `undo`, a
    /// history id: undo what that transaction changed instead).
    #[zbus(out_args("transaction"))]
    async fn rollback(
        &self,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<OwnedObjectPath, BusError> {
        self.start(conn, &header, Action::Rollback, names, options)
            .await
    }

    /// Hold installed packages: `upgrade` leaves them alone unless named, and they are not
    /// counted in `UpdateCount`.
    async fn hold(
        &self,
        names: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        self.set_held(&names, true, &header, conn, &emitter).await
    }

    /// Release held packages.
    async fn unhold(
        &self,
        names: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BusError> {
        self.set_held(&names, false, &header, conn, &emitter).await
    }

    #[zbus(out_args("packages"))]
    async fn list_packages(&self) -> Result<Vec<PackageRow>, BusError> {
        Ok(self
            .engine
            .list()
            .map_err(bus_error)?
            .into_iter()
            .map(wire::package)
            .collect())
    }

    #[zbus(out_args("transactions"))]
    async fn get_transactions(&self) -> Vec<OwnedObjectPath> {
        self.transactions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|t| t.path.clone())
            .collect()
    }

    /// What Install/Upgrade/Remove would do with the indexes as last refreshed: one
    /// `(name, action, from, to, download, installed_size)` per package.
    #[zbus(out_args("changes"))]
    async fn plan(
        &self,
        kind: &str,
        names: Vec<String>,
        options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<PlannedChange>, BusError> {
        let action = match kind.parse::<Kind>() {
            Ok(Kind::Refresh) | Err(_) => {
                return Err(BusError::InvalidArgs(format!(
                    "cannot plan '{}': use install, upgrade, remove or rollback",
                    kind.escape_debug()
                )));
            }
            Ok(k) => wire::action(k),
        };
        let req = Request {
            action,
            names,
            options: change_options(&options)?,
            requester: 0,
        };
        self.engine
            .plan_changes(&req)
            .map_err(bus_error)?
            .into_iter()
            .map(wire::planned)
            .collect()
    }

    /// Installed files that differ from their package's manifest:
    /// `(package, path, kind, problem)`; kind `config` is a locally changed configuration file.
    /// Open to everyone; only root learns hashes, sizes, modes and link targets.
    #[zbus(out_args("problems"))]
    async fn verify(
        &self,
        names: Vec<String>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<Problem>, BusError> {
        let detail = match super::auth::caller_uid(conn, &header).await? {
            0 => Detail::Full,
            _ => Detail::Redacted,
        };
        let engine = self.engine.clone();
        let problems = tokio::task::spawn_blocking(move || engine.verify(&names, detail))
            .await
            .map_err(|e| BusError::Io(format!("verification stopped: {e}")))?
            .map_err(bus_error)?;
        Ok(problems.into_iter().map(wire::problem).collect())
    }

    /// Delete cached tarballs but those of installed versions (all of them with option
    /// `all`): how many files and bytes went.
    #[zbus(out_args("files", "bytes"))]
    async fn clean(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(u32, u64), BusError> {
        let CleanOptions { all } =
            CleanOptions::from_dict(&options).map_err(BusError::InvalidArgs)?;
        super::auth::authorize_id(
            conn,
            &header,
            spk_dbus::names::polkit::CLEAN,
            "clean the cache",
        )
        .await?;
        self.engine.clean(all).await.map_err(bus_error)
    }

    /// Past install/upgrade/remove transactions, newest first (at most `limit`).
    #[zbus(out_args("entries"))]
    async fn get_history(&self, limit: u32) -> Result<Vec<HistoryRow>, BusError> {
        let entries = self.engine.history(limit as usize).map_err(bus_error)?;
        entries.into_iter().map(wire::history).collect()
    }

    /// The configured package sources: name, kind, location, release (as last refreshed),
    /// timestamp (when that index was published; 0 = unknown) and signed (whether that time
    /// is signed by a trusted key).
    #[zbus(out_args("repositories"))]
    async fn get_repositories(&self) -> Vec<RepositoryRow> {
        self.engine
            .repositories()
            .into_iter()
            .map(wire::repository)
            .collect()
    }

    /// The trusted key files (`ROOT/etc/spk/keys/*.pub`), read when asked; empty when
    /// signature checks are off.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trusted_keys(&self) -> Vec<String> {
        match spk_engine::signature::key_files(&self.engine.keys_dir()) {
            Ok(files) => files.iter().map(|p| p.display().to_string()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the trusted keys");
                Vec::new()
            }
        }
    }

    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    #[zbus(property)]
    fn root(&self) -> String {
        self.engine.root().display().to_string()
    }

    #[zbus(property)]
    fn update_count(&self) -> u32 {
        self.engine
            .updates()
            .map(|u| u32::try_from(u.len()).unwrap_or(u32::MAX))
            .unwrap_or(0)
    }

    #[zbus(property)]
    fn last_refresh(&self) -> u64 {
        self.engine.last_refresh()
    }

    #[zbus(property)]
    fn busy(&self) -> bool {
        self.engine.busy()
    }

    #[zbus(property)]
    fn prepared_update(&self) -> PreparedRow {
        match self.engine.prepared() {
            Ok(p) => wire::prepared(p),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the prepared update");
                PreparedRow::default()
            }
        }
    }

    /// Discard the prepared update and free its space: whether there was one.
    #[zbus(out_args("discarded"))]
    async fn cancel_prepared_update(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<bool, BusError> {
        super::auth::authorize(conn, &header, Action::Upgrade).await?;
        // Not under a running transaction's feet: an offline one may be writing it.
        if self.engine.busy() {
            return Err(BusError::Busy(
                "a transaction is running; cancel the prepared update when it has ended".into(),
            ));
        }
        let discarded = self.engine.discard_prepared().map_err(bus_error)?;
        let _ = self.prepared_update_changed(&emitter).await;
        Ok(discarded)
    }

    #[zbus(signal)]
    async fn updates_available(
        emitter: &SignalEmitter<'_>,
        count: u32,
        names: Vec<String>,
    ) -> zbus::Result<()>;
}
