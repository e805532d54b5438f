//! `spkctl history`: past transactions as spkd recorded them (persisted across restarts), one
//! line each, in local time, under the number their bus object had
//! (`/xyz/smech/Spk1/transaction/N`), so `monitor N`, `cancel N` and `history undo N` name the
//! same transaction.

use std::time::{Duration, UNIX_EPOCH};

use spk_dbus::{HistoryChange, HistoryRow, ManagerProxy, State};

use crate::connect::Failure;

/// `secs` (unix seconds) as a local time to the minute, e.g. `2026-12-02 14:03`: the zone of
/// `TZ`, else of `/etc/localtime`, else UTC.
pub fn when(secs: u64) -> String {
    let local = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::system()));
    match local {
        Some(t) => t.strftime("%Y-%m-%d %H:%M").to_string(),
        // Beyond what a calendar holds: say it the machine's way.
        None => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
    }
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
    print!(
        "{}",
        table(&entries, crate::packages::terminal_width(), &user_name)
    );
    Ok(0)
}

/// Fewest columns the last column keeps beside the others; on a narrower terminal it goes on
/// the lines below, indented by [`NARROW_INDENT`].
const MIN_DETAIL: usize = 24;
const NARROW_INDENT: usize = 6;
/// Longest failure reason shown; `--json` has all of it.
const SHORT_REASON: usize = 100;

