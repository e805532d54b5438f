//! `spk-publish mirror`: a fleet's mirror in one command. A release (a GitHub release on the
//! loopback API, or an `index` source) is copied into a directory; that directory, served by
//! the loopback server, is what a real spkd installs from. A second run downloads nothing, a
//! tampered tarball at the origin leaves the mirror exactly as it was, and an operator's key
//! can stand in for the origin's.

use std::collections::BTreeMap;
use std::path::Path;

use spk_tests::daemon::binary;
use spk_tests::fixture::index_config;
use spk_tests::repo::{GITHUB_API_PATH, GithubRelease, SigningKey, noise, sha256_hex};
use spk_tests::{Env, Fault, HttpServer, Package, Repo};

/// 2025-11-25 12:00:00 UTC, when the origin signed its release.
const NOV_25: u64 = 1_764_072_000;
/// Where the tests serve the mirror directory (as nginx would).
const MIRROR_PATH: &str = "/mirror/";

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

fn release(plasma_version: &str) -> Repo {
    Repo::new().with(plasma(plasma_version)).with(firmware())
}

/// What `spk-publish mirror ARGS` printed (stdout then stderr) and whether it succeeded.
fn mirror(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary("spk-publish"))
        .arg("mirror")
        .args(args)
        .output()
        .expect("run spk-publish mirror");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `spk-publish mirror --from github:OWNER/REPO --api (loopback) --to DIR ARGS`, which must
/// succeed; its output.
#[track_caller]
fn mirror_github(server: &HttpServer, dir: &Path, args: &[&str]) -> String {
    let api = server.url(GITHUB_API_PATH);
    let mut all = vec![
        "--from",
        "github:Smech-Labs/SmechDeploy",
        "--api",
        &api,
        "--to",
        dir.to_str().expect("UTF-8 path"),
    ];
    all.extend_from_slice(args);
    let (ok, text) = mirror(&all);
    assert!(ok, "spk-publish mirror failed:\n{text}");
    text
}

/// Every file under `dir` with its bytes (names relative to `dir`).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read mirror directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let name = path.strip_prefix(dir).expect("below dir");
                out.insert(
                    name.display().to_string(),
                    std::fs::read(&path).expect("read file"),
                );
            }
        }
    }
    out
}

/// Serve the mirror directory's files under [`MIRROR_PATH`] (dot files are not served, as an
/// nginx `location ~ /\.` rule would deny them).
fn serve(server: &HttpServer, dir: &Path) {
    for (name, bytes) in contents(dir) {
        if !name.starts_with('.') {
            server.put(&format!("{MIRROR_PATH}{name}"), bytes);
        }
    }
}

/// `spk.toml` of a machine whose one repository is the mirror.
fn mirror_config(server: &HttpServer) -> String {
    index_config(server).replace("/repo/", MIRROR_PATH)
}

#[tokio::test]
async fn a_github_release_is_mirrored_and_machines_install_from_the_mirror() {
    let key = SigningKey::generate("smechos");
    let repo = release("6.6.5-1");
    let gh = GithubRelease::of(&repo).with_signed_index(&repo, &key, NOV_25);
    let server = HttpServer::start();
    gh.publish(&server);
    let dir = tempfile::tempdir().expect("mirror directory");

    let first = mirror_github(&server, dir.path(), &[]);

    assert!(first.contains("fetched plasma.tar.xz"), "{first}");
    assert!(first.contains("fetched firmware.tar.xz"), "{first}");
    assert!(
        first.contains("the origin's signed index, as served"),
        "{first}"
    );
    assert!(first.contains("2 fetched, 0 kept, 0 removed"), "{first}");
    let asset = |name: &str| {
        gh.assets
            .iter()
            .find(|a| a.name == name)
            .expect("asset")
            .bytes
            .clone()
    };
    let files = contents(dir.path());
    assert_eq!(
        files["index.json"],
        asset("index.json"),
        "kept byte for byte"
    );
    assert_eq!(files["index.json.minisig"], asset("index.json.minisig"));
    assert_eq!(files["plasma.tar.xz"], repo.get("plasma").tarball);
    assert_eq!(files["firmware.tar.xz"], repo.get("firmware").tarball);

    // A machine trusting the origin's key installs from the mirror, and only from it.
    serve(&server, dir.path());
    let config = mirror_config(&server);
    let env = Env::with_config(server, &config).await;
    env.trust_key(&key);
    env.server.clear_requests();
    env.spkctl(&["install", "plasma", "firmware"])
        .await
        .assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    let mut tarballs = env.server.tarball_gets();
    tarballs.sort();
    assert_eq!(
        tarballs,
        ["/mirror/firmware.tar.xz", "/mirror/plasma.tar.xz"],
        "the tarballs come from the mirror"
    );

    // Run again: nothing has changed, nothing is downloaded.
    env.server.clear_requests();
    let again = mirror_github(&env.server, dir.path(), &[]);
    assert!(again.contains("kept plasma.tar.xz"), "{again}");
    assert!(again.contains("index.json unchanged"), "{again}");
    assert!(again.contains("0 fetched, 2 kept, 0 removed"), "{again}");
    let paths: Vec<String> = env.server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            GithubRelease::latest_path(),
            gh.asset_path("index.json"),
            gh.asset_path("index.json.minisig")
        ],
        "a second run asks for the release, its index and signature, and no tarball"
    );
    assert_eq!(contents(dir.path()), files);
}

