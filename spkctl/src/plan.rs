//! Before a change: show what will happen (packages, versions, download and installed sizes) and
//! ask, like apk and pacman. `--dry-run` shows the plan and stops.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use zbus::zvariant::Value;

use crate::connect::Failure;
use crate::display::human_bytes;
use crate::proxy::ManagerProxy;

/// One planned change, as spkd's `Plan` returns it.
pub struct Change {
    pub name: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub download: u64,
    pub installed_size: u64,
}

pub async fn fetch(
    manager: &ManagerProxy<'_>,
    kind: &str,
    names: &[String],
    options: HashMap<&str, Value<'_>>,
) -> Result<Vec<Change>, Failure> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(manager
        .plan(kind, &names, options)
        .await?
        .into_iter()
        .map(
            |(name, action, from, to, download, installed_size)| Change {
                name,
                action,
                from,
                to,
                download,
                installed_size,
            },
        )
        .collect())
}

pub fn json(changes: &[Change]) -> serde_json::Value {
    serde_json::json!({
        "changes": changes.iter().map(|c| serde_json::json!({
            "name": c.name, "action": c.action, "from": c.from, "to": c.to,
            "download": c.download, "installed-size": c.installed_size,
        })).collect::<Vec<_>>(),
        "download": changes.iter().map(|c| c.download).sum::<u64>(),
    })
}

pub fn text(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "Nothing to do.\n".to_owned();
    }
    let w = changes.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let mut out = format!("Packages ({}):\n", changes.len());
    for c in changes {
        let versions = match c.action.as_str() {
            "install" => c.to.clone(),
            "remove" => c.from.clone(),
            _ => format!("{} -> {}", c.from, c.to),
        };
        out.push_str(&format!(
            "  {:<9} {:<w$}  {versions}\n",
            c.action,
            c.name,
            w = w
        ));
    }
    let download: u64 = changes.iter().map(|c| c.download).sum();
    let size: u64 = changes.iter().map(|c| c.installed_size).sum();
    if changes.iter().all(|c| c.action == "remove") {
        out.push_str(&format!("Frees about {}.\n", human_bytes(size)));
    } else {
        out.push_str(&format!(
            "Download {}; installed size {}.\n",
            human_bytes(download),
            human_bytes(size)
        ));
    }
    out
}

/// Ask on the terminal; anything but yes (default yes) declines.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [Y/n] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    let a = line.trim();
    a.is_empty() || a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes")
}
