//! What the transport vouches for: spkd never follows a redirect from https to plain http;
//! what is unsigned (an index, GitHub's digests) is trusted only over https or from a
//! loopback address unless the repository says `allow_insecure = true`; a keys directory
//! without a `*.pub` means signatures are off, and spkd and `spkctl about` say so; an
//! interrupted download kept as `.part` is resumed only with `If-Range`, so a file that
//! changed behind it starts over cleanly. Every refusal leaves the root as it was.
//!
//! Plain http "from another machine" is `http://localhost:PORT`: spkd trusts only loopback
//! IP addresses, never a host name, so that URL counts as remote while it still reaches the
//! test server.

use spk_tests::client::{MANAGER, MANAGER_PATH};
use spk_tests::fixture::index_config;
use spk_tests::repo::{
    GITHUB_API_PATH, GITHUB_OWNER, GITHUB_REPO, GithubRelease, REPO_PATH, SigningKey, noise,
};
use spk_tests::tls::TlsFront;
use spk_tests::{Env, Fault, HttpServer, Package, Repo};

fn plasma(version: &str) -> Package {
    Package::new("plasma", version).file(
        "usr/bin/plasmashell",
        format!("plasma {version}\n"),
        0o755,
    )
}

/// A package whose tarball is large and incompressible: a cut leaves a real part behind.
fn mesa() -> Package {
    Package::new("mesa-graphics", "25.3.0-1").file(
        "usr/lib/libGLX_mesa.so.0",
        noise(3, 256 * 1024),
        0o755,
    )
}

