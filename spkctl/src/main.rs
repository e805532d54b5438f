//! spkctl: the terminal client of spkd. It parses the command line, calls spkd's D-Bus API and
//! shows what happens; all work happens in the daemon.

mod about;
mod cli;
mod connect;
mod display;
mod generate;
mod history;
mod monitor;
mod offline;
mod packages;
mod plan;
mod prompt;
mod rate;
mod transaction;
mod usage;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use spk_dbus::{CleanOptions, Kind, ManagerProxy, NoticeKind, PackageRow, PackageState, State};

use cli::{ChangeOptions, Cli, Command, Global};
use connect::Failure;
use display::Display;

const EXIT_UPDATES: u8 = 100;

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| usage::without_far_suggestion(e).exit());
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

/// The D-Bus options of a change (dry runs are handled here, with `Plan`).
fn options(o: &ChangeOptions) -> spk_dbus::ChangeOptions {
    spk_dbus::ChangeOptions {
        reinstall: o.reinstall,
        download_only: o.download_only,
        force: o.force_overwrite,
        adopt: o.adopt,
        dry_run: false,
        undo: None,
        offline: o.offline,
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    // The one command that needs no daemon.
    if let Command::GenerateCompletions { shell } = &cli.command {
        return generate::completions(*shell);
    }
    let (conn, manager, private) = match &g.root {
        Some(root) => {
            let (c, m, d) = connect::connect_root(root, g.config.as_deref()).await?;
            (c, m, Some(d))
        }
        None => match connect::connect(g.bus.as_deref()).await {
            Ok((c, m)) => (c, m, None),
            // The build host: no spkd of its own, a SmechOS system mounted for building.
            Err(f)
                if f.code == connect::EXIT_UNREACHABLE
                    && g.bus.is_none()
                    && connect::build_root_mounted() =>
            {
                let root = std::path::Path::new(connect::BUILD_ROOT);
                eprintln!(
                    "note: no spkd on the system bus and {} is mounted: managing it with a private spkd",
                    root.display()
                );
                let (c, m, d) = connect::connect_root(root, g.config.as_deref()).await?;
                (c, m, Some(d))
            }
            Err(f) => return Err(f),
        },
    };
    let result = dispatch(&cli, &conn, &manager).await;
    drop(manager);
    if let Some(daemon) = private {
        daemon.finish(conn).await;
    }
    result
}

async fn dispatch(
    cli: &Cli,
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
) -> Result<u8, Failure> {
    let g = &cli.global;
    let mut display = Display::new(g.json, g.no_progress);
    let no_names = Vec::new();
    let mut undo = None;
    let only_dry_run = |dry_run: bool| ChangeOptions {
        reinstall: false,
        download_only: false,
        dry_run,
        force_overwrite: false,
        adopt: false,
        offline: false,
    };
    let (kind, names, change_opts) = match &cli.command {
        Command::Install { packages, options } => (Kind::Install, packages, options.clone()),
        Command::Upgrade { packages, options } => (Kind::Upgrade, packages, options.clone()),
        Command::Remove { packages, dry_run } => (
            Kind::Remove,
            packages,
            ChangeOptions {
                reinstall: false,
                download_only: false,
                dry_run: *dry_run,
                force_overwrite: false,
                adopt: false,
                offline: false,
            },
        ),
        Command::Rollback { packages, dry_run } => {
            (Kind::Rollback, packages, only_dry_run(*dry_run))
        }
        Command::History {
            action: Some(cli::HistoryAction::Undo { id, dry_run }),
            ..
        } => {
            undo = Some(*id);
            (Kind::Rollback, &no_names, only_dry_run(*dry_run))
        }
        Command::Hold { packages } => return hold(manager, packages, true).await,
        Command::Unhold { packages } => return hold(manager, packages, false).await,
        Command::Check => return check(conn, manager, g.json, &mut display).await,
        Command::List {
            installed,
            upgradable,
            available,
            held,
        } => {
            let filter = if *installed {
                Some(ListFilter::State(PackageState::Installed))
            } else if *upgradable {
                Some(ListFilter::State(PackageState::Upgradable))
            } else if *available {
                Some(ListFilter::State(PackageState::Available))
            } else if *held {
                Some(ListFilter::Held)
            } else {
                None
            };
            return list(manager, filter, g.json).await;
        }
        Command::Info { package } => return info(manager, package, g.json).await,
        Command::Verify { packages } => return verify(manager, packages, g.json).await,
        Command::History { limit, .. } => {
            return history::history(manager, *limit, g.json).await;
        }
        Command::Monitor { id } => {
            return monitor::monitor(conn, manager, id.as_deref(), g.json, &mut display).await;
        }
        Command::Cancel { id } => return monitor::cancel(conn, manager, id.as_deref()).await,
        Command::Clean { all } => return clean(manager, *all, g.json).await,
        Command::Offline { action } => {
            return offline::offline(manager, action.as_ref(), g.json).await;
        }
        Command::About => return about::about(manager, g.json).await,
        Command::CompletePackages { which } => {
            return packages::complete(manager, *which).await;
        }
        Command::GenerateCompletions { .. } => return Ok(0),
    };
    let mut options = options(&change_opts);
    options.undo = undo;
    let change = Change {
        kind,
        names,
        options,
        dry_run: change_opts.dry_run,
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if change.dry_run || (interactive && !g.yes && !g.json) {
        match review(conn, manager, g, &change, &mut display).await? {
            Review::Proceed => {}
            Review::Stop(code) => return Ok(code),
        }
    }
    let ended = transaction::run(conn, manager, kind, names, &change.options, &mut display).await?;
    if g.json {
        println!("{}", ended.json());
    } else {
        if ended.succeeded() && change.options.offline {
            println!("{}", offline::prepared_summary(manager).await?);
        } else if ended.succeeded() && ended.done.is_empty() && held_only(&ended) {
            println!("Nothing to do: every update is held back.");
        } else if ended.succeeded() {
            println!("{}", packages::fit(&transaction::summary(kind, &ended)));
        }
        for n in &ended.notices {
            if n.kind == NoticeKind::Hook {
                // Something the system may need was not done: a warning, not a note.
                eprintln!("warning: {}", n.message);
            } else if n.package.is_empty() {
                println!("note: {}", n.message);
            } else {
                println!("note: {}: {}", n.package, n.message);
            }
        }
    }
    if ended.succeeded() {
        Ok(0)
    } else {
        Err(Failure::failed(ended.error_message))
    }
}

/// Whether what an upgrade left out were held packages' updates.
fn held_only(ended: &transaction::Ended) -> bool {
    ended.notices.iter().any(|n| n.kind == NoticeKind::Held)
}

/// The change the command line asks for.
struct Change<'a> {
    kind: Kind,
    names: &'a [String],
    options: spk_dbus::ChangeOptions,
    /// Show the plan and stop.
    dry_run: bool,
}

enum Review {
    Proceed,
    Stop(u8),
}

/// Show the plan (after refreshing the indexes for install/upgrade) and ask, or stop for a dry
/// run.
async fn review(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    g: &Global,
    change: &Change<'_>,
    display: &mut Display,
) -> Result<Review, Failure> {
    // A rollback takes only what the cache holds: no refresh.
    if !matches!(change.kind, Kind::Remove | Kind::Rollback) {
        let mut quiet = Display::quiet();
        let refreshed = transaction::run(
            conn,
            manager,
            Kind::Refresh,
            &[],
            &spk_dbus::ChangeOptions::default(),
            &mut quiet,
        )
        .await?;
        if refreshed.state == State::Cancelled {
            return Err(Failure::failed(refreshed.error_message));
        }
        if !refreshed.succeeded() {
            // The transaction decides whether it can do without that repository (its last
            // good index stands in when nothing asked for is its); the plan shows that.
            eprintln!("warning: {}", refreshed.error_message);
        }
    }
    let changes = plan::fetch(manager, change.kind, change.names, &change.options).await?;
    if g.json {
        println!("{}", plan::json(&changes));
    } else {
        print!("{}", plan::text(&changes));
    }
    if changes.is_empty() && !g.json && change.kind == Kind::Upgrade && change.names.is_empty() {
        // No transaction follows, so its notices about held updates would never be seen.
        held_back(manager).await?;
    }
    if change.dry_run || changes.is_empty() {
        return Ok(Review::Stop(0));
    }
    display.suspend();
    match plan::confirm("Proceed?").await {
        prompt::Reply::Yes => Ok(Review::Proceed),
        prompt::Reply::No => {
            println!("Nothing was changed.");
            Ok(Review::Stop(1))
        }
        // Ctrl-C aborts, as in pacman and apt: the terminal showed ^C after the question.
        prompt::Reply::Interrupted => {
            eprintln!("\nNothing was changed.");
            Ok(Review::Stop(1))
        }
    }
}

async fn check(
    conn: &zbus::Connection,
    manager: &ManagerProxy<'_>,
    json: bool,
    display: &mut Display,
) -> Result<u8, Failure> {
    let ended = transaction::run(
        conn,
        manager,
        Kind::Refresh,
        &[],
        &spk_dbus::ChangeOptions::default(),
        display,
    )
    .await?;
    if !ended.succeeded() {
        return Err(Failure::failed(ended.error_message));
    }
    let repos = manager.get_repositories().await?;
    let all = manager.list_packages().await?;
    let installed = all
        .iter()
        .filter(|p| !p.installed_version.is_empty())
        .count();
    let available = all.len() - installed;
    let (held, upgradable): (Vec<PackageRow>, Vec<PackageRow>) = all
        .into_iter()
        .filter(|p| p.state == PackageState::Upgradable)
        .partition(|p| p.held);
    // Held packages are listed apart and do not make `check` report updates.
    let code = if upgradable.is_empty() {
        0
    } else {
        EXIT_UPDATES
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "updates": upgradable.len(),
                "packages": upgradable.iter().map(packages::to_json).collect::<Vec<_>>(),
                "held": held.iter().map(packages::to_json).collect::<Vec<_>>(),
                "repositories": repos.iter().map(about::repo_json).collect::<Vec<_>>(),
            })
        );
        return Ok(code);
    }
    for r in &repos {
        println!("Index of {}: {}", r.name, about::index_text(r));
    }
    let show = |p: &PackageRow| {
        println!(
            "  {} {} -> {}",
            p.name, p.installed_version, p.available_version
        );
    };
    if installed == 0 {
        println!(
            "No packages are installed; {} available (`spkctl list` shows them, \
             `spkctl install PKG` installs one).",
            count(available, "package is", "packages are")
        );
    } else if upgradable.is_empty() {
        println!("The system is up to date.");
    } else {
        println!(
            "{} available:",
            count(upgradable.len(), "update", "updates")
        );
        upgradable.iter().for_each(show);
        println!("Run `spkctl upgrade` to install them.");
    }
    show_held(&held);
    Ok(code)
}

