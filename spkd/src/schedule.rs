//! spkd's own update checks (there are no systemd timers on SmechOS): a refresh every
//! `check_interval`, counted from the last refresh, which is persisted and so survives restarts
//! and reboots. Each check is an ordinary Refresh transaction, so the applet sees it and
//! `UpdatesAvailable` follows when something is new.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use zbus::Connection;

use crate::bus::manager::Manager;
use spk_dbus::MANAGER_PATH as PATH;
use spk_engine::{Action, Engine, Options, Request};

/// Never check in the first minute after start: the boot check (with its random delay) is
/// the one that runs at boot.
const SETTLE: Duration = Duration::from_secs(60);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A spread of up to a tenth of the period (at most 15 min) so a fleet that booted together
/// does not check together.
fn jitter(period: Duration) -> Duration {
    let cap = (period / 10).min(Duration::from_secs(900)).as_secs().max(1);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        u64::from(d.subsec_nanos()) ^ u64::from(std::process::id())
    });
    Duration::from_secs(seed % cap)
}

pub async fn run(conn: Connection, engine: Arc<Engine>, period: Duration, stop: CancellationToken) {
    tracing::info!(period_s = period.as_secs(), "periodic update checks on");
    let started = tokio::time::Instant::now();
    loop {
        let last = engine.last_refresh();
        let since = Duration::from_secs(now().saturating_sub(last));
        let mut wait = if last == 0 {
            Duration::ZERO
        } else {
            period.saturating_sub(since)
        };
        let settle_left = SETTLE.saturating_sub(started.elapsed());
        wait = wait.max(settle_left) + jitter(period);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        // Someone else (boot check, a user) may have refreshed meanwhile.
        let since = Duration::from_secs(now().saturating_sub(engine.last_refresh()));
        if engine.last_refresh() != 0 && since < period {
            continue;
        }
        let req = Request {
            action: Action::Refresh,
            names: Vec::new(),
            options: Options::default(),
            requester: 0,
        };
        let manager = match conn.object_server().interface::<_, Manager>(PATH).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "periodic check: manager not served");
                return;
            }
        };
        match manager.get().await.spawn(&conn, req).await {
            Ok(path) => tracing::info!(%path, "periodic update check started"),
            Err(e) => tracing::warn!(error = ?e, "periodic update check could not start"),
        }
        // Let that refresh land before computing the next due time.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
            () = stop.cancelled() => return,
        }
    }
}
