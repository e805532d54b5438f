//! spkctl as scripts use it: JSON output, exit codes, plain text off a terminal, the seed's
//! command names, and a clear word when the daemon is not there.

use serde_json::Value;
use spk_tests::daemon::{spkctl, workspace_root};
use spk_tests::{Env, Package, Repo};

const KEYS: [&str; 8] = [
    "name",
    "kind",
    "state",
    "installed-version",
    "available-version",
    "size",
    "installed-size",
    "description",
];

fn plasma(version: &str, text: &str) -> Package {
    Package::new("plasma", version)
        .description("KDE Plasma 6.6.5 desktop")
        .file("usr/share/plasma/version", text, 0o644)
}

fn qt6() -> Package {
    Package::new("qt6", "6.10.1-1")
        .system()
        .description("Qt 6 libraries")
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
}

/// Panic unless `row` is an object carrying every documented key (more keys are allowed:
/// scripts read the ones they know).
#[track_caller]
fn assert_row_shape(row: &Value) {
    let object = row
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {row}"));
    let missing: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| !object.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "{row} lacks {missing:?}");
    for key in ["size", "installed-size"] {
        assert!(row[key].is_u64(), "{key} is not a number in {row}");
    }
}

/// The sorted package names of `spkctl --json ARGS`.
async fn names(env: &Env, args: &[&str]) -> Vec<String> {
    let run = env.spkctl_json(args).await;
    run.assert_success();
    let mut names: Vec<String> = run
        .json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{run}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// `installed-version` of a package that is not installed: empty (or null).
fn not_installed(v: &Value) -> bool {
    v.is_null() || v == ""
}

#[tokio::test]
async fn list_json_shows_every_package_with_its_state() {
    let repo = Repo::new().with(plasma("6.6.5-1", "6.6.5\n")).with(qt6());
    let env = Env::new(&repo).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let next = Repo::new().with(plasma("6.6.6-1", "6.6.6\n")).with(qt6());
    env.publish(&next);
    env.spkctl(&["check"]).await.assert_code(100);

    let run = env.spkctl_json(&["list"]).await;

    run.assert_success();
    let rows = run.json();
    let rows = rows
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{run}"));
    assert_eq!(rows.len(), 2, "{run}");
    rows.iter().for_each(assert_row_shape);
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing:\n{run}"))
    };
    let p = row("plasma");
    assert_eq!(p["kind"], "userland");
    assert_eq!(p["state"], "upgradable");
    assert_eq!(p["installed-version"], "6.6.5-1");
    assert_eq!(p["available-version"], "6.6.6-1");
    assert_eq!(p["size"], next.get("plasma").size);
    assert_eq!(p["installed-size"], next.get("plasma").installed_size);
    assert_eq!(p["description"], "KDE Plasma 6.6.5 desktop");
    let q = row("qt6");
    assert_eq!(q["kind"], "system");
    assert_eq!(q["state"], "available");
    assert!(not_installed(&q["installed-version"]), "{q}");
    assert_eq!(q["available-version"], "6.10.1-1");
    assert_eq!(q["description"], "Qt 6 libraries");

    assert_eq!(names(&env, &["list", "--installed"]).await, ["plasma"]);
    assert_eq!(names(&env, &["list", "--upgradable"]).await, ["plasma"]);
    assert!(
        names(&env, &["list", "--available"])
            .await
            .contains(&"qt6".to_string())
    );
}

#[tokio::test]
async fn info_json_describes_one_package() {
    let repo = Repo::new().with(qt6());
    let env = Env::new(&repo).await;
    env.spkctl(&["install", "qt6"]).await.assert_success();

    let run = env.spkctl_json(&["info", "qt6"]).await;

    run.assert_success();
    let info = run.json();
    assert_row_shape(&info);
    assert_eq!(info["name"], "qt6");
    assert_eq!(info["kind"], "system");
    assert_eq!(info["state"], "installed");
    assert_eq!(info["installed-version"], "6.10.1-1");
    assert_eq!(info["available-version"], "6.10.1-1");
    assert_eq!(info["size"], repo.get("qt6").size);
    assert_eq!(info["installed-size"], repo.get("qt6").installed_size);

    let unknown = env.spkctl(&["info", "no-such-package"]).await;
    unknown.assert_code(1);
    assert!(
        unknown
            .error_line()
            .contains("unknown package 'no-such-package'"),
        "{unknown}"
    );
}

