//! The D-Bus API as any client (the applet, a script) sees it: signals, properties, errors,
//! introspection, concurrency and the daemon's lifecycle.

use std::collections::HashMap;
use std::time::Duration;

use spk_tests::client::{MANAGER, MANAGER_PATH, TRANSACTION, TRANSACTION_TIMEOUT};
use spk_tests::daemon::workspace_root;
use spk_tests::introspection;
use spk_tests::repo::noise;
use spk_tests::{Env, Fault, Package, Repo};

fn plasma() -> Package {
    Package::new("plasma", "6.6.5-1")
        .description("KDE Plasma 6.6.5 desktop")
        .file("usr/bin/plasmashell", noise(7, 256 * 1024), 0o755)
        .file("usr/share/plasma/version", "6.6.5\n", 0o644)
}

fn frameworks() -> Package {
    Package::new("kde-frameworks", "6.20.0-1").file("usr/lib/libKF6CoreAddons.so.6", "kf6\n", 0o755)
}

#[tokio::test]
async fn install_reports_progress_package_done_and_finished() {
    let repo = Repo::new().with(plasma());
    let env = Env::new(&repo).await;
    let client = env.client().await;
    let mut watch = client.watch().await;

    let path = client
        .install(&["plasma"], HashMap::new())
        .await
        .expect("Install returns a transaction path");
    let log = watch
        .until_finished(path.as_str(), TRANSACTION_TIMEOUT)
        .await;

    assert_eq!(
        log.finished,
        ("finished".into(), "".into(), "".into()),
        "{log:#?}"
    );
    assert_eq!(
        log.package_done,
        [("plasma".to_string(), "6.6.5-1".to_string())],
        "{log:#?}"
    );
    assert!(
        log.progress
            .iter()
            .any(|p| p.package == "plasma" && p.stage == "downloading"),
        "a downloading Progress for plasma: {log:#?}"
    );
    for p in &log.progress {
        assert!(
            [
                "waiting",
                "downloading",
                "cached",
                "unpacking",
                "unpacked",
                "installing",
                "removing",
                "done"
            ]
            .contains(&p.stage.as_str()),
            "unknown stage: {p:?}"
        );
        assert!(p.done <= p.total, "done > total: {p:?}");
    }
    // The stages in the order a package goes through them (unpacking may be too short to be
    // announced): each first seen after the one before it.
    let mut stages: Vec<&str> = Vec::new();
    for p in &log.progress {
        if stages.last() != Some(&p.stage.as_str()) {
            stages.push(p.stage.as_str());
        }
    }
    stages.retain(|s| *s != "unpacking");
    assert_eq!(
        stages,
        ["waiting", "downloading", "unpacked", "installing", "done"],
        "{log:#?}"
    );
    for stage in ["downloading", "installing"] {
        let done: Vec<u64> = log
            .progress
            .iter()
            .filter(|p| p.stage == stage)
            .map(|p| p.done)
            .collect();
        assert!(
            done.windows(2).all(|w| w[0] <= w[1]),
            "{stage} progress goes backwards: {done:?}"
        );
    }
    assert!(
        !log.percentages.is_empty(),
        "Percentage changes are announced with PropertiesChanged: {log:#?}"
    );
    assert!(
        log.percentages.windows(2).all(|w| w[0] <= w[1]),
        "Percentage went down: {:?}",
        log.percentages
    );

    let props = client.properties(path.as_str(), TRANSACTION).await;
    assert_eq!(props["State"], "finished", "{props:#}");
    assert_eq!(props["ErrorName"], "", "{props:#}");
    assert_eq!(
        props["Packages"],
        serde_json::json!(["plasma"]),
        "{props:#}"
    );
    assert!(
        props["Kind"]
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case("install")),
        "{props:#}"
    );
    assert_eq!(props["Requester"], 0, "the test runs as root: {props:#}");
    let percentage = props["Percentage"].as_u64().unwrap_or(0);
    assert!(
        percentage >= u64::from(*log.percentages.last().unwrap()),
        "final Percentage {percentage} is below an announced one: {log:#?}"
    );
    assert!(
        client
            .transactions()
            .await
            .iter()
            .any(|t| t.as_str() == path.as_str()),
        "a finished transaction stays listed"
    );
    env.assert_file("usr/share/plasma/version", b"6.6.5\n", 0o644);
}

#[tokio::test]
async fn a_failed_transaction_reports_its_error_by_signal_and_property() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    let client = env.client().await;
    let mut watch = client.watch().await;

    let path = client
        .install(&["no-such-package"], HashMap::new())
        .await
        .expect("failures of the work are reported by the transaction, not the call");
    let log = watch
        .until_finished(path.as_str(), TRANSACTION_TIMEOUT)
        .await;

    assert_eq!(log.finished.0, "failed");
    assert_eq!(log.finished.1, "xyz.smech.Spk1.Error.UnknownPackage");
    assert!(
        log.finished.2.contains("unknown package 'no-such-package'"),
        "{log:#?}"
    );
    let props = client.properties(path.as_str(), TRANSACTION).await;
    assert_eq!(props["State"], "failed", "{props:#}");
    assert_eq!(
        props["ErrorName"], "xyz.smech.Spk1.Error.UnknownPackage",
        "{props:#}"
    );
    assert_eq!(
        props["ErrorMessage"].as_str(),
        Some(log.finished.2.as_str())
    );
}

#[tokio::test]
async fn install_of_an_empty_list_is_rejected_as_invalid_args() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    let client = env.client().await;

    let result = client.install(&[], HashMap::new()).await;

    match result {
        Err(zbus::Error::MethodError(name, message, _)) => assert_eq!(
            name.as_str(),
            "xyz.smech.Spk1.Error.InvalidArgs",
            "message: {message:?}"
        ),
        other => panic!("expected an InvalidArgs error, got {other:?}"),
    }
}

