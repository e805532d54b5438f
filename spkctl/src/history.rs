//! `spkctl history`: past transactions as spkd recorded them (persisted across restarts).

use std::time::{Duration, UNIX_EPOCH};

use spk_dbus::ManagerProxy;

use crate::connect::Failure;

pub fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

pub async fn history(manager: &ManagerProxy<'_>, limit: u32, json: bool) -> Result<u8, Failure> {
    let entries = manager.get_history(limit).await?;
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": d.id,
                    "started": d.started,
                    "finished": d.finished,
                    "uid": d.uid,
                    "kind": d.kind.as_str(),
                    "packages": d.packages,
                    "state": d.state.as_str(),
                    "error": d.error,
                    "changes": d.changes.iter().map(|c| serde_json::json!({"name": c.name, "from": c.from, "to": c.to})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    if entries.is_empty() {
        println!("No transactions yet.");
        return Ok(0);
    }
    println!(
        "{:>4}  {:<20}  {:>5}  {:<8}  {:<9}  CHANGES",
        "ID", "STARTED (UTC)", "UID", "ACTION", "RESULT"
    );
    for d in &entries {
        let changes: Vec<String> = d
            .changes
            .iter()
            .map(|c| {
                let (n, f, t) = (&c.name, &c.from, &c.to);
                match (f.is_empty(), t.is_empty()) {
                    (true, _) => format!("{n} {t}"),
                    (false, true) => format!("{n} {f} removed"),
                    _ => format!("{n} {f} -> {t}"),
                }
            })
            .collect();
        let mut detail = changes.join(", ");
        if !d.error.is_empty() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&d.error);
        }
        println!(
            "{:>4}  {:<20}  {:>5}  {:<8}  {:<9}  {}",
            d.id,
            when(d.started),
            d.uid,
            d.kind.as_str(),
            d.state.as_str(),
            if detail.is_empty() {
                "-".to_owned()
            } else {
                detail
            }
        );
    }
    Ok(0)
}
