//! `spkd --apply-offline-update`: install the update prepared for this boot as one transaction
//! of the engine (same journal, hooks and history as any other), telling the console how far
//! it got. OpenRC's `spk-offline-update` runs it in the boot runlevel, before the desktop.

use std::process::ExitCode;
use std::sync::Arc;

use spk_engine::{Action, Engine, Event, HookState, Options, Reporter, Request, TxState};
use tokio_util::sync::CancellationToken;

/// Packages after whose update the machine should restart once more (`offline_reboot`).
const NEEDS_RESTART: [&str; 2] = ["kernel-modules", "bootloader-grub"];

/// The exit status that asks the OpenRC service to restart the machine.
pub const RESTART: u8 = 3;

/// Apply the prepared update, if any: 0, or [`RESTART`] when it changed the kernel or the boot
/// loader and `offline_reboot` is on. Err: it could not be installed (or was discarded); the
/// message has been printed already.
pub async fn apply(engine: Arc<Engine>) -> Result<ExitCode, String> {
    let prepared = match engine.prepared() {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(fail(&e.message())),
    };
    let total = prepared.changes.len();
    let version_of = |name: &str| {
        prepared
            .changes
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.to.clone())
            .unwrap_or_default()
    };
    let id = engine
        .reserve_transaction()
        .map_err(|e| fail(&e.message()))?;
    let (reporter, mut events) = Reporter::new();
    let work = tokio::spawn({
        let engine = engine.clone();
        async move {
            let req = Request {
                action: Action::ApplyPrepared,
                names: Vec::new(),
                options: Options::default(),
                requester: 0,
            };
            let result = engine
                .run(id, &req, &reporter, &CancellationToken::new())
                .await;
            drop(reporter);
            result
        }
    });
    let mut installing = false;
    let mut started = 0;
    while let Some(event) = events.recv().await {
        match event {
            Event::State(state) => installing = state == TxState::Installing,
            Event::Current(name) if installing => {
                started += 1;
                println!(
                    " * Installing updates ({started}/{total}): {name} {} …",
                    version_of(&name)
                );
            }
            Event::Hook {
                description,
                state: HookState::Running,
                ..
            } => println!(" * {description}"),
            Event::Hook {
                state: HookState::Failed | HookState::TimedOut,
                output,
                ..
            } => println!(
                "   the hook failed: {}",
                output.lines().last().unwrap_or("")
            ),
            Event::Notice(n) => println!("   note: {}", n.message),
            _ => {}
        }
    }
    match work.await {
        Ok(Ok(outcome)) => {
            let n = outcome.changed.len();
            println!(" * Installed {n} update{}", if n == 1 { "" } else { "s" });
            let restart = engine.config().offline_reboot
                && outcome
                    .changed
                    .iter()
                    .any(|c| NEEDS_RESTART.contains(&c.name.as_str()));
            if restart {
                println!(" * The kernel or the boot loader changed: restarting once more");
                return Ok(ExitCode::from(RESTART));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(e)) => Err(fail(&e.message())),
        Err(e) => Err(fail(&format!("internal error: {e}"))),
    }
}

/// Say on the console why the update was not installed; the message for spkd's exit.
fn fail(message: &str) -> String {
    println!(" * The prepared updates were not installed: {message}");
    println!("   The packages not installed keep their old version; `spkctl history` has details.");
    format!("the prepared update was not installed: {message}")
}
