//! spkd: the SmechOS package manager daemon. Owns `xyz.smech.Spk1` on the system bus (or a bus
//! given on the command line) and is the only process that writes the target root.

mod bus;
mod memory;
mod offline_update;
mod schedule;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use spk_dbus::BUS_NAME;
use spk_engine::Engine;
use spk_engine::config::{self, Config};

#[derive(Debug, Parser)]
#[command(name = "spkd", version, about = "SmechOS package manager daemon")]
struct Args {
    /// Configuration file [default: ROOT/etc/spk/spk.toml]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Target root to manage [default: /, or /mnt/smechos when it is mounted on a host that
    /// is not SmechOS]
    #[arg(long)]
    root: Option<PathBuf>,
    /// Connect to this D-Bus address (e.g. unix:path=/run/x)
    #[arg(long, conflicts_with_all = ["system", "session"])]
    bus: Option<String>,
    /// Connect to the system bus (the default)
    #[arg(long, conflicts_with = "session")]
    system: bool,
    /// Connect to the session bus (development)
    #[arg(long)]
    session: bool,
    /// Serve one client over this already-connected socket (peer-to-peer D-Bus, no bus
    /// daemon); exit when it disconnects. Used by `spkctl --root`.
    #[arg(long, value_name = "FD", conflicts_with_all = ["bus", "system", "session"])]
    p2p_fd: Option<i32>,
    /// Install the update prepared for the next boot (`spkctl upgrade --offline`), printing
    /// progress on stdout, then exit: what OpenRC's spk-offline-update runs before the desktop
    /// starts. No D-Bus. Exit status 1 when it could not be installed (or was discarded).
    #[arg(long, conflicts_with_all = ["bus", "system", "session", "p2p_fd"])]
    apply_offline_update: bool,
    /// Log level (error, warn, info, debug, trace) or a tracing filter
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    memory::tune();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not in /var/log/spkd.log.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    // Two runtimes: transactions (xz decoding, hashing, file writes and fsyncs) run on their
    // own threads, so that they never hold up the one that answers D-Bus calls: a client
    // reading Percentage during an install gets its answer at once.
    let runtimes = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("spkd-bus")
        .enable_all()
        .build()
        .and_then(|bus| {
            let work = tokio::runtime::Builder::new_multi_thread()
                .thread_name("spkd-work")
                .enable_all()
                .build()?;
            Ok((bus, work))
        });
    let (runtime, work) = match runtimes {
        Ok(rts) => rts,
        Err(e) => {
            eprintln!("spkd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args, work.handle().clone()));
    work.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("spkd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serve spkd's API; transactions run on `work`.
async fn run(args: Args, work: tokio::runtime::Handle) -> Result<ExitCode, String> {
    // spkd's own files (database, cache) get 0644/0755; unpack restores group/other write
    // bits that a package asks for (see `unpack::UMASK`).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(spk_engine::unpack::UMASK));
    let root = match args.root.clone() {
        Some(root) => root,
        None => {
            let (root, why) = spk_engine::layout::default_root();
            if let Some(why) = why {
                tracing::info!("{why}");
            }
            root
        }
    };
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| config::default_path(&root));
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    let engine = Arc::new(Engine::open(&root, config).map_err(|e| e.to_string())?);
    tracing::info!(root = %root.display(), config = %config_path.display(), "engine ready");
    // Say once whether indexes must be signed (the keys are read again at every refresh).
    match engine.trusted_keys() {
        Ok(keys) if keys.is_empty() => tracing::warn!(
            "signatures are off: no *.pub key in {}; indexes are trusted by their sha256 \
             fields and the transport (https, or a loopback address)",
            engine.keys_dir().display()
        ),
        Ok(keys) => tracing::info!(
            keys = %keys.files(),
            "signatures are on: every index must be signed by a trusted key"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the trusted keys cannot be read; refreshes will fail")
        }
    }

    if args.apply_offline_update {
        let applied = offline_update::apply(engine.clone()).await;
        tokio::task::block_in_place(|| engine.finish_background());
        return applied;
    }
    let shutdown = CancellationToken::new();
    let manager = bus::manager::Manager::new(engine.clone(), shutdown.clone(), work);
    if let Some(fd) = args.p2p_fd {
        let conn = bus::p2p::serve(fd, manager).await?;
        tracing::info!("serving one client over a peer-to-peer connection");
        tokio::select! {
            () = bus::p2p::closed(&conn) => tracing::info!("client disconnected"),
            r = wait_for_termination() => r?,
        }
        stop(&engine, &shutdown).await;
        return Ok(ExitCode::SUCCESS);
    }
    let builder = match (&args.bus, args.session) {
        (Some(address), _) => zbus::connection::Builder::address(address.as_str()),
        (None, true) => zbus::connection::Builder::session(),
        (None, false) => zbus::connection::Builder::system(),
    }
    .map_err(|e| format!("D-Bus: {e}"))?;
    let conn = builder
        .serve_at(spk_dbus::MANAGER_PATH, manager)
        .map_err(|e| format!("D-Bus: {e}"))?
        .build()
        .await
        .map_err(|e| format!("cannot connect to D-Bus: {e}"))?;
    // Own the name only once the objects are served, and never queue behind another spkd.
    conn.request_name_with_flags(BUS_NAME, zbus::fdo::RequestNameFlags::DoNotQueue.into())
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} (is another spkd running?): {e}"))
        .and_then(|reply| match reply {
            zbus::fdo::RequestNameReply::PrimaryOwner
            | zbus::fdo::RequestNameReply::AlreadyOwner => Ok(()),
            other => Err(format!(
                "cannot own {BUS_NAME} ({other:?}): another spkd is running"
            )),
        })?;
    tracing::info!("serving {BUS_NAME}");
    if let Some(period) = engine.config().check_period() {
        tokio::spawn(schedule::run(
            conn.clone(),
            engine.clone(),
            period,
            shutdown.clone(),
        ));
    }

    wait_for_termination().await?;
    stop(&engine, &shutdown).await;
    let _ = conn.release_name(BUS_NAME).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Cancel transactions and let the running one reach a safe point (download abandoned, or the
/// current package's commit finished).
async fn stop(engine: &Engine, shutdown: &CancellationToken) {
    tracing::info!("stopping: cancelling transactions");
    shutdown.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while engine.busy() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::task::block_in_place(|| engine.finish_background());
}

async fn wait_for_termination() -> Result<(), String> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