#[tokio::test]
async fn a_tampered_tarball_at_the_origin_fails_the_run_and_leaves_the_mirror_as_it_was() {
    // A release with GitHub's digests only: the mirror writes its index from them.
    let server = HttpServer::start();
    let r1 = release("6.6.5-1").release("r1");
    GithubRelease::of(&r1).publish(&server);
    let dir = tempfile::tempdir().expect("mirror directory");
    let first = mirror_github(&server, dir.path(), &[]);
    assert!(first.contains("wrote index.json: unsigned"), "{first}");
    let before = contents(dir.path());

    // The next release's plasma is changed on the way after GitHub computed its digest.
    let r2 = release("6.6.6-1").release("r2");
    let gh2 = GithubRelease::of(&r2);
    gh2.publish(&server);
    let mut tampered = r2.get("plasma").tarball.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    let plasma_path = gh2.asset_path("plasma.tar.xz");
    server.put(&plasma_path, tampered.clone());

    let api = server.url(GITHUB_API_PATH);
    let to = dir.path().to_str().expect("UTF-8 path");
    let github_args = [
        "--from",
        "github:Smech-Labs/SmechDeploy",
        "--api",
        api.as_str(),
        "--to",
        to,
    ];
    let (ok, text) = mirror(&github_args);
    assert!(!ok, "a tampered tarball must fail the run:\n{text}");
    assert!(text.contains(&server.url(&plasma_path)), "{text}");
    assert!(text.contains(&r2.get("plasma").sha256), "{text}");
    assert!(text.contains(&sha256_hex(&tampered)), "{text}");
    assert!(text.contains("nothing in"), "{text}");
    assert_eq!(contents(dir.path()), before, "the mirror is as it was");

    // A network failure names the URL, and changes nothing either.
    server.put(&plasma_path, r2.get("plasma").tarball.clone());
    server.set_fault(&plasma_path, Fault::Status(404));
    let (ok, text) = mirror(&github_args);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("downloading {}", server.url(&plasma_path))) && text.contains("404"),
        "{text}"
    );
    assert_eq!(contents(dir.path()), before);

    // Once the origin serves the right bytes, only what changed is fetched.
    server.clear_fault(&plasma_path);
    server.clear_requests();
    let text = mirror_github(&server, dir.path(), &[]);
    assert!(text.contains("fetched plasma.tar.xz"), "{text}");
    assert!(text.contains("kept firmware.tar.xz"), "{text}");
    assert_eq!(server.tarball_gets(), [plasma_path]);
}

#[tokio::test]
async fn an_index_source_is_mirrored_and_unlisted_tarballs_are_pruned() {
    let server = HttpServer::start();
    let first_release = release("6.6.5-1");
    first_release.publish(&server);
    let dir = tempfile::tempdir().expect("mirror directory");
    let to = dir.path().to_str().expect("UTF-8 path");
    let origin = server.url("/repo/index.json");

    let (ok, first) = mirror(&["--from", &origin, "--to", to]);
    assert!(ok, "{first}");
    assert!(first.contains("2 fetched"), "{first}");
    assert_eq!(
        std::fs::read(dir.path().join("index.json")).expect("index.json"),
        serde_json::to_vec_pretty(&first_release.index()).expect("index JSON"),
        "the origin's index, byte for byte"
    );

    // The next release drops firmware: kept until --prune.
    let next = Repo::new().with(plasma("6.6.6-1")).release("r2");
    server.delete("/repo/firmware.tar.xz");
    next.publish(&server);
    let (ok, text) = mirror(&["--from", &server.url("/repo/"), "--to", to]);
    assert!(ok, "{text}");
    assert!(
        text.contains("not listed any more: firmware.tar.xz (kept; --prune removes it)"),
        "{text}"
    );
    assert!(dir.path().join("firmware.tar.xz").exists());
    let (ok, text) = mirror(&["--from", &server.url("/repo/"), "--to", to, "--prune"]);
    assert!(ok, "{text}");
    assert!(text.contains("removed firmware.tar.xz"), "{text}");
    assert!(text.contains("0 fetched, 1 kept, 1 removed"), "{text}");
    assert!(!dir.path().join("firmware.tar.xz").exists());

    // A run that overlaps another (a slow one and the next cron job) stops at once.
    let lock = std::fs::File::open(dir.path().join(".spk-mirror.lock")).expect("lock file");
    lock.lock().expect("hold the mirror's lock");
    let before = contents(dir.path());
    let (ok, text) = mirror(&["--from", &server.url("/repo/"), "--to", to]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("another spk-publish mirror is writing"),
        "{text}"
    );
    assert_eq!(contents(dir.path()), before);
    drop(lock);

    // A machine installs the new plasma from the mirror.
    serve(&server, dir.path());
    let config = mirror_config(&server);
    let env = Env::with_config(server, &config).await;
    env.server.clear_requests();
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.6-1\n", 0o755);
    assert_eq!(env.server.tarball_gets(), ["/mirror/plasma.tar.xz"]);
}

