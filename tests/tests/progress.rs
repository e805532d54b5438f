//! Progress that tells the truth, as a person at a terminal sees it (a real pseudo-terminal,
//! [`spk_tests::terminal`]) against a throttled loopback mirror: each package's stages in order,
//! bytes from the cache shown and summed as such (the plan, the bars and the summary agree), and
//! `spkctl monitor` joining a running download with a header, the total line, no impossible rate
//! and a summary line at the end.

use std::time::Duration;

use spk_tests::repo::noise;
use spk_tests::terminal::{drawn_lines, on_terminal, strip_escapes};
use spk_tests::{Env, Fault, Package, Repo};

const PLASMA_TARBALL: &str = "/repo/plasma.tar.xz";

/// The mirror's pace in the tests below: `THROTTLE_CHUNK` every 100 ms.
const THROTTLE_CHUNK: usize = 16 * 1024;

/// 256 KiB that xz cannot shrink: 1.6 s at the throttled pace.
fn plasma() -> Package {
    Package::new("plasma", "1")
        .description("KDE Plasma desktop")
        .file("usr/bin/plasmashell", noise(1, 256 * 1024), 0o755)
        .file("usr/share/plasma/version", "1\n", 0o644)
}

/// Serve plasma's tarball `chunk` bytes every 100 ms; returns that rate in bytes per second.
fn throttle(env: &Env, chunk: usize) -> f64 {
    env.server.set_fault_times(
        PLASMA_TARBALL,
        Fault::Throttle {
            chunk,
            every: Duration::from_millis(100),
        },
        1,
    );
    chunk as f64 * 10.0
}

/// The lines the terminal drew, escape codes gone.
fn screen_lines(screen: &str) -> Vec<String> {
    drawn_lines(screen, usize::from(spk_tests::terminal::COLUMNS))
        .into_iter()
        .map(|l| l.trim_start().to_owned())
        .collect()
}

/// The index of the first drawn line where `package`'s stage column reads `stage`.
fn first_stage(lines: &[String], package: &str, stage: &str) -> Option<usize> {
    lines.iter().position(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(package) && words.next() == Some(stage)
    })
}

/// Every rate drawn (`160.00 KiB/s`), in bytes per second.
fn rates(lines: &[String]) -> Vec<f64> {
    let mut found = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let Some(unit) = pair[1].strip_suffix("/s,").or(pair[1].strip_suffix("/s")) else {
                continue;
            };
            let scale = match unit {
                "B" => 1.0,
                "KiB" => 1024.0,
                "MiB" => 1024.0 * 1024.0,
                "GiB" => 1024.0 * 1024.0 * 1024.0,
                _ => continue,
            };
            if let Ok(n) = pair[0].parse::<f64>() {
                found.push(n * scale);
            }
        }
    }
    found
}

/// The `Download …;` figure of the plan and the `… downloaded` one of the summary.
fn plan_and_summary_bytes(screen: &str) -> (String, String) {
    let plain = strip_escapes(screen);
    let plan = plain
        .split("Download ")
        .nth(1)
        .and_then(|rest| rest.split([';', '(']).next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("no plan with a download figure:\n{plain}"))
        .to_owned();
    let summary = plain
        .lines()
        .find(|l| l.contains(" downloaded"))
        .and_then(|l| l.split(" downloaded").next())
        .and_then(|l| l.rsplit(", ").next())
        .unwrap_or_else(|| panic!("no summary with a downloaded figure:\n{plain}"))
        .to_owned();
    (plan, summary)
}

#[tokio::test]
async fn bars_show_a_package_downloading_then_installing_then_done() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    throttle(&env, THROTTLE_CHUNK);

    let run = on_terminal(&env, &["--yes", "install", "plasma"], "", &[]).await;

    assert_eq!(run.code, Some(0), "{run}");
    let lines = screen_lines(&run.screen);
    let downloading = first_stage(&lines, "plasma", "downloading");
    let installing = first_stage(&lines, "plasma", "installing");
    let done = first_stage(&lines, "plasma", "done");
    assert!(
        downloading.is_some() && downloading < installing && installing < done,
        "stages out of order (downloading {downloading:?}, installing {installing:?}, done \
         {done:?}): {run}"
    );
    // The total line: elapsed time, packages done, bytes; the rate only while bytes move.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("total ") && l.contains(" of 1 done") && l.contains("KiB/")),
        "no total line: {run}"
    );
    let last_plasma = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("plasma "))
        .unwrap();
    assert!(
        last_plasma.starts_with("plasma done") && !last_plasma.contains("/s"),
        "a finished package shows no rate: {last_plasma:?}"
    );
    for line in &lines {
        assert!(
            !line.contains("00:00:"),
            "one time format (0:12), not two: {line:?}"
        );
    }
    let summary: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("Installed 1 package (plasma 1) in "))
        .collect();
    assert_eq!(summary.len(), 1, "{run}");
    assert!(
        summary[0].ends_with(" downloaded.") && !summary[0].contains("from cache"),
        "{run}"
    );
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);

    // A removal: waiting, removing, done; no bytes, no rate.
    let run = on_terminal(&env, &["--yes", "remove", "plasma"], "", &[]).await;

    assert_eq!(run.code, Some(0), "{run}");
    let lines = screen_lines(&run.screen);
    let removing = first_stage(&lines, "plasma", "removing");
    let done = first_stage(&lines, "plasma", "done");
    assert!(
        removing.is_some() && removing < done,
        "removal stages out of order (removing {removing:?}, done {done:?}): {run}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Removed 1 package (plasma 1) in ") && l.ends_with(" s.")),
        "{run}"
    );
}

