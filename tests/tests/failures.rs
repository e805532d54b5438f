//! When the mirror lies or breaks: the user gets a clear message naming the package and the
//! URL, and the root stays exactly as it was.

use spk_tests::repo::{noise, sha256_hex};
use spk_tests::{Env, Fault, Package, Repo};

/// A package with enough incompressible content that a download has a middle.
fn mesa(version: &str, seed: u64) -> Package {
    Package::new("mesa-graphics", version)
        .system()
        .file("usr/lib/libGL.so.1", noise(seed, 64 * 1024), 0o755)
        .file("usr/share/mesa/version", format!("mesa {version}\n"), 0o644)
}

fn mesa_v2_with_extra_file() -> Package {
    mesa("25.3.1-1", 2).file("usr/share/mesa/new-in-v2", "new\n", 0o644)
}

#[tokio::test]
async fn hash_mismatch_on_upgrade_keeps_the_old_version_intact() {
    let env = Env::new(&Repo::new().with(mesa("25.3.0-1", 1))).await;
    env.spkctl(&["install", "mesa-graphics"])
        .await
        .assert_success();
    let before = env.snapshot();

    let mut next = Repo::new();
    let published = next.add(mesa_v2_with_extra_file());
    let actual = published.sha256.clone();
    let claimed = sha256_hex(b"not the archive");
    published.sha256 = claimed.clone();
    env.publish(&next);
    let url = env.server.url("/repo/mesa-graphics.tar.xz");

    let run = env.spkctl(&["upgrade"]).await;

    run.assert_code(1);
    let expected =
        format!("mesa-graphics: sha256 mismatch for {url}: expected {claimed}, got {actual}");
    assert!(
        run.error_line().contains(&expected),
        "want {expected:?} in:\n{run}"
    );
    assert!(
        run.error_line()
            .contains("nothing changed. Run `spkctl check` and try again"),
        "a next step in:\n{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_absent("usr/share/mesa/new-in-v2");
    assert!(
        !env.cached(&claimed) && !env.cached(&actual),
        "nothing unverified is cached"
    );
}

#[tokio::test]
async fn size_mismatch_is_refused_with_both_sizes() {
    let mut repo = Repo::new();
    let published = repo.add(mesa("25.3.0-1", 1));
    let real = published.size;
    published.size = real + 100;
    let env = Env::new(&repo).await;
    let before = env.snapshot();
    let url = env.server.url("/repo/mesa-graphics.tar.xz");

    let run = env.spkctl(&["install", "mesa-graphics"]).await;

    run.assert_code(1);
    let expected = format!(
        "mesa-graphics: size mismatch for {url}: expected {} bytes, got {real}",
        real + 100
    );
    assert!(
        run.error_line().contains(&expected),
        "want {expected:?} in:\n{run}"
    );
    before.assert_same_content(&env.snapshot());
}

/// Install with the tarball answering `status`: exit 1, a message naming package, URL and
/// status, a `Network` error, and no change to the root.
async fn install_fails_with_http_status(status: u16, reason: &str) {
    let env = Env::new(&Repo::new().with(mesa("25.3.0-1", 1))).await;
    env.server
        .set_fault("/repo/mesa-graphics.tar.xz", Fault::Status(status));
    let before = env.snapshot();
    let url = env.server.url("/repo/mesa-graphics.tar.xz");
    let expected = format!("mesa-graphics: download of {url} failed: HTTP {status} {reason}");

    let run = env.spkctl(&["install", "mesa-graphics"]).await;

    run.assert_code(1);
    assert!(
        run.error_line().contains(&expected),
        "want {expected:?} in:\n{run}"
    );
    before.assert_same_content(&env.snapshot());

    let run = env.spkctl_json(&["install", "mesa-graphics"]).await;
    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert_eq!(
        report["error-name"], "xyz.smech.Spk1.Error.Network",
        "{run}"
    );
    assert!(
        report["error-message"]
            .as_str()
            .is_some_and(|m| m.contains(&expected)),
        "want {expected:?} in:\n{run}"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn server_404_fails_with_the_url_and_changes_nothing() {
    install_fails_with_http_status(404, "Not Found").await;
}

#[tokio::test]
async fn server_500_fails_with_the_url_and_changes_nothing() {
    install_fails_with_http_status(500, "Internal Server Error").await;
}

#[tokio::test]
async fn connection_dropped_mid_download_fails_and_changes_nothing() {
    let repo = Repo::new().with(mesa("25.3.0-1", 1));
    let size = repo.get("mesa-graphics").size;
    let env = Env::new(&repo).await;
    // Every attempt, resumed or not, is cut at the same byte: the download cannot complete.
    env.server
        .set_fault("/repo/mesa-graphics.tar.xz", Fault::CutAt(size / 2));
    let before = env.snapshot();
    let url = env.server.url("/repo/mesa-graphics.tar.xz");

    let run = env.spkctl(&["install", "mesa-graphics"]).await;

    run.assert_code(1);
    let expected = format!("error: mesa-graphics: download of {url} failed");
    assert!(
        run.error_line().starts_with(&expected),
        "want {expected:?} in:\n{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(!env.cached(&repo.get("mesa-graphics").sha256));
}

#[tokio::test]
async fn a_dropped_download_resumes_where_it_stopped() {
    let repo = Repo::new().with(mesa("25.3.0-1", 1));
    let size = repo.get("mesa-graphics").size;
    let env = Env::new(&repo).await;
    env.server
        .set_fault_times("/repo/mesa-graphics.tar.xz", Fault::CutAt(size / 2), 1);

    env.spkctl(&["install", "mesa-graphics"])
        .await
        .assert_success();

    env.assert_file("usr/share/mesa/version", b"mesa 25.3.0-1\n", 0o644);
    let attempts: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/repo/mesa-graphics.tar.xz")
        .collect();
    assert_eq!(
        attempts.len(),
        2,
        "one cut attempt, one resumed: {attempts:#?}"
    );
    let range = attempts[1].header("range").unwrap_or("");
    let start: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("second request is not `Range: bytes=N-`: {attempts:#?}"));
    assert!(
        start > 0 && start <= size / 2,
        "resumed at {start} of {size}"
    );
    assert!(
        attempts[1].header("if-range").is_some(),
        "the resumed request guards with If-Range: {attempts:#?}"
    );
}

#[tokio::test]
async fn an_unreachable_index_fails_naming_it() {
    let env = Env::new(&Repo::new().with(mesa("25.3.0-1", 1))).await;
    env.server.set_fault("/repo/index.json", Fault::Status(500));
    let before = env.snapshot();

    let run = env.spkctl(&["install", "mesa-graphics"]).await;

    run.assert_code(1);
    let line = run.error_line();
    assert!(
        line.contains("index.json") && line.contains(&env.server.url("/repo/")),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert!(env.server.tarball_gets().is_empty());
}
