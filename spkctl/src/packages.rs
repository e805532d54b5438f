//! `list` and `info`: packages as spkd describes them, as a table or JSON.

use std::io::IsTerminal;

use serde_json::Value as Json;
use spk_dbus::PackageRow;

use crate::display::human_bytes;

/// One package of `ListPackages` as spkctl's JSON shows it (README: the keys of the row).
pub fn to_json(p: &PackageRow) -> Json {
    serde_json::json!({
        "name": p.name,
        "kind": p.kind,
        "state": p.state.as_str(),
        "installed-version": p.installed_version,
        "available-version": p.available_version,
        "size": p.size,
        "installed-size": p.installed_size,
        "description": p.description,
        "repo": p.repo,
        "verified-by": p.verified_by,
        "files": p.files,
        "problem": p.problem,
        "capabilities": p.capabilities,
    })
}

/// Columns of the terminal: `COLUMNS`, else stdout's window, else 100.
pub(crate) fn terminal_width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return cols;
    }
    if std::io::stdout().is_terminal()
        && let Ok(ws) = rustix::termios::tcgetwinsize(rustix::stdio::stdout())
        && ws.ws_col > 0
    {
        return usize::from(ws.ws_col);
    }
    100
}

/// `line` broken between words to fit the terminal (the terminal itself would break a word
/// anywhere); unchanged when stdout is not a terminal.
pub(crate) fn fit(line: &str) -> String {
    if !std::io::stdout().is_terminal() {
        return line.to_owned();
    }
    let words: Vec<Vec<String>> = line.split(' ').map(|w| vec![w.to_owned()]).collect();
    crate::history::wrap(&words, terminal_width()).join("\n")
}

/// A table that fits the terminal: the description column takes what is left.
pub fn table(packages: &[PackageRow]) -> String {
    let headers = ["NAME", "STATE", "INSTALLED", "AVAILABLE", "SIZE"];
    let rows: Vec<[String; 6]> = packages
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                p.state.as_str().to_owned(),
                p.installed_version.clone(),
                p.available_version.clone(),
                human_bytes(p.size),
                p.description.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(row[i].chars().count());
        }
    }
    let used: usize = widths.iter().map(|w| w + 2).sum();
    let desc_width = terminal_width().saturating_sub(used);
    let mut out = String::new();
    let line = |cells: [&str; 6], out: &mut String| {
        for (i, cell) in cells.iter().take(5).enumerate() {
            out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        let desc: String = if cells[5].chars().count() > desc_width && desc_width > 1 {
            cells[5].chars().take(desc_width - 1).collect::<String>() + "…"
        } else if desc_width == 0 {
            String::new()
        } else {
            cells[5].to_owned()
        };
        out.push_str(desc.trim_end());
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(
        [
            "NAME",
            "STATE",
            "INSTALLED",
            "AVAILABLE",
            "SIZE",
            "DESCRIPTION",
        ],
        &mut out,
    );
    for row in &rows {
        line(
            [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]],
            &mut out,
        );
    }
    out
}

pub fn info_text(p: &PackageRow) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<18}{v}\n"));
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    field("Name:", p.name.clone());
    field("Kind:", or_dash(&p.kind));
    field("State:", p.state.as_str().to_owned());
    if p.held {
        field(
            "Held:",
            "yes (upgrade leaves it alone unless named)".to_owned(),
        );
    }
    if !p.problem.is_empty() {
        field("Problem:", p.problem.clone());
    }
    field("Installed:", or_dash(&p.installed_version));
    field("Available:", or_dash(&p.available_version));
    field("Download size:", human_bytes(p.size));
    field("Installed size:", human_bytes(p.installed_size));
    field("Repository:", or_dash(&p.repo));
    field("Verified by:", or_dash(&p.verified_by));
    field("Files:", p.files.to_string());
    for (path, text) in &p.capabilities {
        field("Capabilities:", format!("/{path} {text}"));
    }
    field("Description:", or_dash(&p.description));
    out
}

/// `__complete-packages`: the names the shell completions offer, one a line, sorted.
pub async fn complete(
    manager: &spk_dbus::ManagerProxy<'_>,
    which: Option<crate::cli::PackageSet>,
) -> Result<u8, crate::connect::Failure> {
    use crate::cli::PackageSet;
    let mut names: Vec<String> = manager
        .list_packages()
        .await?
        .into_iter()
        .filter(|p| match which {
            None => true,
            Some(PackageSet::Installed) => !p.installed_version.is_empty(),
            Some(PackageSet::Available) => !p.available_version.is_empty(),
        })
        .map(|p| p.name)
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        println!("{name}");
    }
    Ok(0)
}
