//! `spkctl history`: past transactions as spkd recorded them (persisted across restarts).

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use zbus::zvariant::{OwnedValue, Value};

use crate::connect::Failure;
use crate::proxy::ManagerProxy;

fn u64_of(d: &HashMap<String, OwnedValue>, k: &str) -> u64 {
    match d.get(k).map(|v| &**v) {
        Some(Value::U64(n)) => *n,
        Some(Value::U32(n)) => u64::from(*n),
        _ => 0,
    }
}

fn str_of(d: &HashMap<String, OwnedValue>, k: &str) -> String {
    match d.get(k).map(|v| &**v) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

fn changes_of(d: &HashMap<String, OwnedValue>) -> Vec<(String, String, String)> {
    d.get("changes")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| <Vec<(String, String, String)>>::try_from(v).ok())
        .unwrap_or_default()
}

fn packages_of(d: &HashMap<String, OwnedValue>) -> Vec<String> {
    d.get("packages")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| <Vec<String>>::try_from(v).ok())
        .unwrap_or_default()
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

pub async fn history(manager: &ManagerProxy<'_>, limit: u32, json: bool) -> Result<u8, Failure> {
    let entries = manager.get_history(limit).await?;
    if json {
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|d| {
                serde_json::json!({
                    "id": u64_of(d, "id"),
                    "started": u64_of(d, "started"),
                    "finished": u64_of(d, "finished"),
                    "uid": u64_of(d, "uid"),
                    "kind": str_of(d, "kind"),
                    "packages": packages_of(d),
                    "state": str_of(d, "state"),
                    "error": str_of(d, "error"),
                    "changes": changes_of(d).into_iter().map(|(n, f, t)| serde_json::json!({"name": n, "from": f, "to": t})).collect::<Vec<_>>(),
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
        let changes: Vec<String> = changes_of(d)
            .into_iter()
            .map(|(n, f, t)| match (f.is_empty(), t.is_empty()) {
                (true, _) => format!("{n} {t}"),
                (false, true) => format!("{n} {f} removed"),
                _ => format!("{n} {f} -> {t}"),
            })
            .collect();
        let mut detail = changes.join(", ");
        let error = str_of(d, "error");
        if !error.is_empty() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&error);
        }
        println!(
            "{:>4}  {:<20}  {:>5}  {:<8}  {:<9}  {}",
            u64_of(d, "id"),
            when(u64_of(d, "started")),
            u64_of(d, "uid"),
            str_of(d, "kind"),
            str_of(d, "state"),
            if detail.is_empty() {
                "-".to_owned()
            } else {
                detail
            }
        );
    }
    Ok(0)
}
