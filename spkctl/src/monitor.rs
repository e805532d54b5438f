//! `spkctl monitor` and `spkctl cancel`: attach to transactions that are already running,
//! whoever started them (another spkctl, the applet, a boot check).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use spk_dbus::{ManagerProxy, State, TransactionProxy, TransactionSignal};
use zbus::zvariant::OwnedObjectPath;

use crate::connect::Failure;
use crate::display::Display;
use crate::transaction;

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
    let mut waiting: HashSet<String> = HashSet::new();
    for (path, t) in &active {
        let kind = t.kind().await.map(|k| k.as_str()).unwrap_or_default();
        let packages = t.packages().await.unwrap_or_default().join(" ");
        let uid = t.requester().await.unwrap_or(0);
        if !json {
            println!("Following {path}: {kind} {packages} (uid {uid})");
        }
        waiting.insert(path.to_string());
    }
    let mut results = Vec::new();
    let mut failed = false;
    while !waiting.is_empty() {
        let msg = match tokio::time::timeout(Duration::from_secs(2), signals.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err(Failure::unreachable("the connection closed")),
            Err(_) => {
                // Re-check: a transaction may have ended before we subscribed.
                for (path, t) in &active {
                    if let Ok(state) = t.state().await
                        && state.is_final()
                        && waiting.remove(path.as_str())
                    {
                        let message = t.error_message().await.unwrap_or_default();
                        failed |= state != State::Finished;
                        report(json, &mut results, path.as_str(), state, &message);
                    }
                }
                continue;
            }
        };
        let header = msg.header();
        let Some(path) = header.path().map(|p| p.to_string()) else {
            continue;
        };
        if !waiting.contains(&path) {
            continue;
        }
        match TransactionSignal::from_message(&msg) {
            Some(TransactionSignal::Progress {
                package,
                activity,
                done,
                total,
            }) => display.progress(&package, activity, done, total),
            Some(TransactionSignal::PackageDone { name, version }) => {
                display.package_done("done:", &name, &version);
            }
            Some(TransactionSignal::Finished { state, message, .. }) => {
                waiting.remove(&path);
                display.finish();
                failed |= state != State::Finished;
                report(json, &mut results, &path, state, &message);
            }
            Some(TransactionSignal::Hook {
                description,
                state,
                output,
                ..
            }) => display.hook(&description, state, &output),
            Some(TransactionSignal::Notice(_)) | None => {}
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(if failed { 1 } else { 0 })
}

fn report(
    json: bool,
    results: &mut Vec<serde_json::Value>,
    path: &str,
    state: State,
    message: &str,
) {
    if json {
        results.push(
            serde_json::json!({"transaction": path, "state": state.as_str(), "error-message": message}),
        );
    } else if message.is_empty() {
        println!("{path}: {state}");
    } else {
        println!("{path}: {state}: {message}");
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
        println!("Cancelling {path}");
    }
    Ok(0)
}
