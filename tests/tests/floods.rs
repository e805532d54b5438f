//! No floods: Refresh calls while a refresh is queued or running join it instead of queueing
//! more (one request to the mirror, one transaction), and the listings that clients poll
//! (`ListPackages`, `UpdateCount`, `info`), served from memory, follow every change. The cap of
//! queued transactions per user is tested with a real polkit in `polkit.rs`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use spk_tests::client::{MANAGER, MANAGER_PATH, TRANSACTION_TIMEOUT};
use spk_tests::{Env, Fault, Package, Repo};

const INDEX: &str = "/repo/index.json";

fn plasma(version: &str) -> Package {
    Package::new("plasma", version)
        .file("usr/share/plasma/version", format!("{version}\n"), 0o644)
        .file("usr/bin/plasmashell", "shell\n", 0o755)
}

fn qt6() -> Package {
    Package::new("qt6", "1").file("usr/lib/libQt6Core.so.6", "qt\n", 0o755)
}

/// Ships qt6's library.
fn qt6_fork() -> Package {
    Package::new("qt6-fork", "1").file("usr/lib/libQt6Core.so.6", "fork\n", 0o755)
}

async fn refresh(client: &spk_tests::client::Client) -> String {
    let options: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    let reply = client
        .call(MANAGER_PATH, MANAGER, "Refresh", &(options,))
        .await
        .expect("Refresh");
    let path: zbus::zvariant::OwnedObjectPath = reply.body().deserialize().expect("o");
    path.as_str().to_owned()
}

#[tokio::test]
async fn refresh_calls_while_one_runs_join_it() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    // The mirror answers the first index request slowly: a refresh stays running meanwhile.
    env.server
        .set_fault_times(INDEX, Fault::Stall(Duration::from_secs(5)), 1);
    let client = env.client().await;
    let mut watch = client.watch().await;

    let mut paths = Vec::new();
    for _ in 0..50 {
        paths.push(refresh(&client).await);
    }
    // spkctl check joins it too, and reports its result.
    env.spkctl(&["check"]).await.assert_success();

    let distinct: BTreeSet<&String> = paths.iter().collect();
    assert!(
        distinct.len() <= 2,
        "50 Refresh calls made {} transactions: {distinct:?}",
        distinct.len()
    );
    assert!(
        env.server.gets(INDEX) <= 2,
        "the mirror was asked for the index {} times",
        env.server.gets(INDEX)
    );
    assert!(
        client.transactions().await.len() <= 2,
        "{:?}",
        client.transactions().await
    );
    for path in &distinct {
        let ended = watch.until_finished(path, TRANSACTION_TIMEOUT).await;
        assert_eq!(ended.finished.0, "finished", "{path}: {ended:#?}");
    }

    // Once it has ended, a Refresh is a new one.
    let next = refresh(&client).await;
    assert!(!distinct.contains(&next), "{next} was reused: {distinct:?}");
    let ended = watch.until_finished(&next, TRANSACTION_TIMEOUT).await;
    assert_eq!(ended.finished.0, "finished", "{ended:#?}");
}

/// `ListPackages` as `name → row`.
async fn listing(env: &Env) -> HashMap<String, Value> {
    env.client()
        .await
        .list_packages()
        .await
        .into_iter()
        .map(|row| (row["name"].as_str().unwrap().to_owned(), row))
        .collect()
}

async fn update_count(env: &Env) -> Value {
    env.client()
        .await
        .property_json(MANAGER_PATH, MANAGER, "UpdateCount")
        .await
}

#[tokio::test]
async fn listings_follow_every_change() {
    let env = Env::new(&Repo::new().with(plasma("1")).with(qt6()).with(qt6_fork())).await;
    env.spkctl(&["check"]).await.assert_success();
    let before = listing(&env).await;
    assert_eq!(before["plasma"]["state"], "available", "{before:#?}");

    // Install: installed, with its files counted.
    env.spkctl(&["install", "plasma", "qt6"])
        .await
        .assert_success();
    let after = listing(&env).await;
    assert_eq!(after["plasma"]["state"], "installed", "{after:#?}");
    assert_eq!(after["plasma"]["installed-version"], "1");
    assert_eq!(after["plasma"]["files"], 2);
    assert_eq!(after["qt6"]["files"], 1);
    assert_eq!(update_count(&env).await, 0);

    // A refresh that finds an update: upgradable, counted.
    env.publish(&Repo::new().with(plasma("2")).with(qt6()).with(qt6_fork()));
    env.spkctl(&["check"]).await.assert_code(100);
    assert_eq!(update_count(&env).await, 1);
    assert_eq!(listing(&env).await["plasma"]["state"], "upgradable");

    // Upgrade: the new version, nothing to update.
    env.spkctl(&["upgrade"]).await.assert_success();
    let upgraded = listing(&env).await;
    assert_eq!(upgraded["plasma"]["state"], "installed", "{upgraded:#?}");
    assert_eq!(upgraded["plasma"]["installed-version"], "2");
    assert_eq!(update_count(&env).await, 0);
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    assert_eq!(info.json()["installed-version"], "2", "{info}");

    // A forced take-over changes the other package's record too.
    env.spkctl(&["install", "--force-overwrite", "qt6-fork"])
        .await
        .assert_success();
    let taken = listing(&env).await;
    assert_eq!(taken["qt6-fork"]["files"], 1, "{taken:#?}");
    assert_eq!(taken["qt6"]["files"], 0, "{taken:#?}");

    // Remove: available again.
    env.spkctl(&["remove", "plasma"]).await.assert_success();
    let removed = listing(&env).await;
    assert_eq!(removed["plasma"]["state"], "available", "{removed:#?}");
    assert_eq!(removed["plasma"]["installed-version"], "");
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    assert_eq!(info.json()["installed-version"], "", "{info}");

    // A restarted spkd lists the same.
    let mut env = env;
    env.restart_spkd().await;
    assert_eq!(listing(&env).await, removed);
}