#[tokio::test]
async fn a_mirror_signed_by_its_operator_is_installed_from_by_machines_trusting_only_that_key() {
    let origin_key = SigningKey::generate("smechos");
    let operator = SigningKey::generate("fleet-mirror");
    let server = HttpServer::start();
    release("6.6.5-1").publish_signed(&server, &origin_key, NOV_25);
    let work = tempfile::tempdir().expect("work directory");
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).expect("keys directory");
    std::fs::write(keys.join(origin_key.file_name()), &origin_key.public).expect("origin key");
    let secret = work.path().join("operator.key");
    std::fs::write(&secret, &operator.secret).expect("operator key");
    let dir = work.path().join("mirror");
    let to = dir.to_str().expect("UTF-8 path");

    let (ok, text) = mirror(&[
        "--from",
        &server.url("/repo/"),
        "--to",
        to,
        "--keys",
        keys.to_str().expect("UTF-8 path"),
        "--sign-key",
        secret.to_str().expect("UTF-8 path"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("signed index (key smechos.pub)"), "{text}");
    assert!(text.contains("wrote index.json: signed with"), "{text}");

    // A machine that trusts only the operator's key installs from the mirror.
    serve(&server, &dir);
    let config = mirror_config(&server);
    let env = Env::with_config(server, &config).await;
    env.trust_key(&operator);
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    let info = env.spkctl_json(&["info", "plasma"]).await;
    info.assert_success();
    assert_eq!(
        info.json()["verified-by"],
        "signed index (key fleet-mirror.pub)"
    );

    // An older release at the origin (a replay, or a wrong tag) does not roll the mirror back.
    let before = contents(&dir);
    release("6.6.4-1").release("2026.11.24").publish_signed(
        &env.server,
        &origin_key,
        NOV_25 - 86_400,
    );
    let (ok, text) = mirror(&[
        "--from",
        &env.server.url("/repo/"),
        "--to",
        to,
        "--keys",
        keys.to_str().expect("UTF-8 path"),
        "--sign-key",
        secret.to_str().expect("UTF-8 path"),
    ]);
    assert!(
        !ok,
        "an older release must not replace the mirror's:\n{text}"
    );
    assert!(
        text.contains("refusing to roll the mirror back") && text.contains("nothing in"),
        "{text}"
    );
    assert_eq!(contents(&dir), before);

    // With --keys, an origin signed by a key not among them is refused.
    let wrong_keys = work.path().join("wrong");
    std::fs::create_dir(&wrong_keys).expect("keys directory");
    std::fs::write(wrong_keys.join(operator.file_name()), &operator.public).expect("key");
    let (ok, text) = mirror(&[
        "--from",
        &env.server.url("/repo/"),
        "--to",
        to,
        "--keys",
        wrong_keys.to_str().expect("UTF-8 path"),
    ]);
    assert!(
        !ok,
        "an origin signed by an untrusted key is refused:\n{text}"
    );
    assert!(text.contains("not trusted"), "{text}");
}

#[tokio::test]
async fn machines_fall_back_to_the_origins_release_downloads_when_the_mirror_is_down() {
    // The spk.toml of README's "Running a mirror": the mirror first, then the GitHub
    // release's download URLs (here /download/TAG/, the loopback shape of them) as a mirror.
    let key = SigningKey::generate("smechos");
    let repo = release("6.6.5-1");
    let gh = GithubRelease::of(&repo).with_signed_index(&repo, &key, NOV_25);
    let server = HttpServer::start();
    gh.publish(&server);
    let origin = server.url(&gh.asset_path(""));
    let config = format!(
        "[[repo]]\nname = \"smechdeploy\"\nkind = \"index\"\nurl = \"{}\"\nmirrors = [\"{origin}\"]\n",
        server.url(MIRROR_PATH)
    );
    let env = Env::with_config(server, &config).await;
    env.trust_key(&key);

    // Nothing is served under /mirror/: it is down.
    env.spkctl(&["install", "plasma"]).await.assert_success();

    env.assert_file("usr/bin/plasmashell", b"plasma 6.6.5-1\n", 0o755);
    assert_eq!(env.server.gets("/mirror/index.json"), 1);
    assert_eq!(
        env.server.tarball_gets(),
        [gh.asset_path("plasma.tar.xz")],
        "the tarball came from the origin"
    );
}
