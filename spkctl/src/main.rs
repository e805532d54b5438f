//! spkctl: the terminal client of spkd. It parses the command line, calls spkd's D-Bus API and
//! shows what happens; all work happens in the daemon.

mod cli;
mod connect;
mod display;
mod packages;
mod proxy;
mod transaction;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use zbus::zvariant::Value;

use cli::{ChangeOptions, Cli, Command};
use connect::Failure;
use display::Display;
use transaction::Kind;

const EXIT_UPDATES: u8 = 100;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(connect::EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn options(o: &ChangeOptions) -> HashMap<&'static str, Value<'static>> {
    let mut map = HashMap::new();
    if o.reinstall {
        map.insert("reinstall", Value::from(true));
    }
    if o.download_only {
        map.insert("download-only", Value::from(true));
    }
    if o.dry_run {
        map.insert("dry-run", Value::from(true));
    }
    map
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    let (conn, manager) = connect::connect(g.bus.as_deref()).await?;
    let mut display = Display::new(g.json, g.no_progress);
    let (kind, names, opts) = match &cli.command {
        Command::Install {
            packages,
            options: o,
        } => (Kind::Install, packages.clone(), options(o)),
        Command::Upgrade {
            packages,
            options: o,
        } => (Kind::Upgrade, packages.clone(), options(o)),
        Command::Remove { packages, dry_run } => {
            let mut o = HashMap::new();
            if *dry_run {
                o.insert("dry-run", Value::from(true));
            }
            (Kind::Remove, packages.clone(), o)
        }
        Command::Check => return check(&conn, &manager, g.json, &mut display).await,
        Command::List {
            installed,
            upgradable,
            available,
        } => {
            let filter = if *installed {
                Some("installed")
            } else if *upgradable {
                Some("upgradable")
            } else if *available {
                Some("available")
            } else {
                None
            };
            return list(&manager, filter, g.json).await;
        }
        Command::Info { package } => return info(&manager, package, g.json).await,
    };
    let ended = transaction::run(&conn, &manager, kind, &names, opts, &mut display).await?;
    if g.json {
        println!("{}", ended.json());
    } else if ended.succeeded() {
        println!("{}", transaction::summary(kind, &ended));
    }
    if ended.succeeded() {
        Ok(0)
    } else {
        Err(Failure::failed(ended.error_message))
    }
}

async fn check(
    conn: &zbus::Connection,
    manager: &proxy::ManagerProxy<'_>,
    json: bool,
    display: &mut Display,
) -> Result<u8, Failure> {
    let ended =
        transaction::run(conn, manager, Kind::Refresh, &[], HashMap::new(), display).await?;
    if !ended.succeeded() {
        return Err(Failure::failed(ended.error_message));
    }
    let upgradable: Vec<serde_json::Value> = manager
        .list_packages()
        .await?
        .iter()
        .map(packages::to_json)
        .filter(|p| p.get("state").and_then(|s| s.as_str()) == Some("upgradable"))
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({"updates": upgradable.len(), "packages": upgradable})
        );
    } else if upgradable.is_empty() {
        println!("The system is up to date.");
    } else {
        println!("{} update(s) available:", upgradable.len());
        for p in &upgradable {
            let get = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
            println!(
                "  {} {} -> {}",
                get("name"),
                get("installed-version"),
                get("available-version")
            );
        }
        println!("Run `spkctl upgrade` to install them.");
    }
    Ok(if upgradable.is_empty() {
        0
    } else {
        EXIT_UPDATES
    })
}

async fn list(
    manager: &proxy::ManagerProxy<'_>,
    filter: Option<&str>,
    json: bool,
) -> Result<u8, Failure> {
    let all: Vec<serde_json::Value> = manager
        .list_packages()
        .await?
        .iter()
        .map(packages::to_json)
        .filter(|p| {
            let state = p.get("state").and_then(|s| s.as_str()).unwrap_or("");
            match filter {
                None => true,
                // Upgradable packages are installed too.
                Some("installed") => state == "installed" || state == "upgradable",
                Some(f) => state == f,
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::Value::Array(all));
    } else {
        print!("{}", packages::table(&all));
    }
    Ok(0)
}

async fn info(manager: &proxy::ManagerProxy<'_>, name: &str, json: bool) -> Result<u8, Failure> {
    let found = manager
        .list_packages()
        .await?
        .iter()
        .map(packages::to_json)
        .find(|p| p.get("name").and_then(|s| s.as_str()) == Some(name));
    let Some(p) = found else {
        return Err(Failure::failed(format!(
            "unknown package '{name}': no configured repository offers it and it is not installed"
        )));
    };
    if json {
        println!("{p}");
    } else {
        print!("{}", packages::info_text(&p));
    }
    Ok(0)
}
