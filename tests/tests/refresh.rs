//! Refreshing is a good citizen and signed time works: a refresh can be cancelled at any
//! moment and gives up after `refresh_timeout`; an install reads the repositories before it
//! takes the root; a repository that cannot be refreshed fails only what needs it (its last
//! good index stands in, with a `stale-index` notice, unless `max_index_age` says it is too
//! old); a signed index is dated by its `timestamp` or else by its signature's trusted
//! comment, an undated one never locks installs out, and `spkctl check` shows each index's age.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use spk_tests::client::{Client, MANAGER, MANAGER_PATH, TRANSACTION, to_json};
use spk_tests::fixture::index_config;
use spk_tests::repo::{REPO_PATH, SigningKey, noise};
use spk_tests::{Env, Fault, HttpServer, Package, Repo};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const DAY: u64 = 86_400;
/// 2025-11-25 12:00:00 UTC, and the days after it.
const NOV_25: u64 = 1_764_072_000;
const NOV_26: u64 = NOV_25 + DAY;
const NOV_27: u64 = NOV_26 + DAY;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn plasma(version: &str) -> Package {
    Package::new("plasma", version).file(
        "usr/bin/plasmashell",
        format!("plasma {version}\n"),
        0o755,
    )
}

fn firmware() -> Package {
    Package::new("firmware", "20261125-1").system().file(
        "lib/firmware/gpu.bin",
        noise(7, 8 * 1024),
        0o644,
    )
}

/// An index served one byte every 2 s: hundreds of seconds for a small index, though never
/// stalled long enough for `stall_timeout`.
fn trickle() -> Fault {
    Fault::Throttle {
        chunk: 1,
        every: Duration::from_secs(2),
    }
}

/// `Refresh({})` on the bus: the transaction's path.
async fn refresh(client: &Client) -> OwnedObjectPath {
    let options: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    client
        .call(MANAGER_PATH, MANAGER, "Refresh", &(options,))
        .await
        .expect("Refresh")
        .body()
        .deserialize()
        .expect("Refresh returns o")
}

async fn cancel(client: &Client, path: &OwnedObjectPath) {
    client
        .call(path.as_str(), TRANSACTION, "Cancel", &())
        .await
        .expect("Cancel");
}

/// `GetRepositories()` as JSON objects.
async fn repositories(client: &Client) -> Vec<Value> {
    let rows: Vec<HashMap<String, OwnedValue>> = client
        .call(MANAGER_PATH, MANAGER, "GetRepositories", &())
        .await
        .expect("GetRepositories")
        .body()
        .deserialize()
        .expect("aa{sv}");
    rows.iter()
        .map(|r| Value::Object(r.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()))
        .collect()
}

/// How `spkctl check` words an index's age.
fn ago(timestamp: u64) -> String {
    let days = (now() - timestamp) / DAY;
    format!("{days} day{} ago", if days == 1 { "" } else { "s" })
}

#[tokio::test]
async fn ctrl_c_cancels_spkctl_check_while_the_index_trickles_in() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.server.set_fault("/repo/index.json", trickle());
    let before = env.snapshot();

    let checking = env.spawn_spkctl(&["check"]);
    env.server.wait_for_gets("/repo/index.json", 1).await;
    // stdin is not a terminal: SIGINT cancels at once, without asking.
    let pid = rustix::process::Pid::from_raw(checking.id().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let out = tokio::time::timeout(Duration::from_secs(30), checking.wait_with_output())
        .await
        .expect("spkctl check ends soon after SIGINT, not after the index")
        .expect("spkctl output");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: transaction cancelled"), "{stderr}");
    let client = env.client().await;
    let path = client.transactions().await.pop().expect("the refresh");
    let tx = client.properties(path.as_str(), TRANSACTION).await;
    assert_eq!(tx["Kind"], "refresh", "{tx}");
    assert_eq!(tx["State"], "cancelled", "{tx}");
    assert_eq!(tx["ErrorName"], "xyz.smech.Spk1.Error.Cancelled", "{tx}");
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn cancel_on_the_bus_stops_a_trickling_refresh() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.server.set_fault("/repo/index.json", trickle());
    let client = env.client().await;
    let mut watch = client.watch().await;

    let path = refresh(&client).await;
    env.server.wait_for_gets("/repo/index.json", 1).await;
    cancel(&client, &path).await;
    let log = watch
        .until_finished(path.as_str(), Duration::from_secs(30))
        .await;

    assert_eq!(log.finished.0, "cancelled", "{log:#?}");
    assert_eq!(log.finished.1, "xyz.smech.Spk1.Error.Cancelled", "{log:#?}");
    // Nothing was accepted: the repository is still not refreshed.
    assert_eq!(repositories(&client).await[0]["release"], "");
    let last = client
        .property_json(MANAGER_PATH, MANAGER, "LastRefresh")
        .await;
    assert_eq!(last, 0, "a cancelled refresh is not a refresh");
}