#[tokio::test]
async fn install_json_reports_the_transaction_and_its_packages() {
    let env = Env::new(&Repo::new().with(qt6())).await;

    let run = env.spkctl_json(&["install", "qt6"]).await;

    run.assert_success();
    let report = run.json();
    assert!(
        report["transaction"]
            .as_str()
            .is_some_and(|t| t.starts_with("/xyz/smech/Spk1/transaction/")),
        "{run}"
    );
    assert_eq!(report["state"], "finished", "{run}");
    assert_eq!(
        report["packages"],
        serde_json::json!([{"name": "qt6", "version": "6.10.1-1"}]),
        "{run}"
    );

    let failed = env.spkctl_json(&["install", "no-such-package"]).await;
    failed.assert_code(1);
    let report = failed.json();
    assert_eq!(report["state"], "failed", "{failed}");
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.UnknownPackage",
        "{failed}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown package 'no-such-package'")),
        "{failed}"
    );
    assert_eq!(report["packages"], serde_json::json!([]), "{failed}");

    let removed = env.spkctl_json(&["remove", "qt6"]).await;
    removed.assert_success();
    assert_eq!(removed.json()["state"], "finished", "{removed}");
    env.assert_absent("usr/lib/libQt6Core.so.6");
}

#[tokio::test]
async fn output_off_a_terminal_has_no_escape_codes() {
    let env = Env::new(&Repo::new().with(qt6())).await;
    let bus = env.bus.address().to_string();

    // No --no-progress: spkctl itself must notice that stdout/stderr are pipes.
    let install = spkctl(&["--bus", &bus, "--yes", "install", "qt6"]).await;
    let list = spkctl(&["--bus", &bus, "list"]).await;
    let failed = spkctl(&["--bus", &bus, "install", "no-such-package"]).await;

    install.assert_success();
    list.assert_success();
    failed.assert_code(1);
    for run in [&install, &list, &failed] {
        assert!(
            !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
            "escape codes in piped output:\n{run}"
        );
    }
    assert!(list.stdout.contains("qt6"), "{list}");
    assert!(failed.stderr.starts_with("error: ") || failed.stderr.contains("\nerror: "));
}

#[tokio::test]
async fn the_seed_command_names_still_work() {
    let env = Env::new(&Repo::new().with(plasma("6.6.5-1", "6.6.5\n")).with(qt6())).await;

    env.spkctl(&["system-install", "qt6"])
        .await
        .assert_success();
    env.spkctl(&["userland-install", "plasma"])
        .await
        .assert_success();
    env.assert_file("usr/lib/libQt6Core.so.6", b"qt core\n", 0o755);
    env.assert_file("usr/share/plasma/version", b"6.6.5\n", 0o644);

    env.publish(&Repo::new().with(plasma("6.6.6-1", "6.6.6\n")).with(qt6()));
    env.spkctl(&["entire-system-upgrade"])
        .await
        .assert_success();
    env.assert_file("usr/share/plasma/version", b"6.6.6\n", 0o644);
}

#[tokio::test]
async fn an_unreachable_daemon_exits_3_and_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus-here").display());

    let run = spkctl(&["--bus", &address, "list"]).await;

    run.assert_code(3);
    run.assert_stderr_contains("cannot reach spkd");
    run.assert_stderr_contains("rc-service spkd start");
    // One line, as README says of every error.
    assert_eq!(run.stderr.lines().count(), 1, "{run}");
    assert!(run.stderr.starts_with("error: "), "{run}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let env = Env::new(&Repo::new().with(qt6())).await;

    env.spkctl(&["frobnicate"]).await.assert_code(2);
    env.spkctl(&["install"]).await.assert_code(2);
    env.spkctl(&["list", "--no-such-flag"]).await.assert_code(2);
}