#[tokio::test]
async fn introspection_matches_the_committed_xml() {
    let file = workspace_root().join("dbus/xyz.smech.Spk1.xml");
    let committed = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let expected = introspection::normalize(&committed, "xyz.smech.Spk1.")
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for iface in [MANAGER, TRANSACTION] {
        assert!(
            expected.contains(iface),
            "{} does not declare {iface}",
            file.display()
        );
    }

    let env = Env::new(&Repo::new().with(plasma())).await;
    let client = env.client().await;
    let reply = client
        .call(
            MANAGER_PATH,
            MANAGER,
            "Refresh",
            &(HashMap::<&str, zbus::zvariant::Value<'_>>::new(),),
        )
        .await
        .expect("Refresh");
    let transaction: zbus::zvariant::OwnedObjectPath = reply.body().deserialize().unwrap();
    let mut actual =
        introspection::normalize(&client.introspect(MANAGER_PATH).await, "xyz.smech.Spk1.")
            .expect("daemon introspection of the manager");
    actual.extend(
        introspection::normalize(
            &client.introspect(transaction.as_str()).await,
            "xyz.smech.Spk1.",
        )
        .expect("daemon introspection of a transaction"),
    );

    let diff = introspection::diff(&expected, &actual);
    assert!(
        diff.is_empty(),
        "the running spkd and {} disagree (- only in the file, + only in the daemon):\n{}",
        file.display(),
        diff.join("\n")
    );
}

#[tokio::test]
async fn two_clients_installing_at_once_both_succeed() {
    let env = Env::new(&Repo::new().with(plasma()).with(frameworks())).await;

    let (a, b) = tokio::join!(
        env.spkctl(&["install", "plasma"]),
        env.spkctl(&["install", "kde-frameworks"])
    );

    a.assert_success();
    b.assert_success();
    env.assert_file("usr/share/plasma/version", b"6.6.5\n", 0o644);
    env.assert_file("usr/lib/libKF6CoreAddons.so.6", b"kf6\n", 0o755);
}

#[tokio::test]
async fn cancelling_a_download_ends_cancelled_and_changes_nothing() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    env.server
        .set_fault("/repo/plasma.tar.xz", Fault::Stall(Duration::from_secs(60)));
    let before = env.snapshot();
    let client = env.client().await;
    let mut watch = client.watch().await;

    let path = client.install(&["plasma"], HashMap::new()).await.unwrap();
    // Wait until the download has begun (the server has seen the tarball request).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.server.tarball_gets().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spkd never requested the tarball"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
        .call(path.as_str(), TRANSACTION, "Cancel", &())
        .await
        .expect("Cancel");
    let log = watch
        .until_finished(path.as_str(), Duration::from_secs(20))
        .await;

    assert_eq!(log.finished.0, "cancelled", "{log:#?}");
    assert_eq!(
        client
            .property_json(path.as_str(), TRANSACTION, "State")
            .await,
        "cancelled"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn manager_properties_describe_the_daemon() {
    let env = Env::new(&Repo::new().with(plasma())).await;
    let client = env.client().await;

    let props = client.properties(MANAGER_PATH, MANAGER).await;

    assert!(
        props["Version"].as_str().is_some_and(|v| !v.is_empty()),
        "{props:#}"
    );
    assert_eq!(
        props["Root"].as_str().map(std::path::PathBuf::from),
        Some(env.root.clone()),
        "{props:#}"
    );
    assert_eq!(props["Busy"], false, "{props:#}");
    assert_eq!(props["UpdateCount"], 0, "{props:#}");

    env.spkctl(&["check"]).await.assert_code(0);
    let last = client
        .property_json(MANAGER_PATH, MANAGER, "LastRefresh")
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        last.as_u64().is_some_and(|t| t + 300 > now && t <= now + 5),
        "LastRefresh {last} is not about now ({now})"
    );
    let listed = client.list_packages().await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["name"], "plasma");
    assert_eq!(listed[0]["state"], "available");
}

#[tokio::test]
async fn a_second_transaction_waits_queued_while_the_first_runs() {
    let env = Env::new(&Repo::new().with(plasma()).with(frameworks())).await;
    env.server.set_fault_times(
        "/repo/plasma.tar.xz",
        Fault::Stall(Duration::from_secs(5)),
        1,
    );
    let client = env.client().await;
    let mut watch = client.watch().await;

    let first = client.install(&["plasma"], HashMap::new()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while env.server.tarball_gets().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no download started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = client
        .install(&["kde-frameworks"], HashMap::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        client
            .property_json(second.as_str(), TRANSACTION, "State")
            .await,
        "queued",
        "one modifying transaction at a time"
    );
    assert_eq!(
        client
            .property_json(first.as_str(), TRANSACTION, "State")
            .await,
        "downloading"
    );
    assert_eq!(
        client.property_json(MANAGER_PATH, MANAGER, "Busy").await,
        true
    );

    let first_log = watch
        .until_finished(first.as_str(), TRANSACTION_TIMEOUT)
        .await;
    let second_log = watch
        .until_finished(second.as_str(), TRANSACTION_TIMEOUT)
        .await;
    assert_eq!(first_log.finished.0, "finished", "{first_log:#?}");
    assert_eq!(second_log.finished.0, "finished", "{second_log:#?}");
    assert_eq!(
        client.property_json(MANAGER_PATH, MANAGER, "Busy").await,
        false
    );
    env.assert_file("usr/share/plasma/version", b"6.6.5\n", 0o644);
    env.assert_file("usr/lib/libKF6CoreAddons.so.6", b"kf6\n", 0o755);
}
