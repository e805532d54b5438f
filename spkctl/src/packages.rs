//! `list` and `info`: packages as spkd describes them, as a table or JSON.

use std::collections::HashMap;
use std::io::IsTerminal;

use serde_json::{Map, Value as Json};
use zbus::zvariant::{OwnedValue, Value};

use crate::display::human_bytes;

/// One package dict from `ListPackages`, as JSON with the same keys.
pub fn to_json(dict: &HashMap<String, OwnedValue>) -> Json {
    let mut map = Map::new();
    let mut keys: Vec<&String> = dict.keys().collect();
    keys.sort();
    for key in keys {
        map.insert(key.clone(), value_json(&dict[key]));
    }
    Json::Object(map)
}

fn value_json(v: &Value<'_>) -> Json {
    match v {
        Value::Str(s) => Json::from(s.as_str()),
        Value::U64(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::Bool(b) => Json::from(*b),
        Value::Dict(d) => {
            let mut map = Map::new();
            for (k, v) in d.iter() {
                let key = match k {
                    Value::Str(s) => s.as_str().to_owned(),
                    other => other.to_string(),
                };
                map.insert(key, value_json(v));
            }
            Json::Object(map)
        }
        other => Json::from(other.to_string()),
    }
}

fn text<'a>(p: &'a Json, key: &str) -> &'a str {
    p.get(key).and_then(Json::as_str).unwrap_or("")
}

fn number(p: &Json, key: &str) -> u64 {
    p.get(key).and_then(Json::as_u64).unwrap_or(0)
}

fn terminal_width() -> usize {
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

/// A table that fits the terminal: the description column takes what is left.
pub fn table(packages: &[Json]) -> String {
    let headers = ["NAME", "STATE", "INSTALLED", "AVAILABLE", "SIZE"];
    let rows: Vec<[String; 6]> = packages
        .iter()
        .map(|p| {
            [
                text(p, "name").to_owned(),
                text(p, "state").to_owned(),
                text(p, "installed-version").to_owned(),
                text(p, "available-version").to_owned(),
                human_bytes(number(p, "size")),
                text(p, "description").to_owned(),
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

pub fn info_text(p: &Json) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<18}{v}\n"));
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    field("Name:", text(p, "name").to_owned());
    field("Kind:", or_dash(text(p, "kind")));
    field("State:", text(p, "state").to_owned());
    if p.get("held").and_then(Json::as_bool) == Some(true) {
        field(
            "Held:",
            "yes (upgrade leaves it alone unless named)".to_owned(),
        );
    }
    if !text(p, "problem").is_empty() {
        field("Problem:", text(p, "problem").to_owned());
    }
    field("Installed:", or_dash(text(p, "installed-version")));
    field("Available:", or_dash(text(p, "available-version")));
    field("Download size:", human_bytes(number(p, "size")));
    field("Installed size:", human_bytes(number(p, "installed-size")));
    field("Repository:", or_dash(text(p, "repo")));
    field("Verified by:", or_dash(text(p, "verified-by")));
    field("Files:", number(p, "files").to_string());
    if let Some(caps) = p.get("capabilities").and_then(Json::as_object) {
        for (path, text) in caps {
            field(
                "Capabilities:",
                format!("/{path} {}", text.as_str().unwrap_or("")),
            );
        }
    }
    field("Description:", or_dash(text(p, "description")));
    out
}
