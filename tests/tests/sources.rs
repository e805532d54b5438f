//! Where packages come from: a GitHub release, signed indexes and the keys that vouch for them,
//! mirrors, cheap conditional refreshes and servers that stall. Every refusal leaves the root
//! exactly as it was.

use std::time::{Duration, Instant};

use spk_tests::fixture::{github_config, index_config};
use spk_tests::http::Request;
use spk_tests::repo::{GithubRelease, REPO_PATH, SigningKey, noise, sha256_hex};
use spk_tests::{Env, Fault, HttpServer, Package, Repo};

/// 2025-11-25 12:00:00 UTC, the timestamp of the first signed release in these stories.
const NOV_25: u64 = 1_764_072_000;
/// One day later.
const NOV_26: u64 = NOV_25 + 86_400;

fn plasma(version: &str) -> Package {
    Package::new("plasma", version)
        .description("KDE Plasma desktop")
        .file("usr/bin/plasmashell", format!("plasma {version}\n"), 0o755)
}

fn firmware() -> Package {
    Package::new("firmware", "20261125-1").system().file(
        "lib/firmware/gpu.bin",
        noise(7, 8 * 1024),
        0o644,
    )
}

/// A repository of both packages.
fn release(plasma_version: &str) -> Repo {
    Repo::new().with(plasma(plasma_version)).with(firmware())
}

/// An spkd whose one repository is `release` on the GitHub-shaped API; `tunables` are
/// top-level `spk.toml` lines (they must come before the `[[repo]]` tables).
async fn github_env(release: &GithubRelease, tunables: &str) -> Env {
    let server = HttpServer::start();
    release.publish(&server);
    let config = format!("{tunables}{}", github_config(&server));
    Env::with_config(server, &config).await
}

/// `spkctl --json info NAME`.
async fn info(env: &Env, name: &str) -> serde_json::Value {
    let run = env.spkctl_json(&["info", name]).await;
    run.assert_success();
    run.json()
}

/// Install `names`, expecting a failure with a `Verification` error; returns its message.
async fn install_refused(env: &Env, names: &[&str]) -> String {
    let mut args = vec!["install"];
    args.extend_from_slice(names);
    let run = env.spkctl_json(&args).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Verification",
        "{run}"
    );
    report["error-message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn installs_from_a_github_release_with_asset_digests() {
    let repo = release("6.6.5-1");
    let gh = GithubRelease::of(&repo);
    let env = github_env(&gh, "").await;

    env.spkctl(&["install", "plasma", "firmware"])
        .await
        .assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    env.assert_file("lib/firmware/gpu.bin", &noise(7, 8 * 1024), 0o644);
    let plasma = info(&env, "plasma").await;
    assert_eq!(plasma["verified-by"], "GitHub asset digest");
    assert_eq!(
        plasma["available-version"], repo.release,
        "the version is the tag"
    );
    assert_eq!(plasma["kind"], "userland");
    assert_eq!(info(&env, "firmware").await["kind"], "system");

    let requests = env.server.requests();
    let api = requests
        .iter()
        .find(|r| r.path == GithubRelease::latest_path())
        .expect("the release was asked for");
    assert_eq!(api.header("accept"), Some("application/vnd.github+json"));
    let mut tarballs = env.server.tarball_gets();
    tarballs.sort();
    assert_eq!(
        tarballs,
        [
            gh.asset_path("firmware.tar.xz"),
            gh.asset_path("plasma.tar.xz")
        ],
        "downloads use browser_download_url"
    );
}

#[tokio::test]
async fn a_signed_index_in_a_github_release_wins() {
    let key = SigningKey::generate("smechos");
    let repo = release("6.6.5-1");
    let gh = GithubRelease::of(&repo).with_signed_index(&repo, &key, NOV_25);
    let env = github_env(&gh, "").await;
    env.trust_key(&key);

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    let plasma = info(&env, "plasma").await;
    assert_eq!(plasma["verified-by"], "signed index (key smechos.pub)");
    assert_eq!(
        plasma["available-version"], "6.6.5-1",
        "the index's version, not the tag"
    );
    assert_eq!(plasma["description"], "KDE Plasma desktop");
    assert_eq!(env.server.tarball_gets(), [gh.asset_path("plasma.tar.xz")]);
}

