//! Named crash points for the crash-safety tests. `SPKD_FAILPOINTS=a,b` makes spkd abort (as a
//! power cut or `kill -9` would: no destructors, no cleanup) when it reaches point `a` or `b`;
//! `NAME=panic` panics there instead, to test that a panic fails only its transaction;
//! `NAME=error` makes the step there fail as an I/O error would (where [`error`] is asked);
//! `NAME=pause` makes it take a second longer (where [`pause`] is asked).
//! Unset (always, in production), a check is one load of an empty list.

use std::sync::OnceLock;

fn active() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("SPKD_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Crash here if the point `name` is armed.
pub fn hit(name: &str) {
    let points = active();
    if points.is_empty() {
        return;
    }
    for p in points {
        if p == name {
            eprintln!("spkd: failpoint {name}: aborting");
            std::process::abort();
        }
        if p.strip_suffix("=panic") == Some(name) {
            panic!("failpoint {name}");
        }
    }
}

/// Whether the point `name` is armed to fail with an error (`NAME=error`).
pub fn error(name: &str) -> bool {
    active()
        .iter()
        .any(|p| p.strip_suffix("=error") == Some(name))
}

/// Sleep a second if the point `name` is armed with `NAME=pause` (work that must not be cut
/// short, made slow enough for a test to see whether it was).
pub fn pause(name: &str) {
    if active()
        .iter()
        .any(|p| p.strip_suffix("=pause") == Some(name))
    {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
