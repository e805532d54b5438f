//! `spk-notifier`: the per-user updater of a SmechOS Plasma session.
//!
//! A tray icon (StatusNotifierItem) that is Passive while the system is up to date and Active
//! when spkd reports updates, a desktop notification with "Install updates now" and "Install
//! updates at restart" actions when new updates appear, and the progress of any running spkd
//! transaction (the tooltip, and KDE's job tracker when present, else a notification with a
//! progress bar). An update prepared for the next boot shows as such, with "Restart and
//! install" (asking the Plasma session to restart) and "Cancel prepared update"; after the boot
//! that installed it, one notification tells the result. It talks to spkd on the system bus
//! only; changes go through spkd's polkit check, which may ask the desktop's agent for a
//! password.
//!
//! This file parses the command line and starts the loop in [`app`]; the decisions live in
//! [`model`], [`job`] and [`offline`], the bus adapters in [`spkd`], [`watch`], [`tray`],
//! [`notify`], [`jobview`] and [`restart`], the files in [`settings`].

mod app;
mod error;
mod job;
mod jobview;
mod model;
mod notify;
mod offline;
mod restart;
mod settings;
mod spkd;
mod tray;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Tray icon and notifications of available SmechOS updates (a client of spkd).
#[derive(Debug, Parser)]
#[command(name = "spk-notifier", version)]
struct Cli {
    /// D-Bus address of the bus spkd is on (default: the system bus). The tray item and
    /// notifications always use the session bus (DBUS_SESSION_BUS_ADDRESS).
    #[arg(long, value_name = "ADDRESS", env = "SPK_BUS_ADDRESS")]
    bus: Option<String>,
    /// Log level on stderr: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal only, not in a session's log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {}", error::Error::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    let options = app::Options { bus: cli.bus };
    match runtime.block_on(app::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
