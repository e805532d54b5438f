//! `spkctl offline`: the update prepared for the next restart (`upgrade --offline`).

use spk_dbus::{ManagerProxy, PreparedRow};

use crate::cli::OfflineAction;
use crate::connect::Failure;
use crate::display::human_bytes;

/// `package from -> to` for each change.
fn changes(p: &PreparedRow) -> Vec<String> {
    p.changes
        .iter()
        .map(|c| match (c.from.is_empty(), c.to.is_empty()) {
            (true, _) => format!("{} {} (new)", c.name, c.to),
            (false, true) => format!("{} {} (removed)", c.name, c.from),
            _ => format!("{} {} -> {}", c.name, c.from, c.to),
        })
        .collect()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What `upgrade --offline` says once spkd has prepared the update.
pub async fn prepared_summary(manager: &ManagerProxy<'_>) -> Result<String, Failure> {
    let p = manager.prepared_update().await?;
    if !p.is_prepared() {
        return Ok("Nothing to do: everything requested is installed and up to date.".into());
    }
    let n = p.changes.len();
    Ok(format!(
        "Prepared {n} update{} ({}): they will be installed at the next restart, before the \
         desktop starts. `spkctl offline cancel` discards them.",
        plural(n),
        changes(&p).join(", ")
    ))
}

pub async fn offline(
    manager: &ManagerProxy<'_>,
    action: Option<&OfflineAction>,
    json: bool,
) -> Result<u8, Failure> {
    match action {
        None | Some(OfflineAction::Status) => {
            let p = manager.prepared_update().await?;
            if json {
                println!("{}", status_json(&p));
            } else {
                print!("{}", status_text(&p));
            }
            Ok(0)
        }
        Some(OfflineAction::Cancel) => {
            let discarded = manager.cancel_prepared_update().await?;
            if json {
                println!("{}", serde_json::json!({ "discarded": discarded }));
            } else if discarded {
                println!(
                    "The prepared update was discarded; nothing will be installed at restart."
                );
            } else {
                println!("No update is prepared.");
            }
            Ok(0)
        }
    }
}

fn status_json(p: &PreparedRow) -> serde_json::Value {
    serde_json::json!({
        "prepared": p.is_prepared(),
        "prepared-at": p.prepared_at,
        "installed-size": p.installed_size,
        "stale": p.stale,
        "changes": p.changes.iter().map(|c| serde_json::json!({"name": c.name, "from": c.from, "to": c.to})).collect::<Vec<_>>(),
    })
}

fn status_text(p: &PreparedRow) -> String {
    if !p.is_prepared() {
        return "No update is prepared. `spkctl upgrade --offline` prepares one for the next \
                restart.\n"
            .into();
    }
    let n = p.changes.len();
    let mut out = format!(
        "Update prepared {}: {n} package{}, {} unpacked.\n",
        crate::history::when(p.prepared_at),
        plural(n),
        human_bytes(p.installed_size)
    );
    for line in changes(p) {
        out.push_str(&format!("  {line}\n"));
    }
    if p.stale.is_empty() {
        out.push_str("It will be installed at the next restart, before the desktop starts.\n");
    } else {
        out.push_str(&format!(
            "It can no longer be installed and will be discarded at the next restart: {}.\n",
            p.stale
        ));
    }
    out
}
