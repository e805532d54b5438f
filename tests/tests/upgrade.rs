//! Upgrading: a new release appears on the mirror and the user runs `spkctl upgrade`.

use std::time::Duration;

use futures_util::StreamExt;
use spk_tests::client::MANAGER;
use spk_tests::{Env, Package, Repo};
use zbus::{MatchRule, MessageStream};

fn editor(version: &str) -> Package {
    Package::new("kate", version)
        .file("usr/bin/kate", "#!/bin/sh\necho kate 1\n", 0o755)
        .file(
            "usr/share/kate/syntax.xml",
            "<language name=\"rust\"/>\n",
            0o644,
        )
        .file("usr/share/kate/old-plugin.so", "old plugin\n", 0o755)
        .file("usr/share/kate/legacy/readme", "legacy\n", 0o644)
        .symlink("usr/bin/kwrite", "kate")
}

fn editor_v2() -> Package {
    Package::new("kate", "2.0-1")
        .file("usr/bin/kate", "#!/bin/sh\necho kate 2\n", 0o755)
        .file(
            "usr/share/kate/syntax.xml",
            "<language name=\"rust\" v=\"2\"/>\n",
            0o600,
        )
        .file("usr/share/kate/new-plugin.so", "new plugin\n", 0o755)
        .symlink("usr/bin/kwrite", "../share/kate/new-plugin.so")
}

fn firmware(content: &str) -> Package {
    Package::new("firmware", "20251125-1")
        .system()
        .file("lib/firmware/blob.bin", content, 0o644)
}

fn grub(content: &str) -> Package {
    Package::new("bootloader-grub", "2.12-1")
        .system()
        .file("usr/lib/grub/grub.efi", content, 0o644)
}

#[tokio::test]
async fn upgrade_changes_adds_and_removes_files() {
    let env = Env::new(&Repo::new().with(editor("1.0-1"))).await;
    env.spkctl(&["install", "kate"]).await.assert_success();
    env.assert_file("usr/share/kate/old-plugin.so", b"old plugin\n", 0o755);

    env.publish(&Repo::new().with(editor_v2()));
    env.spkctl(&["upgrade"]).await.assert_success();

    env.assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 2\n", 0o755);
    env.assert_file(
        "usr/share/kate/syntax.xml",
        b"<language name=\"rust\" v=\"2\"/>\n",
        0o600,
    );
    env.assert_file("usr/share/kate/new-plugin.so", b"new plugin\n", 0o755);
    env.assert_symlink("usr/bin/kwrite", "../share/kate/new-plugin.so");
    env.assert_absent("usr/share/kate/old-plugin.so");
    env.assert_absent("usr/share/kate/legacy/readme");
    env.assert_absent("usr/share/kate/legacy");

    let info = env.spkctl_json(&["info", "kate"]).await;
    info.assert_success();
    assert_eq!(info.json()["installed-version"], "2.0-1", "{info}");
    assert_eq!(info.json()["state"], "installed", "{info}");
}

#[tokio::test]
async fn upgrade_downloads_only_the_packages_that_changed() {
    let env = Env::new(
        &Repo::new()
            .with(editor("1.0-1"))
            .with(firmware("fw v1"))
            .with(grub("grub v1")),
    )
    .await;
    env.spkctl(&["install", "kate", "firmware", "bootloader-grub"])
        .await
        .assert_success();
    let mut next = Repo::new()
        .release("2026.12.09")
        .with(editor("1.0-1"))
        .with(grub("grub v1"));
    next.add(firmware("fw v2").with_version("20251209-1"));
    env.publish(&next);
    env.server.clear_requests();

    env.spkctl(&["upgrade"]).await.assert_success();

    assert_eq!(
        env.server.tarball_gets(),
        ["/repo/firmware.tar.xz"],
        "only the package whose sha256 changed is fetched"
    );
    env.assert_file("lib/firmware/blob.bin", b"fw v2", 0o644);
    env.assert_file("usr/lib/grub/grub.efi", b"grub v1", 0o644);
}

#[tokio::test]
async fn upgrade_with_nothing_new_downloads_nothing_and_rewrites_nothing() {
    let env = Env::new(&Repo::new().with(editor("1.0-1")).with(firmware("fw v1"))).await;
    env.spkctl(&["install", "kate", "firmware"])
        .await
        .assert_success();
    let before = env.snapshot();
    env.server.clear_requests();

    env.spkctl(&["upgrade"]).await.assert_success();

    assert!(
        env.server.tarball_gets().is_empty(),
        "no tarball may be fetched: {:?}",
        env.server.tarball_gets()
    );
    assert!(
        env.server.gets("/repo/index.json") >= 1,
        "the upgrade refreshes the index first"
    );
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn check_exits_100_while_updates_wait_and_0_after_upgrading() {
    let env = Env::new(&Repo::new().with(editor("1.0-1"))).await;
    env.spkctl(&["install", "kate"]).await.assert_success();
    env.spkctl(&["check"]).await.assert_code(0);

    let client = env.client().await;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(MANAGER)
        .unwrap()
        .member("UpdatesAvailable")
        .unwrap()
        .build();
    let mut updates = MessageStream::for_match_rule(rule, &client.conn, Some(64))
        .await
        .unwrap();
    env.publish(&Repo::new().with(editor_v2()));

    env.spkctl(&["check"]).await.assert_code(100);

    let signal = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("UpdatesAvailable after a refresh that found updates")
        .expect("stream open")
        .expect("signal");
    let (count, names): (u32, Vec<String>) = signal.body().deserialize().unwrap();
    assert_eq!((count, names), (1, vec!["kate".to_string()]));
    assert_eq!(
        client
            .property_json("/xyz/smech/Spk1", MANAGER, "UpdateCount")
            .await,
        1
    );

    env.spkctl(&["upgrade"]).await.assert_success();
    env.spkctl(&["check"]).await.assert_code(0);
    assert_eq!(
        client
            .property_json("/xyz/smech/Spk1", MANAGER, "UpdateCount")
            .await,
        0
    );
}