#[tokio::test]
async fn a_cached_package_is_shown_and_counted_as_from_the_cache() {
    let env = Env::new(&Repo::new().with(plasma())).await;

    // First only into the cache: the plan's download is what the summary says was downloaded.
    let fetch = on_terminal(&env, &["install", "--download-only", "plasma"], "y\n", &[]).await;
    assert_eq!(fetch.code, Some(0), "{fetch}");
    let (planned, downloaded) = plan_and_summary_bytes(&fetch.screen);
    assert!(planned != "0 B" && planned == downloaded, "{fetch}");
    assert!(
        strip_escapes(&fetch.screen).contains("Fetched 1 package (plasma) in "),
        "{fetch}"
    );
    assert_eq!(env.server.tarball_gets().len(), 1);

    // Then installed: nothing to download, the bytes come from the cache.
    let install = on_terminal(&env, &["install", "plasma"], "y\n", &[]).await;

    assert_eq!(install.code, Some(0), "{install}");
    let (planned, downloaded) = plan_and_summary_bytes(&install.screen);
    assert_eq!(
        (planned.as_str(), downloaded.as_str()),
        ("0 B", "0 B"),
        "{install}"
    );
    assert!(
        strip_escapes(&install.screen).contains("Download 0 B (1 package from the cache);"),
        "{install}"
    );
    let lines = screen_lines(&install.screen);
    assert!(
        first_stage(&lines, "plasma", "cached").is_some()
            && first_stage(&lines, "plasma", "downloading").is_none(),
        "the bar says the bytes come from the cache: {install}"
    );
    let summary = lines
        .iter()
        .find(|l| l.starts_with("Installed 1 package (plasma 1) in "))
        .unwrap_or_else(|| panic!("no summary: {install}"));
    assert!(
        summary.contains(", 0 B downloaded, ") && summary.ends_with(" from cache."),
        "{summary:?}"
    );
    assert_eq!(
        env.server.tarball_gets().len(),
        1,
        "nothing downloaded again"
    );
    env.assert_file("usr/share/plasma/version", b"1\n", 0o644);
}

fn qt6() -> Package {
    Package::new("qt6", "6.10.1-1")
        .system()
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
}

#[tokio::test]
async fn monitor_joining_a_download_shows_the_packages_the_total_and_a_summary() {
    let env = Env::new(&Repo::new().with(plasma()).with(qt6())).await;
    // Half the pace (3.2 s for plasma): spkd repeats standing stages about every second.
    let pace = throttle(&env, THROTTLE_CHUNK / 2);
    let installing = env.spawn_spkctl(&["install", "plasma", "qt6"]);
    env.server.wait_for_gets(PLASMA_TARBALL, 1).await;
    // Join once part of the download is in: its bytes must not count as moved meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let run = on_terminal(&env, &["monitor"], "", &[]).await;

    assert_eq!(run.code, Some(0), "{run}");
    let lines = screen_lines(&run.screen);
    assert!(
        lines.iter().any(|l| l.starts_with("Following transaction ")
            && l.contains(": install plasma, qt6 (uid 0)")),
        "a header with the kind and the packages: {run}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("total ") && l.contains(" of 2 done")),
        "a total line: {run}"
    );
    // qt6 is small: staged (or waiting for a slot) before the monitor joined; spkd repeats
    // the stage of packages whose stage stands, so it shows before its commit.
    let qt6 = lines
        .iter()
        .find_map(|l| l.strip_prefix("qt6 "))
        .and_then(|rest| rest.split_whitespace().next());
    assert!(
        qt6.is_some_and(|stage| !["installing", "done"].contains(&stage)),
        "qt6 first shown {qt6:?}: {run}"
    );
    assert!(first_stage(&lines, "plasma", "done").is_some(), "{run}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("Installed 2 packages (")
            && last.contains(", followed for ")
            && last.ends_with(" downloaded."),
        "the last line is the summary: {run}"
    );
    assert!(
        !run.screen.contains("/xyz/smech"),
        "no bare object path: {run}"
    );
    // Rates measured from the moment it joined: never far above what the mirror sends.
    let rates = rates(&lines);
    assert!(!rates.is_empty(), "no rate while the download ran: {run}");
    for rate in rates {
        assert!(
            rate <= 3.0 * pace,
            "{rate} B/s shown for a mirror that sends {pace} B/s: {run}"
        );
    }
    let out = installing.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test]
async fn a_daemon_that_dies_mid_download_is_reported_while_the_bars_tick() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    // 10 KiB/s: the download is far from done when spkd dies.
    throttle(&env, 1024);
    let mut installing = env.spawn_spkctl(&["install", "plasma"]);
    env.server.wait_for_gets(PLASMA_TARBALL, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &env.spkd.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // spkctl redraws every half second, yet notices the silence and asks spkd, which is gone.
    let status = tokio::time::timeout(Duration::from_secs(20), installing.wait())
        .await
        .expect("spkctl noticed that spkd went away")
        .unwrap();
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    installing
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("spkd went away"), "{stderr}");
}
