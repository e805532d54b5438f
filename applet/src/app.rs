//! The notifier's main loop: wires spkd's events into the model and the model's answers into
//! the tray item, notifications and job views.
//!
//! One task owns everything and handles one input at a time — an spkd event, a menu click, a
//! notification action — so the model needs no locks. Calls that may wait on the user (polkit's
//! password prompt for `Upgrade` or `Refresh`) run in their own tasks and report failures back.
//! When the spkd bus itself goes away the loop reconnects with a growing delay.
//!
//! The settings file is read once at start; what the model wants remembered between logins is
//! written to the state file whenever it changes.

use std::path::PathBuf;
use std::time::Duration;

use ksni::TrayMethods;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::Error;
use crate::jobview::{JobView, JobViews};
use crate::model::{Effect, Model, Update, View};
use crate::notify::Notices;
use crate::offline::{InstallWhen, Remembered};
use crate::restart::{Asked, ask_session_to_restart};
use crate::settings;
use crate::spkd::{self, Spkd, apply_properties};
use crate::tray::{Command, UpdatesTray};
use crate::watch::{SpkdEvent, Watch};

/// First and longest delay between attempts to reach the spkd bus.
const RECONNECT_MIN: Duration = Duration::from_secs(2);
const RECONNECT_MAX: Duration = Duration::from_secs(60);

/// How the notifier was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bus spkd is on; `None` = the system bus.
    pub bus: Option<String>,
}

/// The answer to a call spkd made in its own task.
#[derive(Debug)]
enum Reply {
    /// `Upgrade` (to install `when`) created the transaction at `path`, or (`None`) did not.
    Upgrade(Option<String>, InstallWhen),
    /// Something to tell the user.
    Inform { summary: &'static str, body: String },
    /// A call failed: tell the user.
    Failed {
        summary: &'static str,
        message: String,
    },
}

/// Everything the loop owns besides its input streams.
struct App {
    model: Model,
    tray: ksni::Handle<UpdatesTray>,
    rendered: View,
    notices: Notices,
    job_views: JobViews,
    job_view: Option<JobView>,
    spkd: Option<Spkd>,
    replies: mpsc::UnboundedSender<Reply>,
    session: zbus::Connection,
    /// The state file, and what it holds.
    state_path: Option<PathBuf>,
    saved: Remembered,
}

/// Run until SIGTERM or SIGINT.
pub async fn run(options: Options) -> Result<(), Error> {
    let session = zbus::Connection::session()
        .await
        .map_err(Error::connect("session"))?;
    let settings = match settings::settings_path() {
        Some(path) => settings::load_settings(&path),
        None => settings::Settings::default(),
    };
    let state_path = settings::state_path();
    let saved = state_path
        .as_deref()
        .map(settings::load_remembered)
        .unwrap_or_default();
    tracing::info!(?settings, state = ?state_path, ?saved, "settings read");
    let model = Model::new(settings.default_install, saved.clone());
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    let rendered = model.view();
    let tray = UpdatesTray::new(rendered.clone(), commands_tx)
        .assume_sni_available(true)
        .spawn()
        .await?;
    let mut app = App {
        model,
        tray,
        rendered,
        notices: Notices::new(&session).await?,
        job_views: JobViews::new(&session),
        job_view: None,
        spkd: None,
        replies: replies_tx,
        session,
        state_path,
        saved,
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Runtime)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Runtime)?;

