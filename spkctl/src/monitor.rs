//! `spkctl monitor` and `spkctl cancel`: attach to transactions that are already running,
//! whoever started them (another spkctl, the applet, a boot check).

use std::time::Instant;

use futures_util::StreamExt;
use spk_dbus::{Kind, ManagerProxy, Notice, State, TransactionProxy, TransactionSignal};
use zbus::zvariant::OwnedObjectPath;

use crate::connect::Failure;
use crate::display::Display;
use crate::transaction::{self, Overall};

async fn proxy<'a>(
    conn: &zbus::Connection,
    path: &OwnedObjectPath,
) -> Result<TransactionProxy<'a>, Failure> {
    Ok(TransactionProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

/// Running (not yet final) transactions.
async fn running(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
) -> Result<Vec<(OwnedObjectPath, TransactionProxy<'static>)>, Failure> {
    let mut out = Vec::new();
    for path in manager.get_transactions().await? {
        let t = proxy(conn, &path).await?;
        // A transaction that vanished meanwhile is simply not running.
        if let Ok(state) = t.state().await
            && !state.is_final()
        {
            out.push((path, t));
        }
    }
    Ok(out)
}

/// The object path of transaction `id`: its number (as `spkctl history` shows it) or its path.
fn transaction_path(id: &str) -> Result<OwnedObjectPath, Failure> {
    let path = if id.starts_with('/') {
        id.to_owned()
    } else if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}/{id}", spk_dbus::TRANSACTIONS_PATH)
    } else {
        String::new()
    };
    OwnedObjectPath::try_from(path)
        .ok()
        .filter(|p| spk_dbus::is_transaction_path(p.as_str()))
        .ok_or_else(|| Failure {
            code: 2,
            message: format!("'{id}' is not a transaction number or path"),
        })
}

/// Transaction `id` (number or path), still on the bus (running, or finished within the last
/// minutes).
async fn named(
    conn: &zbus::Connection,
    id: &str,
) -> Result<(OwnedObjectPath, TransactionProxy<'static>), Failure> {
    let path = transaction_path(id)?;
    let t = proxy(conn, &path).await?;
    if t.state().await.is_err() {
        return Err(Failure::failed(format!(
            "transaction {id} is not running (a finished one leaves the bus after a few \
             minutes; `spkctl history` keeps it)"
        )));
    }
    Ok((path, t))
}

/// One transaction being followed.
struct Follow {
    path: OwnedObjectPath,
    proxy: TransactionProxy<'static>,
    kind: Kind,
    display: Display,
    done: Vec<(String, String)>,
    notices: Vec<Notice>,
    started: Instant,
    over: bool,
}

/// `transaction 7`: how a person names the transaction at `path`.
fn label(path: &OwnedObjectPath) -> String {
    let n = path.as_str().rsplit('/').next().unwrap_or_default();
    format!("transaction {n}")
}

/// `upgrade plasma, qt6`.
fn what(kind: Kind, packages: &[String]) -> String {
    let what = if packages.is_empty() {
        match kind {
            Kind::Upgrade => " of everything upgradable".to_owned(),
            _ => String::new(),
        }
    } else {
        format!(" {}", packages.join(", "))
    };
    format!("{kind}{what}")
}