#[tokio::test]
async fn an_unknown_flag_is_not_told_of_an_unrelated_one() {
    let env = Env::new(&Repo::new().with(qt6())).await;

    let foo = env.spkctl(&["list", "--foo"]).await;
    let typo = env.spkctl(&["list", "--instaled"]).await;

    foo.assert_code(2);
    foo.assert_stderr_contains("unexpected argument '--foo'");
    assert!(!foo.stderr.contains("--root"), "{foo}");
    assert!(!foo.stderr.contains("similar argument"), "{foo}");
    // A real typo still gets its suggestion.
    typo.assert_code(2);
    typo.assert_stderr_contains("a similar argument exists: '--installed'");
}

#[tokio::test]
async fn help_names_each_alias_once() {
    let help = spkctl(&["--help"]).await;

    help.assert_success();
    for alias in [
        "system-install",
        "userland-install",
        "entire-system-upgrade",
    ] {
        assert_eq!(help.stdout.matches(alias).count(), 1, "{alias}:\n{help}");
    }
    assert!(help.stdout.contains("generate-completions"), "{help}");
    assert!(!help.stdout.contains("__complete-packages"), "{help}");
}

/// The command names `spkctl --help` lists (not `help` itself).
fn commands_in_help(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_manual_describes_every_command_with_an_example() {
    let help = spkctl(&["--help"]).await;
    let page = std::fs::read_to_string(workspace_root().join("man/spkctl.1")).unwrap();
    let commands = commands_in_help(&help.stdout);
    assert!(commands.len() >= 15, "{commands:?}\n{help}");

    for command in &commands {
        let escaped = command.replace('-', "\\-");
        let heading = page
            .lines()
            .any(|l| l.starts_with(".SS") && l.contains(&escaped));
        assert!(heading, "spkctl(1) has no section on {command}");
        assert!(
            page.contains(&format!("spkctl {escaped}")),
            "spkctl(1) has no example of {command}"
        );
    }
    assert!(page.contains(".SH EXIT STATUS"));
    for option in [
        "\\-\\-bus \" ADDRESS\"",
        "\\-\\-root \" DIR\"",
        "\\-\\-config \" FILE\"",
    ] {
        assert!(page.contains(option), "spkctl(1) lacks {option}");
    }
}

#[tokio::test]
async fn a_fresh_daemon_says_to_run_check_and_that_nothing_is_installed() {
    let env = Env::new(&Repo::new().with(plasma("6.6.5-1", "6.6.5\n")).with(qt6())).await;

    let before = env.spkctl(&["list"]).await;
    let check = env.spkctl(&["check"]).await;
    let after = env.spkctl(&["list"]).await;

    before.assert_success();
    before.assert_stderr_contains("No packages are known yet: run `spkctl check`");
    check.assert_success();
    assert!(
        check
            .stdout
            .contains("No packages are installed; 2 packages are available"),
        "{check}"
    );
    assert!(!check.stdout.contains("up to date"), "{check}");
    after.assert_success();
    assert!(after.stdout.contains("plasma") && after.stdout.contains("qt6"));
    assert!(after.stderr.is_empty(), "{after}");
}

#[tokio::test]
async fn check_counts_updates_in_plain_english() {
    let qt = |v: &str| Package::new("qt6", v).file("usr/lib/libQt6Core.so.6", v, 0o755);
    let env = Env::new(
        &Repo::new()
            .with(plasma("6.6.5-1", "6.6.5\n"))
            .with(qt("6.10.1-1")),
    )
    .await;
    env.spkctl(&["install", "plasma", "qt6"])
        .await
        .assert_success();

    let current = env.spkctl(&["check"]).await;
    env.publish(
        &Repo::new()
            .with(plasma("6.6.6-1", "6.6.6\n"))
            .with(qt("6.10.1-1")),
    );
    let one = env.spkctl(&["check"]).await;
    env.publish(
        &Repo::new()
            .with(plasma("6.6.6-1", "6.6.6\n"))
            .with(qt("6.10.2-1")),
    );
    let two = env.spkctl(&["check"]).await;

    current.assert_success();
    assert!(
        current.stdout.contains("The system is up to date."),
        "{current}"
    );
    one.assert_code(100);
    assert!(one.stdout.contains("\n1 update available:\n"), "{one}");
    two.assert_code(100);
    assert!(two.stdout.contains("\n2 updates available:\n"), "{two}");
}