#[tokio::test]
async fn a_refresh_gives_up_after_refresh_timeout_naming_the_repository_and_url() {
    let server = HttpServer::start();
    Repo::new().with(plasma("1")).publish(&server);
    server.set_fault("/repo/index.json", trickle());
    let config = format!("refresh_timeout = 2\n{}", index_config(&server));
    let env = Env::with_config(server, &config).await;
    let before = env.snapshot();
    let url = env.server.url("/repo/index.json");

    let run = env.spkctl_json(&["install", "plasma"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Network",
        "{run}"
    );
    let message = report["error-message"].as_str().unwrap_or_default();
    assert!(
        message.contains("repository 'test'")
            && message.contains(&url)
            && message.contains("refresh_timeout (2 s)"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());

    let check = env.spkctl(&["check"]).await;
    check.assert_code(1);
    assert!(
        check.error_line().contains("repository 'test'") && check.error_line().contains(&url),
        "{check}"
    );
}

#[tokio::test]
async fn an_install_refreshing_from_a_slow_mirror_does_not_hold_the_root() {
    let env = Env::new(&Repo::new().with(plasma("1"))).await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    // The next release adds firmware, and its index trickles in.
    env.publish(&Repo::new().with(plasma("1")).with(firmware()));
    env.server.set_fault("/repo/index.json", trickle());
    let client = env.client().await;
    let mut watch = client.watch().await;

    let install = client
        .install(&["firmware"], HashMap::new())
        .await
        .expect("Install");
    env.server.wait_for_gets("/repo/index.json", 2).await;
    assert_eq!(
        client.property_json(MANAGER_PATH, MANAGER, "Busy").await,
        false,
        "refreshing does not hold the root"
    );
    // Meanwhile another transaction has the root at once.
    env.spkctl(&["remove", "plasma"]).await.assert_success();
    env.assert_absent("usr/bin/plasmashell");
    assert_eq!(
        client
            .property_json(install.as_str(), TRANSACTION, "State")
            .await,
        "resolving"
    );

    cancel(&client, &install).await;
    let log = watch
        .until_finished(install.as_str(), Duration::from_secs(30))
        .await;
    assert_eq!(log.finished.0, "cancelled", "{log:#?}");
    env.assert_absent("lib/firmware/gpu.bin");
}

/// Two `index` repositories on `server`: `extra` (at `/extra/`, first: it wins a name) and
/// `main` (at [`REPO_PATH`]); `tunables` are top-level lines.
fn two_repos(server: &HttpServer, tunables: &str) -> String {
    format!(
        "{tunables}[[repo]]\nname = \"extra\"\nkind = \"index\"\nurl = \"{}\"\n\n\
         [[repo]]\nname = \"main\"\nkind = \"index\"\nurl = \"{}\"\n",
        server.url("/extra/"),
        server.url(REPO_PATH)
    )
}

/// `extra` offers firmware, `main` plasma, their indexes unsigned and dated as given (or
/// undated); both refreshed once.
async fn two_repos_env(tunables: &str, main_date: Option<u64>, extra_date: Option<u64>) -> Env {
    let server = HttpServer::start();
    for (repo, base, published) in [
        (Repo::new().with(plasma("1")), REPO_PATH, main_date),
        (Repo::new().with(firmware()), "/extra/", extra_date),
    ] {
        repo.publish_at(&server, base);
        if let Some(t) = published {
            let mut index = repo.index();
            index["timestamp"] = json!(t);
            let bytes = serde_json::to_vec(&index).expect("json");
            server.put(&format!("{base}index.json"), bytes);
        }
    }
    let config = two_repos(&server, tunables);
    let env = Env::with_config(server, &config).await;
    env.spkctl(&["check"]).await.assert_code(0);
    env
}

#[tokio::test]
async fn a_failing_repository_does_not_fail_an_install_another_one_serves() {
    let env = two_repos_env("", None, None).await;
    env.server
        .set_fault("/extra/index.json", Fault::Status(500));
    let extra_url = env.server.url("/extra/index.json");

    let run = env.spkctl_json(&["install", "plasma"]).await;

    run.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    let notices = &run.json()["notices"];
    assert_eq!(notices.as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(notices[0]["kind"], "stale-index", "{run}");
    assert_eq!(notices[0]["package"], "", "{run}");
    assert_eq!(notices[0]["path"], extra_url.as_str(), "{run}");
    let message = notices[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("repository 'extra'")
            && message.contains("HTTP 500")
            && message.contains("release 2026.11.25"),
        "{message}"
    );
    // People see it as a note.
    let again = env.spkctl(&["install", "plasma"]).await;
    again.assert_success();
    let notes = again.notes();
    assert!(
        notes.len() == 1 && notes[0].starts_with("note: repository 'extra' could not be refreshed"),
        "{again}"
    );

    // A plain refresh still reports the failure.
    let check = env.spkctl(&["check"]).await;
    check.assert_code(1);
    assert!(
        check.error_line().contains(&extra_url) && check.error_line().contains("HTTP 500"),
        "{check}"
    );

    // What the failing repository offers cannot be installed from an index that may be stale.
    let before = env.snapshot();
    let run = env.spkctl_json(&["install", "firmware"]).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Network",
        "{run}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| m.contains(&extra_url)),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(
        !env.server
            .tarball_gets()
            .contains(&"/extra/firmware.tar.xz".to_owned()),
        "nothing downloaded from the failing repository"
    );
}

#[tokio::test]
async fn a_failing_repository_with_no_index_yet_fails_the_install() {
    let server = HttpServer::start();
    Repo::new().with(plasma("1")).publish(&server);
    server.set_fault("/extra/index.json", Fault::Status(404));
    let config = two_repos(&server, "");
    let env = Env::with_config(server, &config).await;
    let before = env.snapshot();

    // Nothing is known of what it would offer, and it comes first: it might offer plasma.
    let run = env.spkctl_json(&["install", "plasma"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Network",
        "{run}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| m.contains(&env.server.url("/extra/index.json"))),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn a_last_good_index_older_than_max_index_age_does_not_stand_in() {
    // extra's index says it was published 20 days ago: within a 30-day limit.
    let (main_date, extra_date) = (now() - DAY, now() - 20 * DAY);
    let mut env = two_repos_env("max_index_age = 30\n", Some(main_date), Some(extra_date)).await;
    env.server
        .set_fault("/extra/index.json", Fault::Status(500));

    let run = env.spkctl_json(&["install", "plasma"]).await;
    run.assert_success();
    assert_eq!(run.json()["notices"][0]["kind"], "stale-index", "{run}");
    env.spkctl(&["remove", "plasma"]).await.assert_success();

    // With a 10-day limit the same index is too old to stand in for a failed refresh.
    let config = two_repos(&env.server, "max_index_age = 10\n");
    std::fs::write(env.path("etc/spk/spk.toml"), config).expect("rewrite spk.toml");
    env.restart_spkd().await;
    let before = env.snapshot();
    let run = env.spkctl_json(&["install", "plasma"]).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Network",
        "{run}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| m.contains("/extra/index.json") && m.contains("HTTP 500")),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn an_index_older_than_max_index_age_is_refused_with_its_date_and_the_limit() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    let old = now() - 40 * DAY;
    let repo = Repo::new().with(plasma("1"));
    repo.publish_signed(&server, &key, old);
    let config = format!("max_index_age = 30\n{}", index_config(&server));
    let env = Env::with_config(server, &config).await;
    env.trust_key(&key);
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "plasma"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Verification",
        "{run}"
    );
    let message = report["error-message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&env.server.url("/repo/index.json"))
            && message.contains(&format!("({old})"))
            && message.contains("40 days ago")
            && message.contains("max_index_age = 30"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());

    // A fresh release is accepted, and check says how old it is.
    let fresh = now() - 2 * DAY;
    repo.publish_signed(&env.server, &key, fresh);
    let check = env.spkctl(&["check"]).await;
    check.assert_code(0);
    assert!(
        check
            .stdout
            .contains("Index of test: release 2026.11.25, signed 2 days ago"),
        "{check}"
    );
}

/// `index.json` of `repo` without a `timestamp` field, as exact bytes.
fn undated_index(repo: &Repo) -> Vec<u8> {
    let index = repo.index();
    assert!(index.get("timestamp").is_none());
    serde_json::to_vec_pretty(&index).expect("json")
}

#[tokio::test]
async fn a_signed_index_without_timestamp_is_dated_by_its_trusted_comment() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    let first = Repo::new().with(plasma("1"));
    let comment = |t: u64| format!("timestamp:{t}\tfile:index.json");
    first.publish_signed_bytes(&server, &key, &undated_index(&first), &comment(NOV_26));
    let env = Env::with_server(server).await;
    env.trust_key(&key);

    env.spkctl(&["install", "plasma"]).await.assert_success();
    let second = Repo::new().with(plasma("2")).release("2026.11.27");
    second.publish_signed_bytes(&env.server, &key, &undated_index(&second), &comment(NOV_27));
    let check = env.spkctl(&["check"]).await;
    check.assert_code(100);
    assert!(
        check.stdout.contains(&format!(
            "Index of test: release 2026.11.27, signed {}",
            ago(NOV_27)
        )),
        "{check}"
    );
    let client = env.client().await;
    let rows = repositories(&client).await;
    assert_eq!(rows[0]["timestamp"], NOV_27, "{rows:?}");
    assert_eq!(rows[0]["signed"], true, "{rows:?}");
    let json = env.spkctl_json(&["check"]).await;
    assert_eq!(
        json.json()["repositories"][0]["timestamp"],
        NOV_27,
        "{json}"
    );
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);

    // The trusted comment is the rollback guard: the first release replayed is refused.
    first.publish_signed_bytes(&env.server, &key, &undated_index(&first), &comment(NOV_26));
    let before = env.snapshot();
    let check = env.spkctl(&["check"]).await;
    check.assert_code(1);
    let line = check.error_line();
    assert!(
        line.contains("2025-11-26 12:00:00 UTC (1764158400)")
            && line.contains("2025-11-27 12:00:00 UTC (1764244800)")
            && line.contains("older"),
        "{check}"
    );
    before.assert_untouched(&env.snapshot());
}

#[tokio::test]
async fn signed_indexes_with_no_time_at_all_never_lock_installs_out() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    let first = Repo::new().with(plasma("1"));
    // Signed without any time: no timestamp field, none in the trusted comment.
    first.publish_signed_bytes(&server, &key, &undated_index(&first), "file:index.json");
    let env = Env::with_server(server).await;
    env.trust_key(&key);

    env.spkctl(&["install", "plasma"]).await.assert_success();
    let second = Repo::new().with(plasma("2"));
    second.publish_signed_bytes(
        &env.server,
        &key,
        &undated_index(&second),
        "file:index.json",
    );
    env.spkctl(&["check"]).await.assert_code(100);
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 2\n", 0o755);
    let check = env.spkctl(&["check"]).await;
    check.assert_code(0);
    assert!(
        check
            .stdout
            .contains("Index of test: release 2026.11.25, undated"),
        "{check}"
    );
    // Again and again, across a restart.
    let mut env = env;
    env.restart_spkd().await;
    let third = Repo::new().with(plasma("3"));
    third.publish_signed_bytes(&env.server, &key, &undated_index(&third), "file:index.json");
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 3\n", 0o755);

    // Once a dated index was accepted, an undated one could be an old release replayed.
    Repo::new()
        .with(plasma("4"))
        .publish_signed(&env.server, &key, NOV_26);
    env.spkctl(&["upgrade"]).await.assert_success();
    let fifth = Repo::new().with(plasma("5"));
    fifth.publish_signed_bytes(&env.server, &key, &undated_index(&fifth), "file:index.json");
    let before = env.snapshot();
    let run = env.spkctl_json(&["upgrade"]).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Verification",
        "{run}"
    );
    assert!(
        report["error-message"].as_str().is_some_and(
            |m| m.contains("no time") && m.contains("2025-11-26 12:00:00 UTC (1764158400)")
        ),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_file("usr/bin/plasmashell", b"plasma 4\n", 0o755);
}

#[tokio::test]
async fn spk_publish_dates_its_signature_too() {
    let key = SigningKey::generate("smechos");
    let files = Repo::new()
        .with(plasma("1"))
        .run_publisher(Some(&key), NOV_25);
    let signature = String::from_utf8(files.signature.expect("signed")).expect("text");
    let comment = signature
        .lines()
        .find_map(|l| l.strip_prefix("trusted comment: "))
        .unwrap_or_else(|| panic!("no trusted comment:\n{signature}"));
    assert!(
        comment
            .split('\t')
            .any(|f| f == format!("timestamp:{NOV_25}")),
        "{comment}"
    );
}

/// `spkctl check` and `spkctl about` as a person reads them: each index with its release and
/// age (these indexes carry no date).
#[tokio::test]
async fn check_and_about_show_every_index() {
    let env = two_repos_env("", None, None).await;
    let check = env.spkctl(&["check"]).await;
    check.assert_code(0);
    assert!(
        check.stdout.contains(
            "Index of extra: release 2026.11.25, undated\n\
             Index of main: release 2026.11.25, undated\n"
        ),
        "{check}"
    );
    let about = env.spkctl(&["about"]).await;
    about.assert_success();
    assert!(
        about.stdout.contains(&format!(
            "Source:     extra (index) {} — release 2026.11.25, undated",
            env.server.url("/extra/")
        )),
        "{about}"
    );
}