/// Follow the running transactions to their ends, each shown as the command that started it
/// shows it (the first with bars on a terminal, others in plain lines), each closed by its
/// summary line.
pub async fn monitor(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    id: Option<&str>,
    json: bool,
    display: &mut Display,
) -> Result<u8, Failure> {
    // Subscribe first, then look: nothing that finishes in between is missed.
    let mut signals = transaction::subscribe(conn).await?;
    let active = match id {
        Some(id) => vec![named(conn, id).await?],
        None => running(conn, manager).await?,
    };
    if active.is_empty() {
        if json {
            println!("[]");
        } else {
            println!("No transaction is running.");
        }
        return Ok(0);
    }
    let mut follows = Vec::new();
    let mut results = Vec::new();
    let mut failed = false;
    for (path, proxy) in active {
        // A transaction that vanished meanwhile is not followed.
        let Ok(kind) = proxy.kind().await else {
            continue;
        };
        let packages = proxy.packages().await.unwrap_or_default();
        let uid = proxy.requester().await.unwrap_or(0);
        let what = what(kind, &packages);
        // Over already (it stays on the bus a while): how it ended is all there is to show.
        if let Ok(state) = proxy.state().await
            && state.is_final()
        {
            let message = proxy.error_message().await.unwrap_or_default();
            failed |= state != State::Finished;
            if json {
                results.push(row(&path, state, &message));
            } else if message.is_empty() {
                println!("The {} ({what}, uid {uid}) has {state}.", label(&path));
            } else {
                println!(
                    "The {} ({what}, uid {uid}) has {state}: {message}",
                    label(&path)
                );
            }
            continue;
        }
        if !json {
            println!("Following {}: {what} (uid {uid})", label(&path));
        }
        // One set of bars on the screen: the first transaction's.
        let mut display = if follows.is_empty() {
            std::mem::replace(display, Display::quiet())
        } else {
            Display::new(json, true)
        };
        display.follow(kind, packages.len());
        follows.push(Follow {
            path,
            proxy,
            kind,
            display,
            done: Vec::new(),
            notices: Vec::new(),
            started: Instant::now(),
            over: false,
        });
    }
    let Some(first) = follows.first_mut() else {
        if json {
            println!("{}", serde_json::Value::Array(results));
        }
        return Ok(if failed { 1 } else { 0 });
    };
    let mut overall = Overall::watch(conn, &first.path, first.display.has_bars()).await?;
    overall.show(&mut first.display);
    let mut tick = tokio::time::interval(transaction::TICK);
    let mut quiet = tokio::time::Instant::now() + transaction::QUIET;
    while follows.iter().any(|f| !f.over) {
        let next = tokio::select! {
            next = signals.next() => {
                quiet = tokio::time::Instant::now() + transaction::QUIET;
                Ok(next)
            }
            // Measured from the last signal, not from each turn of the loop: the ticks
            // below come more often than that.
            () = tokio::time::sleep_until(quiet) => {
                quiet = tokio::time::Instant::now() + transaction::QUIET;
                Err(())
            }
            Some(()) = overall.changes.next() => {
                overall.show(&mut follows[0].display);
                continue;
            }
            _ = tick.tick() => {
                for f in &mut follows {
                    f.display.tick();
                }
                continue;
            }
        };
        let msg = match next {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err(Failure::unreachable("the connection closed")),
            Err(_) => {
                // Re-check: a transaction may have ended before we subscribed.
                for f in follows.iter_mut().filter(|f| !f.over) {
                    if let Ok(state) = f.proxy.state().await
                        && state.is_final()
                    {
                        let name = f.proxy.error_name().await.unwrap_or_default();
                        let message = f.proxy.error_message().await.unwrap_or_default();
                        failed |= state != State::Finished;
                        close(f, (state, name, message), json, &mut results).await;
                    }
                }
                continue;
            }
        };
        let header = msg.header();
        let Some(f) = follows
            .iter_mut()
            .find(|f| !f.over && header.path().is_some_and(|p| p.as_str() == f.path.as_str()))
        else {
            continue;
        };
        if let Some(signal) = TransactionSignal::from_message(&msg)
            && let Some(finished) =
                transaction::shown(&mut f.display, f.kind, signal, &mut f.done, &mut f.notices)
        {
            if f.display.has_bars() {
                overall.show(&mut f.display);
            }
            failed |= finished.0 != State::Finished;
            close(f, finished, json, &mut results).await;
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(if failed { 1 } else { 0 })
}

/// A transaction's line of `monitor --json`.
fn row(path: &OwnedObjectPath, state: State, message: &str) -> serde_json::Value {
    serde_json::json!({
        "transaction": path.as_str(),
        "state": state.as_str(),
        "error-message": message,
    })
}

/// `f` ended as `finished` says: its summary line (or JSON row).
async fn close(
    f: &mut Follow,
    finished: (State, String, String),
    json: bool,
    results: &mut Vec<serde_json::Value>,
) {
    f.over = true;
    let ended = transaction::ended(
        &f.proxy,
        &mut f.display,
        f.path.clone(),
        finished,
        std::mem::take(&mut f.done),
        std::mem::take(&mut f.notices),
        f.started,
        true,
    )
    .await;
    if json {
        results.push(row(&ended.path, ended.state, &ended.error_message));
    } else if ended.succeeded() {
        println!(
            "{}",
            crate::packages::fit(&transaction::summary(f.kind, &ended))
        );
    } else if ended.error_message.is_empty() {
        println!("The {} {}.", label(&f.path), ended.state);
    } else {
        println!(
            "The {} {}: {}",
            label(&f.path),
            ended.state,
            ended.error_message
        );
    }
}

pub async fn cancel(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    id: Option<&str>,
) -> Result<u8, Failure> {
    let targets: Vec<OwnedObjectPath> = match id {
        Some(id) => vec![transaction_path(id)?],
        None => running(conn, manager)
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect(),
    };
    if targets.is_empty() {
        println!("No transaction is running.");
        return Ok(0);
    }
    for path in targets {
        proxy(conn, &path).await?.cancel().await.map_err(|e| {
            let f = Failure::from(e);
            Failure::failed(format!("cannot cancel {path}: {}", f.message))
        })?;
        println!("Cancelling {}", label(&path));
    }
    Ok(0)
}
