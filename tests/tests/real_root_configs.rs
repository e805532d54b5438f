//! Configuration files (everything under `etc/`): an upgrade replaces a config the admin did
//! not change and keeps one they changed, writing the new version beside it as `FILE.spknew`;
//! a remove keeps a changed config as `FILE.spksave`; `spkctl verify` shows a changed config as
//! such, not as damage. Each kept or saved file is reported: a `note:` line after spkctl's
//! summary, a `Notice` signal and the `Notices` property on D-Bus, `notices` in `--json`.

use spk_tests::client::{Notice, TRANSACTION_TIMEOUT};
use spk_tests::{Env, Package, Repo};

const CONF: &str = "etc/foo.conf";
const ADMINS: &[u8] = b"setting = admin's\n";

/// foo at `version`: its config (`setting = CONF_VERSION`), a second config, a program.
fn foo(version: u32, conf_version: u32) -> Package {
    foo_with_conf_mode(version, conf_version, 0o644)
}

fn foo_with_conf_mode(version: u32, conf_version: u32, conf_mode: u32) -> Package {
    Package::new("foo", &format!("{version}"))
        .file(CONF, format!("setting = {conf_version}\n"), conf_mode)
        .file("etc/foo/other.conf", "other = 1\n", 0o644)
        .file(
            "usr/bin/foo",
            format!("#!/bin/sh\necho foo {version}\n"),
            0o755,
        )
}

/// An environment with foo 1 installed.
async fn foo_installed() -> Env {
    let env = Env::builder(&Repo::new().with(foo(1, 1))).start().await;
    env.spkctl(&["install", "foo"]).await.assert_success();
    env
}

/// Publish `package` and run `spkctl upgrade`, which must succeed.
async fn upgrade_to(env: &Env, package: &Package) -> spk_tests::daemon::CtlOutput {
    env.publish(&Repo::new().with(package.clone()));
    let run = env.spkctl(&["upgrade"]).await;
    run.assert_success();
    assert_eq!(
        env.installed_version("foo").await.as_deref(),
        Some(package.version.as_str())
    );
    env.assert_staging_clean();
    run
}

#[tokio::test]
async fn an_edited_config_is_kept_on_upgrade_and_the_new_one_goes_to_spknew() {
    let env = foo_installed().await;
    std::fs::write(env.path(CONF), ADMINS).expect("edit the config");
    // Version 2 ships a new config, readable by its owner only.
    let v2 = foo_with_conf_mode(2, 2, 0o600);

    let run = upgrade_to(&env, &v2).await;

    assert_eq!(
        run.notes(),
        [
            "note: foo: etc/foo.conf was changed locally and kept; the new version is \
          etc/foo.conf.spknew"
        ],
        "{run}"
    );
    env.assert_file(CONF, ADMINS, 0o644);
    env.assert_file("etc/foo.conf.spknew", b"setting = 2\n", 0o600);
    env.assert_file("usr/bin/foo", b"#!/bin/sh\necho foo 2\n", 0o755);
    env.assert_file("etc/foo/other.conf", b"other = 1\n", 0o644);
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_success();
    assert!(
        verify
            .stdout
            .contains("etc/foo.conf: configuration file changed locally"),
        "{verify}"
    );
}