    let mut watch: Option<Watch> = None;
    let mut retry_at = Instant::now();
    let mut retry_delay = RECONNECT_MIN;
    loop {
        if watch.is_none() && Instant::now() >= retry_at {
            match app.connect(options.bus.as_deref()).await {
                Ok(w) => {
                    watch = Some(w);
                    retry_delay = RECONNECT_MIN;
                }
                Err(e @ Error::BusAddress { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "spkd's bus is unreachable; retrying in {retry_delay:?}");
                    retry_at = Instant::now() + retry_delay;
                    retry_delay = (retry_delay * 2).min(RECONNECT_MAX);
                }
            }
            app.settle().await;
        }
        tokio::select! {
            event = next_event(&mut watch) => match event {
                Some(event) => app.on_spkd(event).await,
                None => {
                    tracing::warn!("lost the connection to spkd's bus");
                    watch = None;
                    app.spkd = None;
                    let effects = app.model.daemon_vanished();
                    app.apply(effects).await;
                    retry_at = Instant::now() + retry_delay;
                }
            },
            () = tokio::time::sleep_until(retry_at), if watch.is_none() => {}
            Some(command) = commands.recv() => app.on_command(command).await,
            Some(command) = app.notices.action() => app.on_command(command).await,
            () = cancel_requested(&mut app.job_view) => app.on_command(Command::Cancel).await,
            Some(reply) = replies.recv() => app.on_reply(reply).await,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        app.settle().await;
    }
    tracing::info!("stopping");
    app.tray.shutdown().await;
    Ok(())
}

/// The next cancel request of the job view; never resolves while there is none.
async fn cancel_requested(view: &mut Option<JobView>) {
    match view {
        Some(view) => view.cancel_requested().await,
        None => std::future::pending().await,
    }
}

/// The next event of `watch`; never resolves while there is none.
async fn next_event(watch: &mut Option<Watch>) -> Option<SpkdEvent> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

impl App {
    /// Connect to spkd's bus, subscribe, and load spkd's state if it runs.
    async fn connect(&mut self, bus: Option<&str>) -> Result<Watch, Error> {
        let conn = spkd::connect(bus).await?;
        let watch = Watch::subscribe(&conn).await?;
        self.spkd = Some(Spkd::new(&conn).await?);
        if let Some(owner) = watch.owner() {
            tracing::info!(%owner, "spkd is running");
            self.model.daemon_appeared();
            self.reload().await;
        } else {
            tracing::info!("spkd is not running");
        }
        Ok(watch)
    }

