//! Starting a transaction and following it to its end through its signals. The signal match is
//! added before the method call, so not even a transaction that finishes at once is missed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use spk_dbus::{
    ChangeOptions, Kind, ManagerProxy, Notice, State, TRANSACTION_INTERFACE, TransactionProxy,
    TransactionSignal,
};
use zbus::zvariant::OwnedObjectPath;
use zbus::{MatchRule, MessageStream};

use crate::connect::Failure;
use crate::display::{Display, Transfer, human_bytes};
use crate::prompt::{self, Reply};

/// A line read at the terminal (`None` at the end of input).
type Answer = std::io::Result<Option<String>>;

/// What a finished transaction of `kind` did to its packages, for the summary line.
pub fn verb(kind: Kind) -> &'static str {
    match kind {
        Kind::Refresh => "refreshed",
        Kind::Install => "installed",
        Kind::Upgrade => "upgraded",
        Kind::Remove => "removed",
        Kind::Rollback => "rolled back",
        Kind::OfflineUpdate => "installed",
    }
}

/// How a transaction ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub path: OwnedObjectPath,
    pub state: State,
    pub error_name: String,
    pub error_message: String,
    pub done: Vec<(String, String)>,
    pub notices: Vec<Notice>,
    /// Where the streamed bytes came from.
    pub transfer: Transfer,
    /// Packages only fetched into the cache (download-only).
    pub fetched: Vec<String>,
    pub elapsed: Duration,
    /// It was joined while running (`monitor`): `elapsed` is the time followed.
    pub joined: bool,
}

impl Ended {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "transaction": self.path.as_str(),
            "state": self.state,
            "error-name": self.error_name,
            "error-message": self.error_message,
            "packages": self.done.iter().map(|(n, v)| serde_json::json!({"name": n, "version": v})).collect::<Vec<_>>(),
            "notices": self.notices.iter().map(|n| serde_json::json!({"package": n.package, "kind": n.kind.as_str(), "path": n.path, "message": n.message})).collect::<Vec<_>>(),
        })
    }

    pub fn succeeded(&self) -> bool {
        self.state == State::Finished
    }
}

/// Every transaction signal from now on (add this before calling a method or reading state).
pub async fn subscribe(conn: &zbus::Connection) -> Result<MessageStream, Failure> {
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(TRANSACTION_INTERFACE)
        .map_err(|e| Failure::failed(e.to_string()))?
        .build();
    Ok(MessageStream::for_match_rule(rule, conn, Some(4096)).await?)
}

pub async fn run(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    kind: Kind,
    names: &[String],
    options: &ChangeOptions,
    display: &mut Display,
) -> Result<Ended, Failure> {
    let mut signals = subscribe(conn).await?;
    // Catch Ctrl-C before the transaction exists: from then on it cancels the transaction
    // instead of killing spkctl and leaving the transaction running unwatched.
    let mut interrupts = std::pin::pin!(prompt::interrupts());
    let started = Instant::now();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let path = match kind {
        Kind::Refresh => manager.refresh(options).await?,
        Kind::Install => manager.install(&names, options).await?,
        Kind::Upgrade => manager.upgrade(&names, options).await?,
        Kind::Remove => manager.remove(&names, options).await?,
        Kind::Rollback => manager.rollback(&names, options).await?,
        // Applied by spkd at boot only (spk-offline-update), never asked for over the bus.
        Kind::OfflineUpdate => {
            return Err(Failure::failed(
                "a prepared update is installed at the next restart",
            ));
        }
    };
    let proxy = TransactionProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut done = Vec::new();
    let mut notices = Vec::new();
    // The count of packages comes from spkd's `waiting` announcements (names asked for may
    // be up to date already).
    display.follow(kind, 0);
    let mut overall = Overall::watch(conn, &path, display.has_bars()).await?;
    let mut tick = tokio::time::interval(TICK);
    let mut quiet = tokio::time::Instant::now() + QUIET;
    // The cancel question being asked: the line it waits for.
    let mut question: Option<std::pin::Pin<Box<dyn Future<Output = Answer>>>> = None;
    let finished = loop {
        let next = tokio::select! {
            next = signals.next() => {
                quiet = tokio::time::Instant::now() + QUIET;
                Ok(next)
            }
            // Measured from the last signal, not from each turn of the loop: the ticks
            // below come more often than that.
            () = tokio::time::sleep_until(quiet) => {
                quiet = tokio::time::Instant::now() + QUIET;
                Err(())
            }
            Some(()) = overall.changes.next() => {
                overall.show(display);
                continue;
            }
            _ = tick.tick() => {
                display.tick();
                continue;
            }
            Some(()) = interrupts.next() => {
                if question.take().is_some() {
                    // Ctrl-C again instead of an answer: cancel without asking twice.
                    eprintln!("\nCancelling…");
                    display.show();
                    proxy.cancel().await?;
                } else if std::io::stdin().is_terminal() {
                    // Ask on a line of its own, the bars out of the way; they keep following
                    // spkd's signals meanwhile and come back with current figures.
                    display.hide();
                    eprint!("\rCancel the running transaction? [y/N] ");
                    let _ = std::io::stderr().flush();
                    question = Some(Box::pin(prompt::read_line()));
                } else {
                    // A script's Ctrl-C (SIGINT without a terminal) cancels at once.
                    proxy.cancel().await?;
                }
                continue;
            }
            line = async { question.as_mut().expect("asking").await }, if question.is_some() => {
                question = None;
                if prompt::answer(line.ok().flatten().as_deref(), false) == Reply::Yes {
                    eprintln!("Cancelling…");
                    display.show();
                    proxy.cancel().await?;
                } else {
                    display.show();
                }
                continue;
            }
        };
        let msg = match next {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err(Failure::unreachable("the bus connection closed")),
            Err(_) => {
                // Quiet for a while: make sure the daemon is still there.
                proxy.state().await.map_err(|e| {
                    Failure::unreachable(format!("spkd went away during the transaction: {e}"))
                })?;
                continue;
            }
        };
        if msg.header().path().map(|p| p.as_str()) != Some(path.as_str()) {
            continue;
        }
        if let Some(signal) = TransactionSignal::from_message(&msg)
            && let Some(finished) = shown(display, kind, signal, &mut done, &mut notices)
        {
            break finished;
        }
    };
    if question.take().is_some() {
        // Ended before the question was answered: the question no longer stands.
        eprintln!();
    }
    overall.show(display);
    let ended = ended(
        &proxy, display, path, finished, done, notices, started, false,
    )
    .await;
    Ok(ended)
}

