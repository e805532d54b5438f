//! `spkctl about`: spk's and spkd's versions, the root and sources spkd manages, this machine's
//! hardware (read live from /proc and /sys), and credits.

use spk_dbus::{ManagerProxy, RepositoryRow};

use crate::connect::Failure;
use crate::display::human_bytes;

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model} ({threads} threads)")
}

fn memory() -> String {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    format!(
        "{} total, {} available",
        human_bytes(kib("MemTotal:") * 1024),
        human_bytes(kib("MemAvailable:") * 1024)
    )
}

/// GPUs from /sys/class/drm: PCI vendor:device and the kernel driver.
fn gpus() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/drm") else {
        return out;
    };
    let mut cards: Vec<_> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("card") && !n.contains('-'))
        .collect();
    cards.sort();
    for card in cards {
        let dev = format!("/sys/class/drm/{card}/device");
        let read = |f: &str| {
            std::fs::read_to_string(format!("{dev}/{f}"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let driver = std::fs::read_link(format!("{dev}/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "no driver".to_owned());
        out.push(format!(
            "{card}: {}:{} ({driver})",
            read("vendor").trim_start_matches("0x"),
            read("device").trim_start_matches("0x")
        ));
    }
    out
}

fn kernel() -> String {
    let u = rustix::system::uname();
    format!(
        "{} {} {}",
        u.sysname().to_string_lossy(),
        u.release().to_string_lossy(),
        u.machine().to_string_lossy()
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `3 days`, `5 hours`, `12 minutes`, `less than a minute`.
fn age(secs: u64) -> String {
    let unit = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..60 => "less than a minute".to_owned(),
        60..3600 => unit(secs / 60, "minute"),
        3600..86_400 => unit(secs / 3600, "hour"),
        _ => unit(secs / 86_400, "day"),
    }
}

/// A `GetRepositories` row as JSON: name, kind, location, release, timestamp, signed, proxy.
pub fn repo_json(r: &RepositoryRow) -> serde_json::Value {
    serde_json::json!({
        "name": r.name, "kind": r.kind,
        "location": r.location, "release": r.release,
        "timestamp": r.timestamp, "signed": r.signed, "proxy": r.proxy,
    })
}

/// What the index in use is, for people: `release 2026.11.25, signed 3 days ago`.
pub fn index_text(r: &RepositoryRow) -> String {
    let release = &r.release;
    if release.is_empty() {
        return "not refreshed yet".to_owned();
    }
    let timestamp = r.timestamp;
    let how = if r.signed {
        "signed"
    } else {
        "published (unsigned)"
    };
    match timestamp {
        0 => format!("release {release}, undated"),
        t if t > now() => format!("release {release}, {how} {} from now", age(t - now())),
        t => format!("release {release}, {how} {} ago", age(now() - t)),
    }
}

pub async fn about(manager: &ManagerProxy<'_>, json: bool) -> Result<u8, Failure> {
    let version = manager.version().await?;
    let root = manager.root().await?;
    let repos = manager.get_repositories().await?;
    let keys = manager.trusted_keys().await?;
    let keys_dir = std::path::Path::new(&root).join("etc/spk/keys");
    let gpus = gpus();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "spkctl-version": env!("CARGO_PKG_VERSION"),
                "spkd-version": version,
                "root": root,
                "repositories": repos.iter().map(repo_json).collect::<Vec<_>>(),
                "signatures": {"on": !keys.is_empty(), "keys": keys},
                "cpu": cpu(), "memory": memory(), "gpus": gpus, "kernel": kernel(),
            })
        );
        return Ok(0);
    }
    println!("spk — the SmechOS package manager");
    println!("  spkctl {}   spkd {version}", env!("CARGO_PKG_VERSION"));
    println!("  Root:       {root}");
    for r in &repos {
        println!(
            "  Source:     {} ({}) {} — {}",
            r.name,
            r.kind,
            r.location,
            index_text(r)
        );
        println!("              proxy: {}", r.proxy);
    }
    if keys.is_empty() {
        println!("  Signatures: off (no keys in {})", keys_dir.display());
    } else {
        println!("  Signatures: on (keys: {})", keys.join(", "));
    }
    println!("This machine");
    println!("  CPU:        {}", cpu());
    println!("  Memory:     {}", memory());
    if gpus.is_empty() {
        println!("  GPU:        none found");
    }
    for g in gpus {
        println!("  GPU:        {g}");
    }
    println!("  Kernel:     {}", kernel());
    println!("Credits");
    println!("  The SmechOS developers. Built on tokio, zbus, redb, reqwest, rustls, liblzma,");
    println!("  astral-tokio-tar, minisign, clap and indicatif; thank you to their authors.");
    Ok(0)
}
