//! Before a change: show what will happen (packages, versions, download and installed sizes) and
//! ask, like apk and pacman. `--dry-run` shows the plan and stops.

use spk_dbus::{ChangeAction, ChangeOptions, Kind, ManagerProxy, PlannedChange};

use crate::connect::Failure;
use crate::display::human_bytes;
use crate::prompt::{self, Reply};

pub async fn fetch(
    manager: &ManagerProxy<'_>,
    kind: Kind,
    names: &[String],
    options: &ChangeOptions,
) -> Result<Vec<PlannedChange>, Failure> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(manager.plan(kind, &names, options).await?)
}

pub fn json(changes: &[PlannedChange]) -> serde_json::Value {
    serde_json::json!({
        "changes": changes.iter().map(|c| serde_json::json!({
            "name": c.name, "action": c.action.as_str(), "from": c.from, "to": c.to,
            "download": c.download, "installed-size": c.installed_size,
        })).collect::<Vec<_>>(),
        "download": changes.iter().map(|c| c.download).sum::<u64>(),
    })
}

pub fn text(changes: &[PlannedChange]) -> String {
    if changes.is_empty() {
        return "Nothing to do.\n".to_owned();
    }
    let w = changes.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let mut out = format!("Packages ({}):\n", changes.len());
    for c in changes {
        let versions = match c.action {
            ChangeAction::Install => c.to.clone(),
            ChangeAction::Remove => c.from.clone(),
            ChangeAction::Upgrade | ChangeAction::Reinstall => format!("{} -> {}", c.from, c.to),
        };
        out.push_str(&format!(
            "  {:<9} {:<w$}  {versions}\n",
            c.action.as_str(),
            c.name,
            w = w
        ));
    }
    let download: u64 = changes.iter().map(|c| c.download).sum();
    let size: u64 = changes.iter().map(|c| c.installed_size).sum();
    if changes.iter().all(|c| c.action == ChangeAction::Remove) {
        out.push_str(&format!("Frees about {}.\n", human_bytes(size)));
    } else {
        // Packages whose tarball the cache holds: nothing of theirs is downloaded.
        let cached = changes
            .iter()
            .filter(|c| c.action != ChangeAction::Remove && c.download == 0)
            .count();
        let from_cache = match cached {
            0 => String::new(),
            1 => " (1 package from the cache)".to_owned(),
            n => format!(" ({n} packages from the cache)"),
        };
        out.push_str(&format!(
            "Download {}{from_cache}; installed size {}.\n",
            human_bytes(download),
            human_bytes(size)
        ));
    }
    out
}

/// Ask on the terminal; anything but yes (default yes) declines, and Ctrl-C aborts.
pub async fn confirm(question: &str) -> Reply {
    prompt::yes_no(question, true).await
}
