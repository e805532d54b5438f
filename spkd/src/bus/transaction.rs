//! `xyz.smech.Spk1.Transaction` objects: a transaction's state as properties and signals, and
//! the task that runs it in the engine and mirrors the engine's events onto the bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use spk_dbus::{Activity, HookState, Kind, Notice, State};
use tokio_util::sync::CancellationToken;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{Connection, interface};

use super::errors::{BusError, error_name};
use super::wire;
use spk_engine::{Engine, Event, Outcome, Reporter, Request, Stage};

/// One transaction's object: its properties are these fields, changed by [`run`] through
/// `get_mut()` and announced with the generated `*_changed`.
pub struct Transaction {
    kind: Kind,
    packages: Vec<String>,
    state: State,
    percentage: u32,
    bytes_done: u64,
    bytes_total: u64,
    current_package: String,
    error_name: String,
    error_message: String,
    requester: u32,
    notices: Vec<Notice>,
    cancel: CancellationToken,
}

impl Transaction {
    pub fn new(req: &Request, requester: u32, cancel: CancellationToken) -> Transaction {
        Transaction {
            kind: wire::kind(req.action),
            packages: req.names.clone(),
            state: State::Queued,
            percentage: 0,
            bytes_done: 0,
            bytes_total: 0,
            current_package: String::new(),
            error_name: String::new(),
            error_message: String::new(),
            requester,
            notices: Vec::new(),
            cancel,
        }
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
        if uid != 0 && uid != self.requester {
            return Err(BusError::NotAuthorized(format!(
                "uid {uid} may not cancel another user's transaction"
            )));
        }
        self.cancel.cancel();
        Ok(())
    }

    #[zbus(property)]
    fn kind(&self) -> Kind {
        self.kind
    }

    #[zbus(property)]
    fn packages(&self) -> Vec<String> {
        self.packages.clone()
    }

    #[zbus(property)]
    fn state(&self) -> State {
        self.state
    }