/// After this long without a signal, spkctl checks that the transaction (and spkd) is there.
pub const QUIET: Duration = Duration::from_secs(2);

/// How often the figures that change with time alone are redrawn.
pub const TICK: Duration = Duration::from_millis(500);

/// A transaction signal onto `display`, `done` and `notices`; its end, when it is `Finished`.
pub fn shown(
    display: &mut Display,
    kind: Kind,
    signal: TransactionSignal,
    done: &mut Vec<(String, String)>,
    notices: &mut Vec<Notice>,
) -> Option<(State, String, String)> {
    match signal {
        TransactionSignal::Progress {
            package,
            activity,
            done,
            total,
        } => display.progress(&package, activity, done, total),
        TransactionSignal::PackageDone { name, version } => {
            display.package_done(verb(kind), &name, &version);
            done.push((name, version));
        }
        TransactionSignal::Hook {
            description,
            state,
            output,
            ..
        } => display.hook(&description, state, &output),
        TransactionSignal::Notice(n) => notices.push(n),
        TransactionSignal::Finished {
            state,
            error_name,
            message,
        } => return Some((state, error_name, message)),
    }
    None
}

/// The account of a transaction that ended as `finished` says, its display finished.
#[allow(clippy::too_many_arguments)]
pub async fn ended(
    proxy: &TransactionProxy<'_>,
    display: &mut Display,
    path: OwnedObjectPath,
    finished: (State, String, String),
    done: Vec<(String, String)>,
    notices: Vec<Notice>,
    started: Instant,
    joined: bool,
) -> Ended {
    display.finish(finished.0 == State::Finished);
    let bytes_total = proxy.bytes_total().await.unwrap_or(0);
    Ended {
        path,
        state: finished.0,
        error_name: finished.1,
        error_message: finished.2,
        done,
        notices,
        transfer: display.transfer(bytes_total),
        fetched: display.fetched(),
        elapsed: started.elapsed(),
        joined,
    }
}

/// The transaction's own `Percentage`, `BytesDone` and `BytesTotal`, followed as spkd announces
/// their changes (PropertiesChanged, kept by a caching proxy): no polling. Only for bars.
pub struct Overall {
    proxy: Option<TransactionProxy<'static>>,
    pub changes: BoxStream<'static, ()>,
}

impl Overall {
    pub async fn watch(
        conn: &zbus::Connection,
        path: &OwnedObjectPath,
        on: bool,
    ) -> Result<Overall, Failure> {
        if !on {
            return Ok(Overall {
                proxy: None,
                changes: futures_util::stream::pending().boxed(),
            });
        }
        let proxy = TransactionProxy::builder(conn)
            .path(path.clone())?
            .build()
            .await?;
        let changes = futures_util::stream::select(
            proxy.receive_percentage_changed().await.map(|_| ()),
            proxy.receive_bytes_done_changed().await.map(|_| ()),
        )
        .boxed();
        Ok(Overall {
            proxy: Some(proxy),
            changes,
        })
    }

    /// The figures as last announced onto `display`.
    pub fn show(&self, display: &mut Display) {
        if let Some(p) = &self.proxy
            && let (Ok(Some(pct)), Ok(Some(done)), Ok(Some(total))) = (
                p.cached_percentage(),
                p.cached_bytes_done(),
                p.cached_bytes_total(),
            )
        {
            display.overall(pct, done, total);
        }
    }
}

/// The one line that closes a transaction for a person: what it did to which packages, in how
/// long, and where their bytes came from (the same figures as the plan's "Download").
pub fn summary(kind: Kind, ended: &Ended) -> String {
    let secs = ended.elapsed.as_secs_f64();
    let time = if ended.joined {
        format!(", followed for {secs:.1} s")
    } else {
        format!(" in {secs:.1} s")
    };
    if !ended.succeeded() {
        return format!("{} after {secs:.1} s", ended.state);
    }
    let (verb, list): (&str, Vec<String>) = if !ended.done.is_empty() {
        (
            verb(kind),
            ended.done.iter().map(|(n, v)| format!("{n} {v}")).collect(),
        )
    } else if !ended.fetched.is_empty() {
        ("fetched", ended.fetched.clone())
    } else {
        return match kind {
            Kind::Remove => "Nothing to remove.".to_owned(),
            _ => "Nothing to do: everything requested is installed and up to date.".to_owned(),
        };
    };
    let mut line = format!(
        "{} {} package{} ({}){time}",
        capitalize(verb),
        list.len(),
        if list.len() == 1 { "" } else { "s" },
        list.join(", ")
    );
    let Transfer { downloaded, cached } = ended.transfer;
    if kind != Kind::Remove && (downloaded > 0 || cached > 0 || kind != Kind::Rollback) {
        line.push_str(&format!(", {} downloaded", human_bytes(downloaded)));
        if cached > 0 {
            line.push_str(&format!(", {} from cache", human_bytes(cached)));
        }
    }
    line.push('.');
    line
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
