//! `xyz.smech.Spk1.Transaction` objects: a transaction's state as properties and signals, and
//! the task that runs it in the engine and mirrors the engine's events onto the bus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{Connection, interface};

use super::errors::{BusError, error_name};
use spk_engine::{Engine, Event, Outcome, Reporter, Request, TxState};

#[derive(Debug, Clone)]
pub struct Status {
    pub kind: String,
    pub packages: Vec<String>,
    pub state: TxState,
    pub percentage: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub current: String,
    pub error_name: String,
    pub error_message: String,
    pub requester: u32,
    /// (package, kind, path, message) of every notice so far.
    pub notices: Vec<(String, String, String, String)>,
}

pub struct Transaction {
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
}

impl Transaction {
    pub fn new(req: &Request, requester: u32, cancel: CancellationToken) -> Transaction {
        Transaction {
            status: Arc::new(Mutex::new(Status {
                kind: req.action.as_str().to_owned(),
                packages: req.names.clone(),
                state: TxState::Queued,
                percentage: 0,
                bytes_done: 0,
                bytes_total: 0,
                current: String::new(),
                error_name: String::new(),
                error_message: String::new(),
                requester,
                notices: Vec::new(),
            })),
            cancel,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Status) -> T) -> T {
        f(&self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[interface(name = "xyz.smech.Spk1.Transaction")]
impl Transaction {
    /// Stop the transaction: downloads at once, installs at the next package boundary.
    async fn cancel(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(), BusError> {
        let uid = super::auth::caller_uid(conn, &header).await?;
        if uid != 0 && uid != self.read(|s| s.requester) {
            return Err(BusError::NotAuthorized(format!(
                "uid {uid} may not cancel another user's transaction"
            )));
        }
        self.cancel.cancel();
        Ok(())
    }

    #[zbus(property)]
    fn kind(&self) -> String {
        self.read(|s| s.kind.clone())
    }

    #[zbus(property)]
    fn packages(&self) -> Vec<String> {
        self.read(|s| s.packages.clone())
    }

    #[zbus(property)]
    fn state(&self) -> String {
        self.read(|s| s.state.as_str().to_owned())
    }

    #[zbus(property)]
    fn percentage(&self) -> u32 {
        self.read(|s| s.percentage)
    }

    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.read(|s| s.bytes_done)
    }

    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.read(|s| s.bytes_total)
    }

    #[zbus(property)]
    fn current_package(&self) -> String {
        self.read(|s| s.current.clone())
    }

    #[zbus(property)]
    fn error_name(&self) -> String {
        self.read(|s| s.error_name.clone())
    }

    #[zbus(property)]
    fn error_message(&self) -> String {
        self.read(|s| s.error_message.clone())
    }

    #[zbus(property)]
    fn requester(&self) -> u32 {
        self.read(|s| s.requester)
    }

    /// What the admin should know although nothing failed: (package, kind, path, message).
    #[zbus(property)]
    fn notices(&self) -> Vec<(String, String, String, String)> {
        self.read(|s| s.notices.clone())
    }

    /// A transaction hook started (state "running") or ended ("succeeded", "failed",
    /// "skipped", "timed-out"), with the end of what it printed.
    #[zbus(signal)]
    async fn hook(
        emitter: &SignalEmitter<'_>,
        name: &str,
        description: &str,
        state: &str,
        output: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notice(
        emitter: &SignalEmitter<'_>,
        package: &str,
        kind: &str,
        path: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        package: &str,
        stage: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn package_done(
        emitter: &SignalEmitter<'_>,
        name: &str,
        version: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn finished(
        emitter: &SignalEmitter<'_>,
        state: &str,
        error_name: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Run `req` in the engine and mirror its events onto the transaction object at `iface`.
/// Returns the outcome (for the manager's follow-up: update count, signals).
/// Run `req` as the transaction `iface`; `active` turns false as its final state is set, before
/// `Finished` (from then on, a Refresh call does not join it).
pub async fn run(
    engine: Arc<Engine>,
    req: Request,
    cancel: CancellationToken,
    iface: InterfaceRef<Transaction>,
    active: &AtomicBool,
) -> Result<Outcome, spk_engine::Error> {
    let status = iface.get().await.status.clone();
    let (reporter, mut events) = Reporter::new();
    // The engine runs in its own task: a panic there fails this transaction, not the daemon.
    let work = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let result = engine.run(&req, &reporter, &cancel).await;
            drop(reporter);
            crate::memory::release();
            result
        }
    });
    let emitter = iface.signal_emitter().clone();
    while let Some(event) = events.recv().await {
        if let Err(e) = mirror(&iface, &status, &emitter, event).await {
            tracing::debug!(error = %e, "could not emit a transaction signal");
        }
    }
    let result = match work.await {
        Ok(result) => result,
        Err(e) => Err(spk_engine::Error::io(
            "internal error in the transaction",
            std::io::Error::other(e.to_string()),
        )),
    };
    let (state, name, message) = match &result {
        Ok(_) => (TxState::Finished, String::new(), String::new()),
        Err(e) => {
            let state = if e.kind() == spk_engine::ErrorKind::Cancelled {
                TxState::Cancelled
            } else {
                TxState::Failed
            };
            (state, error_name(e.kind()), e.message())
        }
    };
    {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        s.state = state;
        s.error_name = name.clone();
        s.error_message = message.clone();
        if state == TxState::Finished {
            s.percentage = 100;
        }
        active.store(false, Ordering::Release);
    }
    let t = iface.get().await;
    let _ = t.percentage_changed(&emitter).await;
    let _ = t.error_name_changed(&emitter).await;
    let _ = t.error_message_changed(&emitter).await;
    let _ = t.state_changed(&emitter).await;
    drop(t);
    if let Err(e) = Transaction::finished(&emitter, state.as_str(), &name, &message).await {
        tracing::warn!(error = %e, "could not emit Finished");
    }
    result
}

async fn mirror(
    iface: &InterfaceRef<Transaction>,
    status: &Mutex<Status>,
    emitter: &SignalEmitter<'_>,
    event: Event,
) -> zbus::Result<()> {
    let update = |f: &dyn Fn(&mut Status) -> bool| {
        let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut s)
    };
    match event {
        Event::State(state) => {
            update(&|s| {
                s.state = state;
                true
            });
            iface.get().await.state_changed(emitter).await?;
        }
        Event::Current(name) => {
            if update(&|s| {
                let changed = s.current != name;
                s.current.clone_from(&name);
                changed
            }) {
                iface.get().await.current_package_changed(emitter).await?;
            }
        }
        Event::Overall {
            percentage,
            bytes_done,
            bytes_total,
        } => {
            let (pct, bytes) = {
                let mut s = status.lock().unwrap_or_else(PoisonError::into_inner);
                let pct = s.percentage != percentage;
                let bytes = s.bytes_done != bytes_done || s.bytes_total != bytes_total;
                s.percentage = percentage;
                s.bytes_done = bytes_done;
                s.bytes_total = bytes_total;
                (pct, bytes)
            };
            let t = iface.get().await;
            if bytes {
                t.bytes_done_changed(emitter).await?;
                t.bytes_total_changed(emitter).await?;
            }
            if pct {
                t.percentage_changed(emitter).await?;
            }
        }
        Event::Progress {
            package,
            stage,
            done,
            total,
        } => {
            Transaction::progress(emitter, &package, stage.as_str(), done, total).await?;
        }
        Event::PackageDone { name, version } => {
            Transaction::package_done(emitter, &name, &version).await?;
        }
        Event::Hook {
            name,
            description,
            state,
            output,
        } => {
            Transaction::hook(emitter, &name, &description, &state, &output).await?;
        }
        Event::Notice(n) => {
            let kind = n.kind.as_str();
            update(&|s| {
                s.notices.push((
                    n.package.clone(),
                    kind.to_owned(),
                    n.path.clone(),
                    n.message.clone(),
                ));
                true
            });
            iface.get().await.notices_changed(emitter).await?;
            Transaction::notice(emitter, &n.package, kind, &n.path, &n.message).await?;
        }
    }
    Ok(())
}
