//! How long spkd takes to answer a property read while it works: waits for a transaction on the
//! bus, then reads its `Percentage` (`org.freedesktop.DBus.Properties.Get`) every
//! `--interval-ms` until it finishes, and writes each round trip in microseconds, one a line.
//! Used by `bench/latency`; plain method calls by name, so it measures any spkd, old or new.
//!
//! `bus_latency --bus ADDRESS --out FILE [--interval-ms 10] [--wait-s 60]`

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::StreamExt;
use spk_dbus::{
    BUS_NAME, MANAGER_INTERFACE as MANAGER, MANAGER_PATH, State,
    TRANSACTION_INTERFACE as TRANSACTION,
};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{Connection, MatchRule, MessageStream};

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

struct Args {
    bus: String,
    out: String,
    interval: Duration,
    wait: Duration,
}

fn args() -> Result<Args, String> {
    let mut bus = None;
    let mut out = None;
    let mut interval = Duration::from_millis(10);
    let mut wait = Duration::from_secs(60);
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bus" => bus = Some(value()?),
            "--out" => out = Some(value()?),
            "--interval-ms" => {
                interval = Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--wait-s" => wait = Duration::from_secs(value()?.parse().map_err(|e| format!("{e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        bus: bus.ok_or("--bus ADDRESS is required")?,
        out: out.ok_or("--out FILE is required")?,
        interval,
        wait,
    })
}

async fn get(conn: &Connection, path: &str, iface: &str, name: &str) -> zbus::Result<OwnedValue> {
    conn.call_method(
        Some(BUS_NAME),
        path,
        Some(PROPERTIES),
        "Get",
        &(iface, name),
    )
    .await?
    .body()
    .deserialize()
}

/// The first transaction that is not over, once one is on the bus.
async fn running_transaction(conn: &Connection, wait: Duration) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    loop {
        let paths: Vec<OwnedObjectPath> = conn
            .call_method(
                Some(BUS_NAME),
                MANAGER_PATH,
                Some(MANAGER),
                "GetTransactions",
                &(),
            )
            .await
            .map_err(|e| format!("GetTransactions: {e}"))?
            .body()
            .deserialize()
            .map_err(|e| format!("GetTransactions: {e}"))?;
        for path in paths {
            if let Ok(state) = get(conn, path.as_str(), TRANSACTION, "State").await
                && let Ok(state) = State::try_from(state)
                && !state.is_final()
            {
                return Ok(path.to_string());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no transaction started within {wait:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(args: Args) -> Result<(), String> {
    let conn = zbus::connection::Builder::address(args.bus.as_str())
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.bus))?;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(TRANSACTION)
        .and_then(|b| b.member("Finished"))
        .map_err(|e| e.to_string())?
        .build();
    let mut finished = MessageStream::for_match_rule(rule, &conn, Some(64))
        .await
        .map_err(|e| e.to_string())?;
    let path = running_transaction(&conn, args.wait).await?;
    let mut samples = Vec::new();
    loop {
        let started = Instant::now();
        get(&conn, &path, TRANSACTION, "Percentage")
            .await
            .map_err(|e| format!("Get Percentage of {path}: {e}"))?;
        samples.push(started.elapsed().as_micros());
        let over = loop {
            match finished.next().now_or_never() {
                Some(Some(Ok(msg))) if msg.header().path().map(|p| p.as_str()) == Some(&path) => {
                    break true;
                }
                Some(Some(Ok(_))) => continue,
                _ => break false,
            }
        };
        if over {
            break;
        }
        tokio::time::sleep(args.interval).await;
    }
    let text: String = samples.iter().map(|us| format!("{us}\n")).collect();
    std::fs::write(&args.out, text).map_err(|e| format!("writing {}: {e}", args.out))?;
    eprintln!("{path}: {} reads", samples.len());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match args() {
        Ok(args) => match run(args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bus_latency: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("bus_latency: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