/// The history as lines no wider than `width` where the words allow: the last column breaks
/// between package names (then between words), never inside one.
fn table(entries: &[HistoryRow], width: usize, user: &dyn Fn(u32) -> String) -> String {
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|d| {
            [
                d.id.to_string(),
                when(d.started),
                user(d.uid),
                d.kind.as_str().to_owned(),
            ]
        })
        .collect();
    let headers = ["ID", "TIME", "USER", "ACTION"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let columns = |cells: [&str; 4]| {
        format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  ",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    let lead = widths.iter().map(|w| w + 2).sum::<usize>();
    let (indent, room) = if width >= lead + MIN_DETAIL {
        (lead, width - lead)
    } else {
        (NARROW_INDENT, width.saturating_sub(NARROW_INDENT).max(1))
    };
    let mut out = if indent == lead {
        columns(headers) + "WHAT"
    } else {
        columns(headers).trim_end().to_owned()
    };
    out.push('\n');
    for (d, row) in entries.iter().zip(&rows) {
        let first = columns([&row[0], &row[1], &row[2], &row[3]]);
        let lines = wrap(&detail(d), room);
        if indent == lead {
            out.push_str(&first);
        } else {
            out.push_str(first.trim_end());
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&lines.join(&format!("\n{}", " ".repeat(indent))));
        out.push('\n');
    }
    out
}

/// What a history line says after its action: the changes; for a transaction that failed or
/// was cancelled, what it changed (else the names asked for) and why it ended. Each inner
/// vector is one unit, kept on one line when it fits.
fn detail(d: &HistoryRow) -> Vec<Vec<String>> {
    let mut units: Vec<Vec<String>> = Vec::new();
    if d.changes.is_empty() && d.state != State::Finished {
        if d.packages.is_empty() {
            units.push(vec!["(all)".to_owned()]);
        }
        units.extend(d.packages.iter().map(|n| vec![n.clone()]));
    }
    let n = d.changes.len();
    for (i, c) in d.changes.iter().enumerate() {
        let mut words = change_words(c);
        if i + 1 < n
            && let Some(last) = words.last_mut()
        {
            last.push(',');
        }
        units.push(words);
    }
    match d.state {
        State::Failed => {
            units.push(vec!["failed:".to_owned()]);
            units.extend(short_reason(&d.error).into_iter().map(|w| vec![w]));
        }
        State::Cancelled => units.push(vec!["cancelled".to_owned()]),
        _ if units.is_empty() => units.push(vec!["-".to_owned()]),
        _ => {}
    }
    units
}

fn change_words(c: &HistoryChange) -> Vec<String> {
    let (n, f, t) = (c.name.clone(), c.from.clone(), c.to.clone());
    match (f.is_empty(), t.is_empty()) {
        (true, _) => vec![n, t],
        (false, true) => vec![n, f, "removed".to_owned()],
        _ => vec![n, f, "->".to_owned(), t],
    }
}

/// The first line of `error`, at most [`SHORT_REASON`] characters, cut between words.
fn short_reason(error: &str) -> Vec<String> {
    let first = error.lines().next().unwrap_or_default();
    let mut words = Vec::new();
    let mut used = 0;
    for word in first.split_whitespace() {
        let len = word.chars().count();
        if used + len > SHORT_REASON && !words.is_empty() {
            words.push("…".to_owned());
            break;
        }
        used += len + 1;
        words.push(word.to_owned());
    }
    if words.is_empty() {
        words.push("(no reason given)".to_owned());
    }
    words
}

/// Lay `units` out in lines of at most `room` characters: a unit whole when it fits on a line
/// of its own, else broken between its words; a word longer than `room` stays whole.
pub(crate) fn wrap(units: &[Vec<String>], room: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut put = |line: &mut String, word: &str| {
        let len = line.chars().count();
        let extra = word.chars().count() + usize::from(len > 0);
        if len > 0 && len + extra > room {
            lines.push(std::mem::take(line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    };
    for unit in units {
        let text = unit.join(" ");
        let len = text.chars().count();
        if len <= room {
            put(&mut line, &text);
        } else {
            for word in unit {
                put(&mut line, word);
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The user name of `uid` on this machine (`/etc/passwd`), else the number.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (id == uid && !name.is_empty()).then(|| name.to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spk_dbus::Kind;

    fn row(id: u64, state: State, packages: &[&str], changes: &[(&str, &str, &str)]) -> HistoryRow {
        HistoryRow {
            id,
            started: 0,
            finished: 0,
            uid: 0,
            kind: Kind::Install,
            packages: packages.iter().map(|s| s.to_string()).collect(),
            state,
            error: if state == State::Failed {
                "download of plasma.tar.xz failed: connection refused".into()
            } else {
                String::new()
            },
            changes: changes
                .iter()
                .map(|(n, f, t)| HistoryChange {
                    name: n.to_string(),
                    from: f.to_string(),
                    to: t.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_failure_is_one_line_with_its_names_and_reason() {
        let text = table(
            &[row(7, State::Failed, &["plasma", "qt6"], &[])],
            200,
            &|_| "root".into(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0].find("WHAT"),
            lines[1].find("plasma"),
            "the last column under its header:\n{text}"
        );
        assert!(
            lines[1].ends_with(
                "root  install  plasma qt6 failed: download of plasma.tar.xz failed: connection refused"
            ),
            "{text}"
        );
        assert!(lines[1].trim_start().starts_with("7  "), "{text}");
    }

    #[test]
    fn narrow_lines_break_between_names_not_inside_one() {
        let long = "kde-frameworks-with-a-rather-long-name";
        let d = row(
            12,
            State::Finished,
            &[],
            &[
                ("plasma", "", "6.6.5-1"),
                (long, "", "6.21.0-1"),
                ("qt6", "", "6.10.1-1"),
            ],
        );
        for width in [20, 40, 60, 80] {
            let text = table(std::slice::from_ref(&d), width, &|_| "root".into());
            assert!(text.lines().any(|l| l.contains(long)), "{width}:\n{text}");
            // The first columns are 35 wide: narrower terminals fold those, not spkctl.
            for l in text.lines().filter(|_| width >= 40) {
                assert!(
                    l.chars().count() <= width || l.trim() == long,
                    "{width}: a line too long:\n{text}"
                );
            }
            assert!(text.contains("6.21.0-1"), "{text}");
        }
    }

    #[test]
    fn a_reason_is_cut_between_words() {
        let words = short_reason(&"word ".repeat(100));
        assert_eq!(words.last().map(String::as_str), Some("…"));
        assert!(words.iter().map(|w| w.len() + 1).sum::<usize>() <= SHORT_REASON + 4);
    }
}