/// `spkctl --json ARGS`, expecting exit 1 with this error name; returns the message.
async fn fails_with(env: &Env, args: &[&str], name: &str) -> String {
    let run = env.spkctl_json(args).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["error-name"], name, "{run}");
    report["error-message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `http://localhost:PORT` + `path`: the test server, by a name spkd does not take for loopback.
fn by_name(server: &HttpServer, path: &str) -> String {
    format!("http://localhost:{}{path}", server.addr().port())
}

fn index_repo(url: &str, extra: &str) -> String {
    format!("[[repo]]\nname = \"test\"\nkind = \"index\"\nurl = \"{url}\"\n{extra}")
}

#[tokio::test]
async fn https_is_never_redirected_to_plain_http() {
    let repo = Repo::new().with(plasma("1"));
    let server = HttpServer::start();
    repo.publish(&server);
    let certs = tempfile::tempdir().expect("directory");
    let tls = TlsFront::start(server.addr(), certs.path());
    let config = index_repo(&tls.url(REPO_PATH), "");
    let mut env = Env::with_config(server, &config).await;
    let cert = tls.cert_file().display().to_string();
    env.restart_spkd_with_env(&[("SSL_CERT_FILE", &cert)]).await;
    let before = env.snapshot();
    // The same files at a plain http URL, where a redirect would lead.
    let plain = |file: &str| env.server.url(&format!("/plain/{file}"));
    for file in ["index.json", "plasma.tar.xz"] {
        let body = match file {
            "index.json" => serde_json::to_vec(&repo.index()).expect("json"),
            _ => repo.get("plasma").tarball.clone(),
        };
        env.server.put(&format!("/plain/{file}"), body);
    }

    // The index.
    env.server
        .set_fault("/repo/index.json", Fault::Redirect(plain("index.json")));
    let check = env.spkctl(&["check"]).await;
    check.assert_code(1);
    let expected = format!(
        "refused a redirect from {} to {}",
        tls.url("/repo/index.json"),
        plain("index.json")
    );
    assert!(
        check.error_line().contains(&expected),
        "want {expected:?}:\n{check}"
    );
    env.server.clear_fault("/repo/index.json");

    // A package.
    env.server.set_fault(
        "/repo/plasma.tar.xz",
        Fault::Redirect(plain("plasma.tar.xz")),
    );
    let message = fails_with(&env, &["install", "plasma"], "xyz.smech.Spk1.Error.Network").await;
    let expected = format!(
        "plasma: download of {} failed: refused a redirect from {} to {}",
        tls.url("/repo/plasma.tar.xz"),
        tls.url("/repo/plasma.tar.xz"),
        plain("plasma.tar.xz")
    );
    assert!(
        message.starts_with(&expected),
        "want {expected:?} in {message:?}"
    );
    before.assert_same_content(&env.snapshot());
    assert_eq!(env.server.gets("/plain/index.json"), 0);
    assert_eq!(env.server.gets("/plain/plasma.tar.xz"), 0);

    // https to https is followed.
    env.server
        .put("/moved/plasma.tar.xz", repo.get("plasma").tarball.clone());
    env.server.set_fault(
        "/repo/plasma.tar.xz",
        Fault::Redirect(tls.url("/moved/plasma.tar.xz")),
    );
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    assert_eq!(env.server.gets("/moved/plasma.tar.xz"), 1);
}

#[tokio::test]
async fn plain_http_redirects_between_loopback_urls_are_followed() {
    let repo = Repo::new().with(plasma("1"));
    let env = Env::new(&repo).await;
    env.server
        .put("/moved/plasma.tar.xz", repo.get("plasma").tarball.clone());
    env.server.set_fault(
        "/repo/plasma.tar.xz",
        Fault::Redirect(env.server.url("/moved/plasma.tar.xz")),
    );

    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    assert_eq!(env.server.gets("/moved/plasma.tar.xz"), 1);
}

fn github_repo(api: &str, extra: &str) -> String {
    format!(
        "[[repo]]\nname = \"smechdeploy\"\nkind = \"github\"\nowner = \"{GITHUB_OWNER}\"\n\
         repo = \"{GITHUB_REPO}\"\napi = \"{api}\"\n{extra}"
    )
}

#[tokio::test]
async fn a_github_digest_over_plain_http_from_another_host_is_not_trusted() {
    let repo = Repo::new().with(plasma("1"));
    let server = HttpServer::start();
    GithubRelease::of(&repo).publish(&server);
    let api = by_name(&server, GITHUB_API_PATH);
    let mut env = Env::with_config(server, &github_repo(&api, "")).await;
    let before = env.snapshot();

    let message = fails_with(
        &env,
        &["install", "plasma"],
        "xyz.smech.Spk1.Error.Verification",
    )
    .await;

    assert!(
        message.contains("the digest of release asset plasma.tar.xz came over plain http")
            && message.contains("allow_insecure = true for repository 'smechdeploy'"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());

    // The admin accepts plain http for this repository.
    let config = github_repo(&api, "allow_insecure = true\n");
    std::fs::write(env.path("etc/spk/spk.toml"), config).expect("rewrite spk.toml");
    env.restart_spkd().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(info.json()["verified-by"], "GitHub asset digest", "{info}");
}

#[tokio::test]
async fn an_unsigned_index_over_plain_http_from_another_host_is_refused() {
    let repo = Repo::new().with(plasma("1"));
    let server = HttpServer::start();
    repo.publish(&server);
    let url = by_name(&server, REPO_PATH);
    let mut env = Env::with_config(server, &index_repo(&url, "")).await;
    let before = env.snapshot();

    let message = fails_with(
        &env,
        &["install", "plasma"],
        "xyz.smech.Spk1.Error.Verification",
    )
    .await;

    assert!(
        message.starts_with(&format!(
            "{url}index.json: an unsigned index over plain http is refused"
        )) && message.contains(&env.path("etc/spk/keys").display().to_string())
            && message.contains("allow_insecure = true for repository 'test'"),
        "{message}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());

    let config = index_repo(&url, "allow_insecure = true\n");
    std::fs::write(env.path("etc/spk/spk.toml"), config).expect("rewrite spk.toml");
    env.restart_spkd().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 1\n", 0o755);
}

#[tokio::test]
async fn a_signed_index_is_trusted_over_plain_http() {
    let key = SigningKey::generate("smechos");
    let repo = Repo::new().with(plasma("1"));
    let server = HttpServer::start();
    repo.publish_signed(&server, &key, 1_764_072_000);
    let url = by_name(&server, REPO_PATH);
    let env = Env::with_config(server, &index_repo(&url, "")).await;
    env.trust_key(&key);

    env.spkctl(&["install", "plasma"]).await.assert_success();

    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(
        info.json()["verified-by"],
        "signed index (key smechos.pub)",
        "{info}"
    );
}

#[tokio::test]
async fn a_keys_directory_without_pub_files_means_signatures_off() {
    let mut env = Env::new(&Repo::new().with(plasma("1"))).await;
    let keys = env.path("etc/spk/keys");
    std::fs::create_dir_all(&keys).expect("keys directory");
    std::fs::write(keys.join("README"), "put minisign public keys here\n").expect("readme");
    std::fs::write(keys.join("old.pub.disabled"), "not a key any more\n").expect("old");
    env.restart_spkd().await;

    let log = env.spkd.log();
    assert!(
        log.contains(&format!(
            "signatures are off: no *.pub key in {}",
            keys.display()
        )),
        "{log}"
    );
    let about = env.spkctl(&["about"]).await;
    about.assert_success();
    assert!(
        about
            .stdout
            .contains(&format!("Signatures: off (no keys in {})", keys.display())),
        "{about}"
    );
    let json = env.spkctl_json(&["about"]).await;
    assert_eq!(
        json.json()["signatures"],
        serde_json::json!({"on": false, "keys": []}),
        "{json}"
    );
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(
        info.json()["verified-by"],
        "index sha256 (unsigned index)",
        "{info}"
    );

    // A key makes them on, at once (keys are read when asked).
    let key = SigningKey::generate("smechos");
    env.trust_key(&key);
    let key_file = keys.join("smechos.pub").display().to_string();
    let about = env.spkctl(&["about"]).await;
    assert!(
        about
            .stdout
            .contains(&format!("Signatures: on (keys: {key_file})")),
        "{about}"
    );
    let client = env.client().await;
    assert_eq!(
        client
            .property_json(MANAGER_PATH, MANAGER, "TrustedKeys")
            .await,
        serde_json::json!([key_file])
    );
    env.restart_spkd().await;
    assert!(
        env.spkd.log().contains("signatures are on"),
        "{}",
        env.spkd.log()
    );
}

/// `var/cache/spk/<sha256>.tar.xz.part` of `sha256`, and its kept validator.
fn part_files(env: &Env, sha256: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        env.path(&format!("var/cache/spk/{sha256}.tar.xz.part")),
        env.path(&format!("var/cache/spk/{sha256}.tar.xz.part.validator")),
    )
}

/// An spkd that gives a download one attempt (`retries = 0`), serving `repo`.
async fn one_attempt_env(repo: &Repo) -> Env {
    let server = HttpServer::start();
    repo.publish(&server);
    let config = format!("retries = 0\n{}", index_config(&server));
    Env::with_config(server, &config).await
}

const TARBALL: &str = "/repo/mesa-graphics.tar.xz";

#[tokio::test]
async fn a_part_is_resumed_in_a_later_transaction_when_the_file_is_the_same() {
    let repo = Repo::new().with(mesa());
    let published = repo.get("mesa-graphics");
    let env = one_attempt_env(&repo).await;
    let half = published.size / 2;
    env.server.set_fault_times(TARBALL, Fault::CutAt(half), 1);

    let message = fails_with(
        &env,
        &["install", "mesa-graphics"],
        "xyz.smech.Spk1.Error.Network",
    )
    .await;
    assert!(message.contains("download of"), "{message}");
    let (part, validator) = part_files(&env, &published.sha256);
    let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
    assert!(kept > 0 && kept <= half, "{kept} of {half} bytes kept");
    assert!(validator.is_file(), "the part keeps its validator");

    env.spkctl(&["install", "mesa-graphics"])
        .await
        .assert_success();

    env.assert_file("usr/lib/libGLX_mesa.so.0", &noise(3, 256 * 1024), 0o755);
    let gets: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == TARBALL)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert!(gets[1].header("if-range").is_some(), "{gets:#?}");
    assert_eq!(gets[1].status, 206, "{gets:#?}");
    assert!(env.cached(&published.sha256));
    assert!(!part.exists() && !validator.exists());
}

#[tokio::test]
async fn a_part_whose_file_changed_on_the_server_starts_over_cleanly() {
    let repo = Repo::new().with(mesa());
    let published = repo.get("mesa-graphics").clone();
    let env = one_attempt_env(&repo).await;
    // The mirror first serves another build (a botched upload), and the connection drops
    // half way through it.
    let other = Package::new("mesa-graphics", "25.3.0-1")
        .file("usr/lib/libGLX_mesa.so.0", noise(4, 256 * 1024), 0o755)
        .tarball();
    assert_ne!(other, published.tarball);
    env.server.put(TARBALL, other);
    let half = published.size / 2;
    env.server.set_fault_times(TARBALL, Fault::CutAt(half), 1);
    let before = env.snapshot();
    fails_with(
        &env,
        &["install", "mesa-graphics"],
        "xyz.smech.Spk1.Error.Network",
    )
    .await;
    before.assert_same_content(&env.snapshot());
    let (part, _) = part_files(&env, &published.sha256);
    let kept = std::fs::metadata(&part).map_or(0, |m| m.len());
    assert!(kept > 0 && kept <= half, "{kept} of {half} bytes kept");

    // The mirror is fixed: the file behind the part changed.
    env.server.put(TARBALL, published.tarball.clone());
    env.spkctl(&["install", "mesa-graphics"])
        .await
        .assert_success();

    env.assert_file("usr/lib/libGLX_mesa.so.0", &noise(3, 256 * 1024), 0o755);
    let gets: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == TARBALL)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert!(gets[1].header("if-range").is_some(), "{gets:#?}");
    assert_eq!(
        gets[1].status, 200,
        "a changed file is sent whole: {gets:#?}"
    );
    assert!(env.cached(&published.sha256));
}

#[tokio::test]
async fn without_a_validator_a_part_is_not_resumed_blind() {
    let repo = Repo::new().with(mesa());
    let published = repo.get("mesa-graphics").clone();
    let env = one_attempt_env(&repo).await;
    env.server.set_validators(false);
    env.server
        .set_fault_times(TARBALL, Fault::CutAt(published.size / 2), 1);
    fails_with(
        &env,
        &["install", "mesa-graphics"],
        "xyz.smech.Spk1.Error.Network",
    )
    .await;
    let (part, validator) = part_files(&env, &published.sha256);
    assert!(part.is_file() && !validator.exists());

    env.spkctl(&["install", "mesa-graphics"])
        .await
        .assert_success();

    let gets: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path == TARBALL)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[1].header("range"), None, "starts over: {gets:#?}");
    assert_eq!(gets[1].status, 200, "{gets:#?}");
    env.assert_file("usr/lib/libGLX_mesa.so.0", &noise(3, 256 * 1024), 0o755);
}
