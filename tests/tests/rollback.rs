//! The way back, and the way to stay: `spkctl rollback` installs the previous build of a
//! package again from the cache (checked against the sha256 recorded when it was installed,
//! whether or not the repository still offers it), `spkctl history undo ID` reverts what one
//! past transaction changed, and held packages are left alone by `upgrade` (and by the update
//! count) unless named.

use spk_tests::{Env, Package, Repo};

const NOT_AVAILABLE: &str = "xyz.smech.Spk1.Error.NotAvailable";
const VERIFICATION: &str = "xyz.smech.Spk1.Error.Verification";

fn plasma(version: &str) -> Package {
    let p = Package::new("plasma", version)
        .file("usr/bin/plasmashell", format!("plasma {version}\n"), 0o755)
        .file(&format!("usr/share/plasma/only-in-{version}"), "x\n", 0o644);
    if version == "1" {
        p.file("usr/share/plasma/theme", "old theme\n", 0o644)
    } else {
        p
    }
}

fn qt6(version: &str) -> Package {
    Package::new("qt6", version).file("usr/lib/libQt6Core.so.6", format!("qt {version}\n"), 0o755)
}

/// `(installed version, state)` of `name`, as `spkctl info` says.
async fn installed(env: &Env, name: &str) -> (String, String) {
    let info = env.spkctl_json(&["info", name]).await;
    let json = info.json();
    (
        json["installed-version"].as_str().unwrap_or("").to_owned(),
        json["state"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn rollback_goes_back_to_the_previous_version_even_when_the_repository_dropped_it() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let with_1 = env.snapshot();
    env.publish(&Repo::new().with(plasma("2")));
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);
    env.server.clear_requests();

    let run = env.spkctl(&["rollback", "plasma"]).await;

    run.assert_success();
    assert!(
        run.stdout.contains("Rolled back 1 package (plasma 1) in "),
        "{run}"
    );
    with_1.assert_same_content(&env.snapshot());
    assert_eq!(
        installed(&env, "plasma").await,
        ("1".into(), "upgradable".into())
    );
    assert!(
        env.server.tarball_gets().is_empty(),
        "a rollback downloads nothing: {:?}",
        env.server.tarball_gets()
    );
    env.spkctl(&["verify"]).await.assert_success();
    let history = env.spkctl_json(&["history"]).await.json();
    assert_eq!(history[0]["kind"], "rollback", "{history}");
    assert_eq!(
        history[0]["changes"][0],
        serde_json::json!({"name": "plasma", "from": "2", "to": "1"})
    );
    // And forward again: 2 is the previous build now.
    env.spkctl(&["rollback", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);
}

#[tokio::test]
async fn rollback_with_nothing_to_go_back_to_says_so() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();

    let run = env.spkctl_json(&["rollback", "plasma"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], NOT_AVAILABLE, "{run}");
    assert_eq!(
        run.json()["error-message"],
        "there is no earlier version of plasma in the cache to go back to (it keeps \
         keep_versions = 2 per package)"
    );
}

#[tokio::test]
async fn a_damaged_cached_tarball_is_refused_and_nothing_changes() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let v1 = Repo::new().with(plasma("1")).get("plasma").sha256.clone();
    env.publish(&Repo::new().with(plasma("2")));
    env.spkctl(&["upgrade"]).await.assert_success();
    let cached = env.path(&format!("var/cache/spk/{v1}.tar.xz"));
    let mut bytes = std::fs::read(&cached).expect("version 1 is cached");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&cached, bytes).unwrap();
    let before = env.snapshot();

    let run = env.spkctl_json(&["rollback", "plasma"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], VERIFICATION, "{run}");
    let message = run.json()["error-message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    eprintln!("user sees: {message}");
    assert!(
        message.starts_with(&format!(
            "plasma 1: its cached tarball {} is damaged, and no repository offers this version \
             to download again: ",
            cached.display()
        )),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert_eq!(installed(&env, "plasma").await.0, "2");
}

#[tokio::test]
async fn history_undo_reverts_an_install_an_upgrade_and_a_remove() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6("1"))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.spkctl(&["install", "qt6"]).await.assert_success();
    env.publish(&Repo::new().with(plasma("2")).with(qt6("1")));
    env.spkctl(&["upgrade"]).await.assert_success();
    env.spkctl(&["remove", "qt6"]).await.assert_success();
    let history = env.spkctl_json(&["history"]).await.json();
    let id = |kind: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["kind"] == kind)
            .and_then(|h| h["id"].as_u64())
            .unwrap()
            .to_string()
    };
    let (remove, upgrade) = (id("remove"), id("upgrade"));
    let install_qt6 = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "install" && h["packages"] == serde_json::json!(["qt6"]))
        .and_then(|h| h["id"].as_u64())
        .unwrap()
        .to_string();

    // The remove is undone: qt6 comes back from the cache.
    env.spkctl(&["history", "undo", &remove])
        .await
        .assert_success();
    env.assert_file("usr/lib/libQt6Core.so.6", b"qt 1\n", 0o755);
    // A dry run says what undoing the upgrade would do, and changes nothing.
    let dry = env
        .spkctl(&["history", "undo", &upgrade, "--dry-run"])
        .await;
    dry.assert_success();
    assert!(
        dry.stdout.contains("plasma") && dry.stdout.contains("2 -> 1"),
        "{dry}"
    );
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);
    // The upgrade is undone: plasma goes back to 1.
    let run = env.spkctl(&["history", "undo", &upgrade]).await;
    run.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    env.assert_file("usr/share/plasma/theme", b"old theme\n", 0o644);
    // The install is undone: qt6 goes.
    env.spkctl(&["history", "undo", &install_qt6])
        .await
        .assert_success();
    env.assert_absent("usr/lib/libQt6Core.so.6");
    assert_eq!(installed(&env, "qt6").await.1, "available");
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn held_packages_stay_until_named_and_are_not_counted() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6("1"))).await;
    env.spkctl(&["install", "plasma", "qt6"])
        .await
        .assert_success();
    env.spkctl(&["hold", "plasma"]).await.assert_success();
    env.publish(&Repo::new().with(plasma("2")).with(qt6("2")));

    let check = env.spkctl(&["check"]).await;
    check.assert_code(100);
    assert!(
        check.stdout.contains("1 update available:\n  qt6 1 -> 2")
            && check
                .stdout
                .contains("Held back (1; `spkctl unhold` releases them):\n  plasma 1 -> 2"),
        "{check}"
    );
    let client = env.client().await;
    let count = client
        .property("/xyz/smech/Spk1", "xyz.smech.Spk1.Manager", "UpdateCount")
        .await;
    assert_eq!(
        u32::try_from(count).unwrap(),
        1,
        "held plasma is not counted"
    );

    let run = env.spkctl(&["upgrade"]).await;
    run.assert_success();
    assert!(
        run.stdout.contains(
            "note: plasma: held back (1 -> 2); `spkctl unhold plasma` releases it, \
             `spkctl upgrade plasma` upgrades it once"
        ),
        "{run}"
    );
    env.assert_file("usr/lib/libQt6Core.so.6", b"qt 2\n", 0o755);
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    // Only the held update is left: "nothing to do" names why.
    let run = env.spkctl(&["upgrade"]).await;
    run.assert_success();
    assert!(
        run.stdout.contains(
            "Nothing to do: every update is held back.\nnote: plasma: held back (1 -> 2)"
        ),
        "{run}"
    );
    let check = env.spkctl(&["check"]).await;
    check.assert_code(0);
    assert!(
        check.stdout.contains("The system is up to date."),
        "{check}"
    );
    assert!(check.stdout.contains("Held back (1"), "{check}");

    // Across a restart.
    let mut env = env;
    env.restart_spkd().await;
    let held = env.spkctl_json(&["list", "--held"]).await.json();
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");
    assert_eq!(held[0]["name"], "plasma");
    let info = env.spkctl(&["info", "plasma"]).await;
    assert!(info.stdout.contains("Held:"), "{info}");

    // Named, it is upgraded, with a note.
    let run = env.spkctl(&["upgrade", "plasma"]).await;
    run.assert_success();
    assert!(
        run.stdout
            .contains("note: plasma: is held, and was upgraded because it was named"),
        "{run}"
    );
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);
    env.spkctl(&["unhold", "plasma"]).await.assert_success();
    assert_eq!(
        env.spkctl_json(&["list", "--held"]).await.json(),
        serde_json::json!([])
    );
}