    async fn on_spkd(&mut self, event: SpkdEvent) {
        tracing::debug!(?event, "from spkd");
        match event {
            SpkdEvent::OwnerChanged(Some(owner)) => {
                tracing::info!(%owner, "spkd started");
                if self.model.daemon_present() {
                    let effects = self.model.daemon_vanished();
                    self.apply(effects).await;
                }
                self.model.daemon_appeared();
                self.reload().await;
            }
            SpkdEvent::OwnerChanged(None) => {
                tracing::info!("spkd stopped");
                let effects = self.model.daemon_vanished();
                self.apply(effects).await;
            }
            SpkdEvent::UpdatesAvailable { count, names } => {
                tracing::info!(count, ?names, "spkd announced updates");
                if !self.reload_updates().await {
                    // Without ListPackages, the signal's names are all we know.
                    let updates = names
                        .into_iter()
                        .map(|name| Update {
                            name,
                            installed_version: String::new(),
                            available_version: String::new(),
                            system: false,
                        })
                        .collect();
                    let effects = self.model.set_updates(count, updates);
                    self.apply(effects).await;
                }
            }
            SpkdEvent::ManagerChanged { changed } => {
                if changed.iter().any(|p| p == "UpdateCount") {
                    self.reload_updates().await;
                }
                if changed.iter().any(|p| p == "PreparedUpdate") {
                    self.reload_prepared().await;
                }
                if changed.iter().any(|p| p == "Busy") && !self.model.is_following_job() {
                    self.reload_transactions().await;
                }
            }
            SpkdEvent::TransactionChanged { path, changed } => {
                let followed = self.model.job().filter(|j| j.path == path).cloned();
                let job = match followed {
                    Some(mut job) => {
                        apply_properties(&mut job, &changed);
                        job
                    }
                    None if self.model.follows(&path) || self.model.is_following_job() => return,
                    None => match self.read_transaction(&path).await {
                        Some(job) => job,
                        None => return,
                    },
                };
                let effects = self.model.transaction_seen(job);
                self.apply(effects).await;
            }
            SpkdEvent::Progress {
                path,
                package,
                activity,
                done,
                total,
            } => {
                let effects = self
                    .model
                    .package_progress(&path, &package, activity, done, total);
                self.apply(effects).await;
            }
            SpkdEvent::PackageDone {
                path,
                name,
                version,
            } => {
                let effects = self.model.package_done(&path, &name, &version);
                self.apply(effects).await;
            }
            SpkdEvent::Notice { path, message } => self.model.notice(&path, &message),
            SpkdEvent::TransactionFinished {
                path,
                state,
                message,
            } => {
                let id = spk_dbus::transaction_id(&path);
                tracing::info!(?id, %state, %message, "transaction finished");
                let effects = self.model.transaction_finished(&path, state, &message);
                self.apply(effects).await;
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        tracing::info!(?command, "user command");
        if command == Command::Details {
            self.notices
                .details(
                    self.model.count(),
                    self.model.updates(),
                    self.model.install_first(),
                )
                .await;
            return;
        }
        if command == Command::RestartAndInstall {
            let session = self.session.clone();
            let replies = self.replies.clone();
            // Plasma's dialog may take its time to answer.
            tokio::spawn(async move {
                let reply = match ask_session_to_restart(&session).await {
                    Ok(Asked::Nobody) => Reply::Inform {
                        summary: "Restart the computer to install the updates",
                        body: "This desktop cannot restart the computer for you. The prepared \
                               updates are installed at the next restart, before the desktop \
                               starts."
                            .to_owned(),
                    },
                    Ok(asked) => {
                        tracing::info!(?asked, "asked the session to restart");
                        return;
                    }
                    Err(e) => Reply::Failed {
                        summary: "Could not restart the computer",
                        message: e.to_string(),
                    },
                };
                let _ = replies.send(reply);
            });
            return;
        }
        let Some(spkd) = self.spkd.clone() else {
            self.notices
                .inform(
                    "Update service not running",
                    "spkd cannot be reached on the system bus.",
                )
                .await;
            return;
        };
        let replies = self.replies.clone();
        let failed = move |summary, e: Error| {
            let _ = replies.send(Reply::Failed {
                summary,
                message: e.to_string(),
            });
        };
        // In their own tasks: polkit may keep a call waiting for the user's password.
        match command {
            Command::Install(when) => {
                self.model.request_sent();
                let replies = self.replies.clone();
                tokio::spawn(async move {
                    let path = match spkd.upgrade_all(when).await {
                        Ok(path) => {
                            let id = spk_dbus::transaction_id(path.as_str());
                            tracing::info!(?id, ?when, "spkd started the upgrade");
                            Some(path.to_string())
                        }
                        Err(e) => {
                            failed("Could not start the update", e);
                            None
                        }
                    };
                    let _ = replies.send(Reply::Upgrade(path, when));
                });
            }
            Command::CancelPrepared => {
                tokio::spawn(async move {
                    match spkd.cancel_prepared().await {
                        Ok(discarded) => tracing::info!(discarded, "cancelled the prepared update"),
                        Err(e) => failed("Could not cancel the prepared update", e),
                    }
                });
            }
            Command::Check => {
                tokio::spawn(async move {
                    match spkd.refresh().await {
                        Ok(path) => {
                            let id = spk_dbus::transaction_id(path.as_str());
                            tracing::info!(?id, "spkd started a check");
                        }
                        Err(e) => failed("Could not check for updates", e),
                    }
                });
            }
            Command::Cancel => {
                let Some(path) = self.model.cancel_requested() else {
                    return;
                };
                tokio::spawn(async move {
                    match spkd.cancel(&path).await {
                        Ok(()) => {
                            let id = spk_dbus::transaction_id(&path);
                            tracing::info!(?id, "asked spkd to cancel");
                        }
                        Err(e) => failed("Could not cancel", e),
                    }
                });
            }
            Command::Details | Command::RestartAndInstall => {}
        }
    }

    async fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Upgrade(path, when) => {
                let effects = self.model.request_answered(path.as_deref(), when);
                self.apply(effects).await;
            }
            Reply::Inform { summary, body } => self.notices.inform(summary, &body).await,
            Reply::Failed { summary, message } => {
                tracing::warn!(summary, %message, "call failed");
                self.notices.inform(summary, &message).await;
            }
        }
    }

    /// Everything from spkd anew: updates, the result of the boot's update if it was not told
    /// yet (before the prepared update, whose remembered date that notice may need),
    /// the prepared update, transactions.
    async fn reload(&mut self) {
        self.reload_updates().await;
        self.read_history().await;
        self.reload_prepared().await;
        self.reload_transactions().await;
    }