    #[zbus(property)]
    fn percentage(&self) -> u32 {
        self.percentage
    }

    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.bytes_done
    }

    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.bytes_total
    }

    #[zbus(property)]
    fn current_package(&self) -> String {
        self.current_package.clone()
    }

    #[zbus(property)]
    fn error_name(&self) -> String {
        self.error_name.clone()
    }

    #[zbus(property)]
    fn error_message(&self) -> String {
        self.error_message.clone()
    }

    #[zbus(property)]
    fn requester(&self) -> u32 {
        self.requester
    }

    /// What the admin should know although nothing failed: (package, kind, path, message).
    #[zbus(property)]
    fn notices(&self) -> Vec<Notice> {
        self.notices.clone()
    }

    /// A transaction hook started or ended, with the end of what it printed.
    #[zbus(signal)]
    async fn hook(
        emitter: &SignalEmitter<'_>,
        name: &str,
        description: &str,
        state: HookState,
        output: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn notice(
        emitter: &SignalEmitter<'_>,
        package: &str,
        kind: spk_dbus::NoticeKind,
        path: &str,
        message: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn progress(
        emitter: &SignalEmitter<'_>,
        package: &str,
        stage: Activity,
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
        state: State,
        error_name: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Run `req` as the transaction number `id` (object `iface`) in the engine, mirroring the
/// engine's events onto it; `active` turns false as its final state is set, before `Finished`
/// (from then on, a Refresh call does not join it). Returns the outcome, for the manager's
/// follow-up.
pub async fn run(
    engine: Arc<Engine>,
    work: &tokio::runtime::Handle,
    id: u64,
    req: Request,
    cancel: CancellationToken,
    iface: InterfaceRef<Transaction>,
    active: &AtomicBool,
) -> Result<Outcome, spk_engine::Error> {
    let (reporter, mut events) = Reporter::new();
    // The engine runs in its own task, on the work runtime: a panic there fails this
    // transaction, not the daemon.
    let work = work.spawn({
        let cancel = cancel.clone();
        async move {
            let result = engine.run(id, &req, &reporter, &cancel).await;
            drop(reporter);
            crate::memory::release();
            result
        }
    });
    let mut roll_call = RollCall::default();
    let mut tick = tokio::time::interval(ROLL_CALL);
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tick.tick() => {
                if let Err(e) = roll_call.repeat(&iface).await {
                    tracing::debug!(error = %e, "could not repeat a Progress signal");
                }
                continue;
            }
        };
        let Some(event) = event else {
            break;
        };
        roll_call.note(&event);
        if let Err(e) = mirror(&iface, event).await {
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
        Ok(_) => (State::Finished, String::new(), String::new()),
        Err(e) => {
            let state = if e.kind() == spk_engine::ErrorKind::Cancelled {
                State::Cancelled
            } else {
                State::Failed
            };
            (state, error_name(e.kind()), e.message())
        }
    };
    let emitter = iface.signal_emitter();
    {
        let mut t = iface.get_mut().await;
        t.state = state;
        t.error_name.clone_from(&name);
        t.error_message.clone_from(&message);
        if state == State::Finished {
            t.percentage = 100;
        }
        active.store(false, Ordering::Release);
        let _ = t.percentage_changed(emitter).await;
        let _ = t.error_name_changed(emitter).await;
        let _ = t.error_message_changed(emitter).await;
        let _ = t.state_changed(emitter).await;
    }
    if let Err(e) = Transaction::finished(emitter, state, &name, &message).await {
        tracing::warn!(error = %e, "could not emit Finished");
    }
    result
}

/// How often a package whose stage has not been announced for a while is announced again.
const ROLL_CALL: std::time::Duration = std::time::Duration::from_secs(1);

/// The last `Progress` of every package not yet done, repeated about every [`ROLL_CALL`] while
/// it stands: a client that joins a running transaction (`spkctl monitor`) learns within
/// that time of every package, also those waiting or unpacked, whose stages do not move.
#[derive(Default)]
struct RollCall {
    last: Vec<(String, Stage, u64, u64, std::time::Instant)>,
}

impl RollCall {
    fn note(&mut self, event: &Event) {
        let Event::Progress {
            package,
            stage,
            done,
            total,
        } = event
        else {
            return;
        };
        let now = std::time::Instant::now();
        match self.last.iter().position(|(name, ..)| name == package) {
            Some(i) if *stage == Stage::Done => {
                self.last.remove(i);
            }
            Some(i) => {
                let (_, s, d, t, at) = &mut self.last[i];
                (*s, *d, *t, *at) = (*stage, *done, *total, now);
            }
            None if *stage != Stage::Done => {
                self.last
                    .push((package.clone(), *stage, *done, *total, now));
            }
            None => {}
        }
    }

    async fn repeat(&mut self, iface: &InterfaceRef<Transaction>) -> zbus::Result<()> {
        let emitter = iface.signal_emitter();
        let now = std::time::Instant::now();
        for (package, stage, done, total, at) in &mut self.last {
            // Half the period: what was announced just after a tick is repeated at the next.
            if now.duration_since(*at) >= ROLL_CALL / 2 {
                *at = now;
                Transaction::progress(emitter, package, wire::activity(*stage), *done, *total)
                    .await?;
            }
        }
        Ok(())
    }
}

/// One engine event onto the transaction's object: a property change (only when the value
/// changed) or a signal.
async fn mirror(iface: &InterfaceRef<Transaction>, event: Event) -> zbus::Result<()> {
    let emitter = iface.signal_emitter();
    match event {
        Event::State(state) => {
            let state = wire::state(state);
            let mut t = iface.get_mut().await;
            if t.state != state {
                t.state = state;
                t.state_changed(emitter).await?;
            }
        }
        Event::RootTaken => super::manager::announce_busy(emitter.connection()).await,
        Event::Current(name) => {
            let mut t = iface.get_mut().await;
            if t.current_package != name {
                t.current_package = name;
                t.current_package_changed(emitter).await?;
            }
        }
        Event::Overall {
            percentage,
            bytes_done,
            bytes_total,
        } => {
            let mut t = iface.get_mut().await;
            if t.bytes_done != bytes_done || t.bytes_total != bytes_total {
                t.bytes_done = bytes_done;
                t.bytes_total = bytes_total;
                t.bytes_done_changed(emitter).await?;
                t.bytes_total_changed(emitter).await?;
            }
            if t.percentage != percentage {
                t.percentage = percentage;
                t.percentage_changed(emitter).await?;
            }
        }
        Event::Progress {
            package,
            stage,
            done,
            total,
        } => {
            Transaction::progress(emitter, &package, wire::activity(stage), done, total).await?;
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
            let state = wire::hook_state(state);
            Transaction::hook(emitter, &name, &description, state, &output).await?;
        }
        Event::Notice(n) => {
            let n = wire::notice(n);
            {
                let mut t = iface.get_mut().await;
                t.notices.push(n.clone());
                t.notices_changed(emitter).await?;
            }
            Transaction::notice(emitter, &n.package, n.kind, &n.path, &n.message).await?;
        }
    }
    Ok(())
}