/// Updates that `upgrade` leaves out because their packages are held.
async fn held_back(manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let held: Vec<PackageRow> = manager
        .list_packages()
        .await?
        .into_iter()
        .filter(|p| p.held && p.state == PackageState::Upgradable)
        .collect();
    show_held(&held);
    Ok(())
}

fn show_held(held: &[PackageRow]) {
    if held.is_empty() {
        return;
    }
    println!("Held back ({}; `spkctl unhold` releases them):", held.len());
    for p in held {
        println!(
            "  {} {} -> {}",
            p.name, p.installed_version, p.available_version
        );
    }
}

/// Which packages `list` shows.
#[derive(Clone, Copy)]
enum ListFilter {
    State(PackageState),
    Held,
}

async fn list(
    manager: &ManagerProxy<'_>,
    filter: Option<ListFilter>,
    json: bool,
) -> Result<u8, Failure> {
    let known = manager.list_packages().await?;
    let nothing_known = known.is_empty();
    let all: Vec<PackageRow> = known
        .into_iter()
        .filter(|p| match filter {
            None => true,
            Some(ListFilter::Held) => p.held,
            // Upgradable packages are installed too.
            Some(ListFilter::State(PackageState::Installed)) => {
                matches!(p.state, PackageState::Installed | PackageState::Upgradable)
            }
            Some(ListFilter::State(f)) => p.state == f,
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::Value::Array(all.iter().map(packages::to_json).collect())
        );
        return Ok(0);
    }
    print!("{}", packages::table(&all));
    if all.is_empty() {
        // Said apart from the table, so that stdout stays a table for scripts.
        if nothing_known {
            eprintln!(
                "No packages are known yet: run `spkctl check` to fetch the repositories' \
                 indexes."
            );
        } else {
            eprintln!("No package matches.");
        }
    }
    Ok(0)
}