#[tokio::test]
async fn a_signed_index_is_accepted() {
    let key = SigningKey::generate("smechos");
    let repo = release("6.6.5-1");
    let server = HttpServer::start();
    repo.publish_signed(&server, &key, NOV_25);
    let env = Env::with_server(server).await;
    env.trust_key(&key);

    env.spkctl(&["install", "plasma", "firmware"])
        .await
        .assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    let plasma = info(&env, "plasma").await;
    assert_eq!(plasma["verified-by"], "signed index (key smechos.pub)");
    assert_eq!(env.server.gets("/repo/index.json.minisig"), 1);
}

#[tokio::test]
async fn without_keys_an_unsigned_index_is_accepted_and_says_so() {
    let env = Env::new(&release("6.6.5-1")).await;

    env.spkctl(&["install", "plasma"]).await.assert_success();

    let plasma = info(&env, "plasma").await;
    assert_eq!(plasma["verified-by"], "index sha256 (unsigned index)");
    assert_eq!(
        env.server.gets("/repo/index.json.minisig"),
        0,
        "no key, no signature to fetch"
    );
}

#[tokio::test]
async fn an_unsigned_index_is_refused_once_a_key_is_trusted() {
    let key = SigningKey::generate("smechos");
    let env = Env::new(&release("6.6.5-1")).await;
    env.trust_key(&key);
    let before = env.snapshot();

    let message = install_refused(&env, &["plasma"]).await;

    assert!(
        message.contains(&env.server.url("/repo/index.json"))
            && message.contains("no signature")
            && message.contains("smechos.pub"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
}

#[tokio::test]
async fn a_tampered_index_is_refused_and_the_root_stays_as_it_was() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    release("6.6.5-1").publish_signed(&server, &key, NOV_25);
    let env = Env::with_server(server).await;
    env.trust_key(&key);
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let before = env.snapshot();
    env.server.clear_requests();

    // The next release, signed, then changed on the mirror after signing.
    let next = release("6.6.6-1");
    let files = next.publish_signed(&env.server, &key, NOV_26);
    let text = String::from_utf8(files.index).expect("index is UTF-8");
    let evil = sha256_hex(b"evil");
    let tampered = text.replace(&next.get("plasma").sha256, &evil);
    assert_ne!(tampered, text);
    env.server.put("/repo/index.json", tampered);

    let run = env.spkctl_json(&["upgrade"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Verification",
        "{run}"
    );
    let message = report["error-message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&env.server.url("/repo/index.json"))
            && message.contains("tampered")
            && message.contains("smechos.pub"),
        "{message}"
    );
    before.assert_untouched(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty(), "nothing downloaded");
    assert_eq!(
        info(&env, "plasma").await["available-version"],
        "6.6.5-1",
        "the refused index offers nothing"
    );
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused_naming_the_trusted_key() {
    let trusted = SigningKey::generate("smechos");
    let intruder = SigningKey::generate("intruder");
    let server = HttpServer::start();
    release("6.6.5-1").publish_signed(&server, &intruder, NOV_25);
    let env = Env::with_server(server).await;
    env.trust_key(&trusted);
    let before = env.snapshot();

    let message = install_refused(&env, &["plasma"]).await;

    let key_path = env.path("etc/spk/keys/smechos.pub");
    assert!(
        message.contains(&env.server.url("/repo/index.json"))
            && message.contains("not trusted")
            && message.contains(&key_path.display().to_string()),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
}

#[tokio::test]
async fn an_older_signed_index_is_refused_after_a_newer_one_was_seen() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    release("6.6.6-1").publish_signed(&server, &key, NOV_26);
    let env = Env::with_server(server).await;
    env.trust_key(&key);
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let before = env.snapshot();

    // A mirror replays the previous release, validly signed, but older.
    release("6.6.5-1").publish_signed(&env.server, &key, NOV_25);
    let check = env.spkctl(&["check"]).await;
    check.assert_code(1);
    let line = check.error_line();
    assert!(
        line.contains("2025-11-25 12:00:00 UTC (1764072000)")
            && line.contains("2025-11-26 12:00:00 UTC (1764158400)")
            && line.contains("older"),
        "{check}"
    );
    let upgrade = env.spkctl_json(&["upgrade"]).await;
    upgrade.assert_code(1);
    assert_eq!(
        upgrade.json()["error-name"],
        "xyz.smech.Spk1.Error.Verification"
    );
    before.assert_untouched(&env.snapshot());

    // The guard survives a restart of the daemon.
    let mut env = env;
    env.restart_spkd().await;
    env.spkctl(&["check"]).await.assert_code(1);
    before.assert_untouched(&env.snapshot());
}

/// The requests of one refresh, described for failure messages and the issue note.
fn describe(requests: &[Request]) -> String {
    requests
        .iter()
        .map(|r| {
            format!(
                "{} {} -> {} ({} bytes received, {} bytes sent, {} of body; If-None-Match: {:?})",
                r.method,
                r.path,
                r.status,
                r.received_bytes,
                r.sent_bytes,
                r.body_bytes,
                r.header("if-none-match")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Exactly one request for `path`, conditional, answered 304 with no body.
#[track_caller]
fn assert_one_304(requests: &[Request], path: &str) {
    assert_eq!(requests.len(), 1, "{}", describe(requests));
    let r = &requests[0];
    assert_eq!(r.path, path, "{}", describe(requests));
    assert!(
        r.header("if-none-match").is_some(),
        "{}",
        describe(requests)
    );
    assert_eq!(r.status, 304, "{}", describe(requests));
    assert_eq!(r.body_bytes, 0, "{}", describe(requests));
}

#[tokio::test]
async fn a_refresh_with_nothing_new_costs_one_304_without_a_body() {
    let key = SigningKey::generate("smechos");
    let server = HttpServer::start();
    release("6.6.5-1").publish_signed(&server, &key, NOV_25);
    let env = Env::with_server(server).await;
    env.trust_key(&key);
    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.server.clear_requests();
    env.spkctl(&["check"]).await.assert_code(0);
    let requests = env.server.requests();
    assert_one_304(&requests, "/repo/index.json");
    eprintln!(
        "index source, refresh with nothing new:\n{}",
        describe(&requests)
    );

    // An upgrade with nothing new refreshes the same way and downloads nothing.
    env.server.clear_requests();
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_one_304(&env.server.requests(), "/repo/index.json");

    // A new release is fetched whole again, signature included.
    release("6.6.6-1").publish_signed(&env.server, &key, NOV_26);
    env.server.clear_requests();
    env.spkctl(&["check"]).await.assert_code(100);
    assert_eq!(env.server.gets("/repo/index.json"), 1);
    assert_eq!(env.server.gets("/repo/index.json.minisig"), 1);
}

#[tokio::test]
async fn a_github_refresh_with_nothing_new_costs_one_304_without_a_body() {
    let repo = release("6.6.5-1");
    let env = github_env(&GithubRelease::of(&repo), "").await;
    env.spkctl(&["check"]).await.assert_code(0);

    env.server.clear_requests();
    env.spkctl(&["check"]).await.assert_code(0);

    let requests = env.server.requests();
    assert_one_304(&requests, &GithubRelease::latest_path());
    eprintln!(
        "github source, refresh with nothing new:\n{}",
        describe(&requests)
    );
}

#[tokio::test]
async fn when_the_first_mirror_answers_500_the_second_serves() {
    let repo = release("6.6.5-1");
    let server = HttpServer::start();
    repo.publish(&server);
    server.set_fault("/down/index.json", Fault::Status(500));
    let config = format!(
        "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{}\"\nmirrors = [\"{}\"]\n",
        server.url("/down/"),
        server.url(REPO_PATH)
    );
    let env = Env::with_config(server, &config).await;

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    let log: Vec<(String, u16)> = env
        .server
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        log,
        [
            ("/down/index.json".to_owned(), 500),
            ("/repo/index.json".to_owned(), 200),
            ("/repo/plasma.tar.xz".to_owned(), 200),
        ]
    );
}

#[tokio::test]
async fn when_the_first_mirror_refuses_connections_the_second_serves() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        format!("http://127.0.0.1:{port}/repo/")
        // The listener closes here: connections to the port are refused.
    };
    let server = HttpServer::start();
    release("6.6.5-1").publish(&server);
    let config = format!(
        "[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{dead}\"\nmirrors = [\"{}\"]\n",
        server.url(REPO_PATH)
    );
    let env = Env::with_config(server, &config).await;

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    assert_eq!(env.server.tarball_gets(), ["/repo/plasma.tar.xz"]);
}

#[tokio::test]
async fn a_stalling_server_is_abandoned_after_the_stall_timeout() {
    let repo = release("6.6.5-1");
    let server = HttpServer::start();
    repo.publish(&server);
    server.set_fault("/repo/plasma.tar.xz", Fault::Stall(Duration::from_secs(30)));
    let config = format!("stall_timeout = 1\nretries = 0\n{}", index_config(&server));
    let env = Env::with_config(server, &config).await;
    let before = env.snapshot();
    let url = env.server.url("/repo/plasma.tar.xz");

    let started = Instant::now();
    let run = env.spkctl(&["install", "plasma"]).await;
    let took = started.elapsed();

    run.assert_code(1);
    let expected = format!("error: plasma: download of {url} failed: timed out");
    assert!(
        run.error_line().starts_with(&expected),
        "want {expected:?} in:\n{run}"
    );
    assert!(
        took < Duration::from_secs(5),
        "abandoned after {took:?}, stall_timeout is 1 s"
    );
    before.assert_same_content(&env.snapshot());
    assert!(!env.cached(&repo.get("plasma").sha256));
}

#[tokio::test]
async fn an_asset_without_digest_is_refused_by_default() {
    let gh = GithubRelease::of(&release("6.6.5-1")).without_digest("plasma.tar.xz");
    let env = github_env(&gh, "").await;
    let before = env.snapshot();

    let message = install_refused(&env, &["plasma"]).await;

    assert!(
        message.contains("plasma.tar.xz has no sha256 digest")
            && message.contains("allow_unverified = true"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
    // The verified package of the same release is still offered.
    env.spkctl(&["install", "firmware"]).await.assert_success();
}

#[tokio::test]
async fn an_asset_without_digest_is_installed_unverified_when_allowed() {
    let gh = GithubRelease::of(&release("6.6.5-1")).without_digest("plasma.tar.xz");
    let env = github_env(&gh, "allow_unverified = true\n").await;

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    assert_eq!(info(&env, "plasma").await["verified-by"], "unverified");
    let cached: Vec<_> = std::fs::read_dir(env.path("var/cache/spk"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        cached.is_empty(),
        "nothing unverified is cached: {cached:?}"
    );
    // Installed and still offered unchanged: no update.
    env.spkctl(&["check"]).await.assert_code(0);
}

#[tokio::test]
async fn the_publisher_writes_sizes_hashes_and_default_kinds() {
    let repo = Repo::new().release("2026.12.01").with(firmware());
    let published = repo.get("firmware");
    let dir = tempfile::tempdir().expect("directory");
    std::fs::write(dir.path().join("firmware.tar.xz"), &published.tarball).expect("tarball");

    let out = std::process::Command::new(spk_tests::daemon::binary("spk-publish"))
        .arg(dir.path())
        .args(["--release", "2026.12.01", "--timestamp", "1764590400"])
        .output()
        .expect("run spk-publish");

    assert!(out.status.success(), "{out:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index"))
            .expect("index is JSON");
    assert_eq!(index["format"], 1);
    assert_eq!(index["release"], "2026.12.01");
    assert_eq!(index["timestamp"], 1_764_590_400u64);
    let entry = &index["packages"][0];
    assert_eq!(entry["name"], "firmware");
    assert_eq!(entry["version"], "2026.12.01", "the release by default");
    assert_eq!(entry["kind"], "system", "firmware is a system package");
    assert_eq!(entry["file"], "firmware.tar.xz");
    assert_eq!(entry["sha256"], published.sha256.as_str());
    assert_eq!(entry["size"], published.size);
    assert_eq!(entry["installed_size"], published.installed_size);
    assert!(!dir.path().join("index.json.minisig").exists());
}

#[tokio::test]
async fn parallel_downloads_1_fetches_one_package_at_a_time() {
    let repo = release("6.6.5-1");
    let server = HttpServer::start();
    repo.publish(&server);
    let stall = Duration::from_millis(600);
    for p in &repo.packages {
        server.set_fault(&p.path(), Fault::Stall(stall));
    }
    let config = format!("parallel_downloads = 1\n{}", index_config(&server));
    let env = Env::with_config(server, &config).await;

    let started = Instant::now();
    env.spkctl(&["install", "plasma", "firmware"])
        .await
        .assert_success();
    let took = started.elapsed();

    // Side by side the two stalls would overlap; one after the other they add up.
    assert!(
        took >= stall * 2,
        "two downloads that each stall {stall:?} took only {took:?}"
    );
    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
}
