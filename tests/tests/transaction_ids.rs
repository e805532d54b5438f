//! One number per transaction: N of `/xyz/smech/Spk1/transaction/N` is its `spkctl history` id,
//! across spkd restarts, and what `monitor N`, `cancel N` and spkd's log call it; the history
//! keeps failures as one line, leaves out no-ops and typos, and prints local time without
//! breaking a name at a narrow width.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use spk_tests::client::Options;
use spk_tests::daemon::{CtlOutput, binary};
use spk_tests::{Env, Fault, Package, Repo};

const PLASMA_TARBALL: &str = "/repo/plasma.tar.xz";
/// Long enough that a narrow terminal cannot hold it beside the other columns.
const LONG_NAME: &str = "kde-frameworks-extra-plugins";

fn plasma(version: &str) -> Package {
    Package::new("plasma", version).file("usr/share/plasma/version", format!("{version}\n"), 0o644)
}

fn qt6() -> Package {
    Package::new("qt6", "6.10.1-1")
        .system()
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
}

fn long_named() -> Package {
    Package::new(LONG_NAME, "6.21.0-1").file("usr/lib/kf6/extra.so", "extra\n", 0o755)
}

/// N of a transaction path.
fn number(path: &str) -> u64 {
    path.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{path} does not end in a number"))
}

/// `spkctl --bus ADDR --no-progress --yes ARGS` with `vars` set in its environment.
async fn spkctl_with(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> CtlOutput {
    let mut all = vec!["--bus", env.bus.address(), "--no-progress", "--yes"];
    all.extend_from_slice(args);
    let out = tokio::process::Command::new(binary("spkctl"))
        .args(&all)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("spkctl finished")
        .expect("run spkctl");
    CtlOutput {
        args: all.iter().map(|a| a.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn history_json(env: &Env) -> Vec<Value> {
    let run = env.spkctl_json(&["history"]).await;
    run.assert_success();
    run.json()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not an array:\n{run}"))
}

/// Install `names` over D-Bus and wait for the end: the transaction's path.
async fn install(env: &Env, names: &[&str]) -> String {
    let client = env.client().await;
    let mut watch = client.watch().await;
    let path = client
        .install(names, Options::default())
        .await
        .expect("Install");
    let log = watch
        .until_finished(path.as_str(), Duration::from_secs(60))
        .await;
    assert_eq!(log.finished.0, "finished", "{log:#?}");
    path.to_string()
}

#[tokio::test]
async fn a_transaction_keeps_its_number_in_the_history_and_across_a_restart() {
    let mut env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;
    let first = install(&env, &["plasma"]).await;

    env.restart_spkd().await;
    let second = install(&env, &["qt6"]).await;

    let (first, second) = (number(&first), number(&second));
    assert!(
        second > first,
        "a restarted spkd numbered again from the start: {first}, then {second}"
    );
    let entries = history_json(&env).await;
    let ids: Vec<(u64, Value)> = entries
        .iter()
        .map(|e| (e["id"].as_u64().unwrap_or(0), e["packages"].clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (second, serde_json::json!(["qt6"])),
            (first, serde_json::json!(["plasma"]))
        ],
        "history ids are the transactions' numbers"
    );
    let text = env.spkctl(&["history"]).await;
    text.assert_success();
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("qt6"))
        .unwrap_or_else(|| panic!("no qt6 line:\n{text}"));
    assert!(
        line.trim_start().starts_with(&format!("{second}  ")),
        "{text}"
    );
    assert!(
        env.spkd
            .log()
            .contains(&format!("transaction{{id={second} ")),
        "spkd's log names the transaction by its number:\n{}",
        env.spkd.log()
    );
}

#[tokio::test]
async fn monitor_and_cancel_take_the_number_history_shows() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    let (installing, path) = env
        .spawn_held(
            &["install", "plasma"],
            PLASMA_TARBALL,
            Duration::from_secs(3),
        )
        .await;
    let id = number(path.as_str()).to_string();

    let monitor = env.spkctl(&["monitor", &id]).await;

    monitor.assert_success();
    assert!(
        monitor
            .stdout
            .contains(&format!("Following transaction {id}: install plasma"))
            && monitor.stdout.contains("Installed 1 package (plasma 1)"),
        "{monitor}"
    );
    let out = installing.wait_with_output().await.expect("spkctl install");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(history_json(&env).await[0]["id"].as_u64(), id.parse().ok());
    // Finished, still on the bus for a while: monitor tells how it ended.
    let again = env.spkctl(&["monitor", &id]).await;
    again.assert_success();
    assert!(
        again.stdout.contains(&format!(
            "The transaction {id} (install plasma, uid 0) has finished."
        )),
        "{again}"
    );
    let unknown = env.spkctl(&["monitor", "999999"]).await;
    unknown.assert_code(1);
    assert!(
        unknown
            .error_line()
            .contains("transaction 999999 is not running"),
        "{unknown}"
    );
    env.spkctl(&["monitor", "plasma"]).await.assert_code(2);

    // Cancelled by its number: the history keeps it under the same one.
    env.publish(&Repo::new().with(plasma("2")));
    env.server
        .set_fault(PLASMA_TARBALL, Fault::Stall(Duration::from_secs(60)));
    let upgrading = env.spawn_spkctl(&["upgrade"]);
    env.server.wait_for_gets(PLASMA_TARBALL, 2).await;
    let path = env
        .client()
        .await
        .transactions()
        .await
        .into_iter()
        .max_by_key(|p| number(p.as_str()))
        .expect("the upgrade");
    let id = number(path.as_str());

    let cancel = env.spkctl(&["cancel", &id.to_string()]).await;

    cancel.assert_success();
    assert!(
        cancel
            .stdout
            .contains(&format!("Cancelling transaction {id}")),
        "{cancel}"
    );
    let out = tokio::time::timeout(Duration::from_secs(20), upgrading.wait_with_output())
        .await
        .expect("the upgrading spkctl ends once cancelled")
        .expect("spkctl upgrade");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let newest = &history_json(&env).await[0];
    assert_eq!(newest["id"].as_u64(), Some(id), "{newest}");
    assert_eq!(newest["state"], "cancelled", "{newest}");
}

#[tokio::test]
async fn a_failure_is_one_history_line_and_no_ops_and_typos_leave_none() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6())).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    // The mirror loses qt6's file: the install fails after it became a transaction.
    env.server.set_fault("/repo/qt6.tar.xz", Fault::Status(404));
    env.spkctl(&["install", "qt6"]).await.assert_code(1);
    env.server.clear_fault("/repo/qt6.tar.xz");
    let before = history_json(&env).await;
    assert_eq!(before.len(), 2, "{before:#?}");

    // Nothing to do, and a typo: neither is history.
    let noop = env.spkctl(&["upgrade"]).await;
    noop.assert_success();
    let again = env.spkctl(&["install", "plasma"]).await;
    again.assert_success();
    let typo = env.spkctl(&["install", "plasmaa"]).await;
    typo.assert_code(1);
    assert!(
        typo.error_line().contains("plasmaa"),
        "the typo is still refused, and said: {typo}"
    );
    assert_eq!(history_json(&env).await, before);

    // Wide enough for any line: the reason is short.
    let text = spkctl_with(&env, &[("COLUMNS", "200")], &["history"]).await;
    text.assert_success();
    let failed: Vec<&str> = text.stdout.lines().filter(|l| l.contains("qt6")).collect();
    eprintln!("{}", text.stdout);
    assert_eq!(failed.len(), 1, "one line:\n{text}");
    let id = before[0]["id"].as_u64().unwrap_or(0);
    let line = failed[0];
    let words: Vec<&str> = line.split_whitespace().collect();
    // ID, date, time, user, action, the names, then why.
    assert_eq!(words[0], id.to_string(), "{text}");
    assert_eq!(&words[3..6], ["root", "install", "qt6"], "{text}");
    assert_eq!(words[6], "failed:", "{text}");
    assert!(line.contains("404"), "the short reason: {text}");
}