#[tokio::test]
async fn an_unedited_config_is_replaced_on_upgrade() {
    let env = foo_installed().await;

    let run = upgrade_to(&env, &foo(2, 2)).await;

    assert_eq!(run.notes(), Vec::<&str>::new(), "{run}");
    env.assert_files_are(&[&foo(2, 2)], &[]);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn an_edited_config_whose_shipped_version_did_not_change_is_kept_silently() {
    let env = foo_installed().await;
    std::fs::write(env.path(CONF), ADMINS).expect("edit the config");

    let run = upgrade_to(&env, &foo(2, 1)).await;

    assert_eq!(run.notes(), Vec::<&str>::new(), "{run}");
    env.assert_file(CONF, ADMINS, 0o644);
    env.assert_absent("etc/foo.conf.spknew");
    env.assert_file("usr/bin/foo", b"#!/bin/sh\necho foo 2\n", 0o755);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_deleted_config_is_installed_again_on_upgrade() {
    let env = foo_installed().await;
    std::fs::remove_file(env.path(CONF)).expect("delete the config");

    let run = upgrade_to(&env, &foo(2, 2)).await;

    assert_eq!(run.notes(), Vec::<&str>::new(), "{run}");
    env.assert_files_are(&[&foo(2, 2)], &[]);
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn an_edited_config_is_saved_as_spksave_on_remove() {
    let env = foo_installed().await;
    std::fs::write(env.path(CONF), ADMINS).expect("edit the config");

    let run = env.spkctl(&["remove", "foo"]).await;

    run.assert_success();
    assert_eq!(
        run.notes(),
        ["note: foo: etc/foo.conf was changed locally; saved as etc/foo.conf.spksave"],
        "{run}"
    );
    env.assert_absent(CONF);
    env.assert_file("etc/foo.conf.spksave", ADMINS, 0o644);
    // The unchanged config goes, and with it the directory spk made for it.
    env.assert_absent("etc/foo");
    env.assert_files_are(&[], &["etc/foo.conf.spksave"]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}

#[tokio::test]
async fn verify_shows_an_edited_config_without_failing() {
    let env = foo_installed().await;
    std::fs::write(env.path(CONF), ADMINS).expect("edit the config");

    let verify = env.spkctl(&["verify"]).await;

    verify.assert_success();
    let lines: Vec<&str> = verify
        .stdout
        .lines()
        .filter(|l| l.starts_with("foo: "))
        .collect();
    assert_eq!(lines.len(), 1, "{verify}");
    // Root is told what changed (other users only that it did: see authorization.rs).
    assert!(
        lines[0].starts_with("foo: ")
            && lines[0].contains("etc/foo.conf: configuration file changed locally (size "),
        "{verify}"
    );
    let problems = env.client().await.verify(&[]).await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (package, path, kind, problem) = &problems[0];
    assert_eq!(
        (package.as_str(), path.as_str(), kind.as_str()),
        ("foo", CONF, "config")
    );
    assert!(
        problem.starts_with("configuration file changed locally (size "),
        "{problem}"
    );

    // Damage beside it fails verify; the config line is still shown.
    std::fs::write(env.path("usr/bin/foo"), "#!/bin/sh\necho tampered\n").expect("damage");
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_code(1);
    assert!(
        verify
            .stdout
            .contains("etc/foo.conf: configuration file changed locally"),
        "{verify}"
    );
    assert!(verify.stdout.contains("usr/bin/foo"), "{verify}");
}

#[tokio::test]
async fn notices_are_signalled_on_dbus_and_listed_in_json() {
    let env = foo_installed().await;
    std::fs::write(env.path(CONF), ADMINS).expect("edit the config");
    env.publish(&Repo::new().with(foo(2, 2)));
    let client = env.client().await;
    let mut watch = client.watch().await;

    let upgrade = client
        .upgrade(&[], std::collections::HashMap::new())
        .await
        .expect("Upgrade");
    let log = watch
        .until_finished(upgrade.as_str(), TRANSACTION_TIMEOUT)
        .await;

    assert_eq!(log.finished.0, "finished", "{log:#?}");
    let spknew = Notice::new(
        "foo",
        "spknew",
        CONF,
        "etc/foo.conf was changed locally and kept; the new version is etc/foo.conf.spknew",
    );
    assert_eq!(log.notices, std::slice::from_ref(&spknew));
    assert_eq!(client.notices(upgrade.as_str()).await, [spknew]);

    let run = env.spkctl_json(&["remove", "foo"]).await;

    run.assert_success();
    assert_eq!(
        run.json()["notices"],
        serde_json::json!([{
            "package": "foo",
            "kind": "spksave",
            "path": CONF,
            "message": "etc/foo.conf was changed locally; saved as etc/foo.conf.spksave",
        }]),
        "{run}"
    );
    env.assert_file("etc/foo.conf.spksave", ADMINS, 0o644);
    env.assert_absent(CONF);
}