/// `N thing` or `N things`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

async fn info(manager: &ManagerProxy<'_>, name: &str, json: bool) -> Result<u8, Failure> {
    let found = manager
        .list_packages()
        .await?
        .into_iter()
        .find(|p| p.name == name);
    let Some(p) = found else {
        return Err(Failure::failed(format!(
            "unknown package '{name}': no configured repository offers it and it is not installed"
        )));
    };
    if json {
        println!("{}", packages::to_json(&p));
    } else {
        print!("{}", packages::info_text(&p));
    }
    Ok(0)
}

async fn verify(manager: &ManagerProxy<'_>, names: &[String], json: bool) -> Result<u8, Failure> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let problems = manager.verify(&names).await?;
    // A configuration file the admin edited is expected, not damage.
    let damaged = problems.iter().filter(|p| p.kind.is_damage()).count();
    if json {
        let list: Vec<serde_json::Value> = problems
            .iter()
            .map(|p| {
                serde_json::json!({"package": p.package, "path": p.path, "kind": p.kind.as_str(), "problem": p.problem})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for p in &problems {
            println!("{}: /{}: {}", p.package, p.path, p.problem);
        }
        let configs = problems.len() - damaged;
        if damaged > 0 {
            eprintln!(
                "error: {} from their packages",
                count(damaged, "file differs", "files differ")
            );
        } else if configs > 0 {
            println!(
                "All installed files match their packages, except {} changed locally.",
                count(configs, "configuration file", "configuration files")
            );
        } else {
            println!("All installed files match their packages.");
        }
    }
    Ok(if damaged == 0 { 0 } else { 1 })
}

async fn hold(manager: &ManagerProxy<'_>, names: &[String], hold: bool) -> Result<u8, Failure> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if hold {
        manager.hold(&names).await?;
        println!(
            "Held: {} (upgrade leaves them alone unless named).",
            names.join(", ")
        );
    } else {
        manager.unhold(&names).await?;
        println!("No longer held: {}.", names.join(", "));
    }
    Ok(0)
}

async fn clean(manager: &ManagerProxy<'_>, all: bool, json: bool) -> Result<u8, Failure> {
    let (files, bytes) = manager.clean(&CleanOptions { all }).await?;
    if json {
        println!("{}", serde_json::json!({"files": files, "bytes": bytes}));
    } else {
        println!(
            "Removed {files} cached file{} ({}).",
            if files == 1 { "" } else { "s" },
            display::human_bytes(bytes)
        );
    }
    Ok(0)
}