#[tokio::test]
async fn history_shows_local_time_and_keeps_names_whole_at_a_narrow_width() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6()).with(long_named())).await;
    env.spkctl(&["install", "plasma", "qt6", LONG_NAME])
        .await
        .assert_success();
    let started = history_json(&env).await[0]["started"]
        .as_u64()
        .expect("a start time");

    let utc = spkctl_with(&env, &[("TZ", "UTC"), ("COLUMNS", "200")], &["history"]).await;
    let kolkata = spkctl_with(
        &env,
        &[("TZ", "Asia/Kolkata"), ("COLUMNS", "200")],
        &["history"],
    )
    .await;

    utc.assert_success();
    kolkata.assert_success();
    eprintln!(
        "TZ=UTC:\n{}TZ=Asia/Kolkata:\n{}",
        utc.stdout, kolkata.stdout
    );
    let when = |run: &CtlOutput| -> (String, String) {
        let line = run.stdout.lines().nth(1).unwrap_or_default().to_owned();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() > 3, "{run}");
        (words[1].to_owned(), words[2].to_owned())
    };
    let (_, time) = when(&utc);
    let minutes = |t: &str| -> i64 {
        let (h, m) = t.split_once(':').expect("HH:MM");
        h.parse::<i64>().unwrap() * 60 + m.parse::<i64>().unwrap()
    };
    // The start time the machine-readable history has, in UTC, to the minute.
    let started = i64::try_from(started).expect("a time");
    assert_eq!(minutes(&time), started / 60 % (24 * 60), "{utc}");
    let (_, local) = when(&kolkata);
    // India is 5 h 30 ahead of UTC (a day later past 18:30 UTC).
    assert_eq!(
        (minutes(&local) - minutes(&time)).rem_euclid(24 * 60),
        5 * 60 + 30,
        "{utc}\n{kolkata}"
    );

    let narrow = spkctl_with(&env, &[("TZ", "UTC"), ("COLUMNS", "40")], &["history"]).await;
    narrow.assert_success();
    eprintln!("COLUMNS=40:\n{}", narrow.stdout);
    assert!(
        narrow.stdout.lines().any(|l| l.contains(LONG_NAME)),
        "a name broken across lines:\n{}",
        narrow.stdout
    );
    for line in narrow.stdout.lines() {
        assert!(
            line.chars().count() <= 40,
            "a line wider than COLUMNS:\n{}",
            narrow.stdout
        );
    }
    for name in ["plasma", "qt6", "6.21.0-1"] {
        assert!(narrow.stdout.contains(name), "{}", narrow.stdout);
    }
}