    /// `PreparedUpdate` into the model.
    async fn reload_prepared(&mut self) {
        let Some(spkd) = &self.spkd else {
            return;
        };
        match spkd.prepared().await {
            Ok(row) => self.model.set_prepared(row),
            Err(e) => tracing::warn!(error = %e, "could not read spkd's prepared update"),
        }
    }

    /// The latest history into the model: an update installed at restart is told once.
    async fn read_history(&mut self) {
        let Some(spkd) = &self.spkd else {
            return;
        };
        match spkd.recent_history().await {
            Ok(history) => {
                let effects = self.model.history_read(&history);
                if effects.is_empty() {
                    tracing::info!(
                        told = ?self.model.remembered().announced_boot_update,
                        "no update installed at restart to tell"
                    );
                }
                self.apply(effects).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not read spkd's history"),
        }
    }

    /// `UpdateCount` + `ListPackages` into the model; `false` when spkd could not be read.
    async fn reload_updates(&mut self) -> bool {
        let Some(spkd) = &self.spkd else {
            return false;
        };
        match spkd.updates().await {
            Ok((count, updates)) => {
                let effects = self.model.set_updates(count, updates);
                self.apply(effects).await;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read spkd's updates");
                false
            }
        }
    }

    /// `GetTransactions` into the model: a transaction started before we looked is followed too.
    async fn reload_transactions(&mut self) {
        let Some(spkd) = &self.spkd else {
            return;
        };
        match spkd.transactions().await {
            Ok(jobs) => {
                for job in jobs.into_iter().filter(|j| !j.is_over()) {
                    let effects = self.model.transaction_seen(job);
                    self.apply(effects).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list spkd's transactions"),
        }
    }

    async fn read_transaction(&self, path: &str) -> Option<crate::model::Job> {
        let spkd = self.spkd.as_ref()?;
        match spkd.transaction(path).await {
            Ok(job) => Some(job),
            Err(e) => {
                tracing::debug!(%path, error = %e, "could not read a transaction");
                None
            }
        }
    }

    /// Carry out the model's effects.
    async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Announce {
                    count,
                    updates,
                    first,
                } => {
                    self.notices.announce(count, &updates, first).await;
                }
                Effect::Inform(report) => {
                    self.notices.inform(&report.summary, &report.body).await;
                }
                Effect::Withdraw => self.notices.withdraw().await,
                Effect::JobStarted { title, packages } => {
                    self.job_view = self.job_views.start(&title, &packages).await;
                    if self.job_view.is_some() {
                        // Stale once they are being installed; without a job tracker the
                        // progress notice takes its place.
                        self.notices.withdraw().await;
                    }
                }
                Effect::JobProgress {
                    title,
                    percent,
                    progress,
                    activity,
                } => match &mut self.job_view {
                    Some(view) => view.progress(percent, &activity).await,
                    None => {
                        let body = if activity.is_empty() {
                            progress
                        } else {
                            format!("{progress}\n{activity}")
                        };
                        self.notices.progress(&title, &body, percent).await;
                    }
                },
                // The job tracker shows how its job ended.
                Effect::Report(report) => {
                    if self.job_view.is_none() {
                        self.notices.inform(&report.summary, &report.body).await;
                    }
                }
                Effect::JobEnded { error } => match self.job_view.take() {
                    Some(view) => view.finish(error.as_deref()).await,
                    None => self.notices.end_progress().await,
                },
            }
        }
    }

    /// After each input: show the model, and keep what it remembers (the session may end
    /// before the next input).
    async fn settle(&mut self) {
        self.render().await;
        self.remember();
    }

    /// Write what the model remembers to the state file (when it changed).
    fn remember(&mut self) {
        let now = self.model.remembered();
        if *now == self.saved {
            return;
        }
        self.saved = now.clone();
        let Some(path) = &self.state_path else {
            return;
        };
        match settings::save_remembered(path, now) {
            Ok(()) => tracing::debug!(path = %path.display(), remembered = ?now, "state saved"),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot save the state"),
        }
    }

    /// Show the model on the tray item (when it changed).
    async fn render(&mut self) {
        let view = self.model.view();
        if view != self.rendered {
            tracing::debug!(?view, "tray item");
            self.rendered = view.clone();
            self.tray.update(|tray| tray.set_view(view)).await;
        }
    }
}
