//! spk-publish across releases: a package whose tarball did not change keeps the version the
//! previous index gave it, so spkd offers only what really changed; new and changed tarballs
//! get the release name, a `--versions FILE` line or a `--version` flag.

use std::path::Path;

use serde_json::Value;
use spk_tests::daemon::binary;
use spk_tests::repo::REPO_PATH;
use spk_tests::{Env, HttpServer, Package};

fn plasma(text: &str) -> Package {
    Package::new("plasma", "unused")
        .description("KDE Plasma desktop")
        .file("usr/share/plasma/version", text, 0o644)
}

fn qt6() -> Package {
    Package::new("qt6", "unused")
        .system()
        .description("Qt 6 libraries")
        .file("usr/lib/libQt6Core.so.6", "qt core\n", 0o755)
}

/// Put `package` into `dir` as `NAME.tar.xz`.
fn add(dir: &Path, package: &Package) {
    std::fs::write(
        dir.join(format!("{}.tar.xz", package.name)),
        package.tarball(),
    )
    .expect("write tarball");
}

/// `spk-publish DIR --release RELEASE ARGS`; panics with its output unless it succeeds.
#[track_caller]
fn publish(dir: &Path, release: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(binary("spk-publish"))
        .arg(dir)
        .args(["--release", release])
        .args(args)
        .output()
        .expect("run spk-publish");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "spk-publish failed:\n{text}");
    text
}

/// The version `DIR/index.json` gives package `name`.
#[track_caller]
fn version(dir: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {index}"))["version"]
        .as_str()
        .expect("version")
        .to_string()
}

/// Serve every file of `dir` under [`REPO_PATH`], as a mirror does.
fn serve(server: &HttpServer, dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read publish directory") {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        server.put(
            &format!("{REPO_PATH}{name}"),
            std::fs::read(entry.path()).expect("read file"),
        );
    }
}

#[tokio::test]
async fn an_unchanged_tarball_keeps_its_version_and_is_not_offered_as_an_update() {
    let dir = tempfile::tempdir().expect("temporary directory");
    add(dir.path(), &plasma("6.6.5\n"));
    add(dir.path(), &qt6());
    publish(dir.path(), "r1", &[]);
    assert_eq!(version(dir.path(), "plasma"), "r1");
    assert_eq!(version(dir.path(), "qt6"), "r1");
    let server = HttpServer::start();
    serve(&server, dir.path());
    let env = Env::with_server(server).await;
    env.spkctl(&["install", "plasma", "qt6"])
        .await
        .assert_success();

    // Release r2 changes plasma only.
    add(dir.path(), &plasma("6.6.6\n"));
    let output = publish(dir.path(), "r2", &[]);
    assert_eq!(version(dir.path(), "plasma"), "r2");
    assert_eq!(version(dir.path(), "qt6"), "r1", "{output}");
    assert!(output.contains("unchanged: version kept"), "{output}");
    serve(&env.server, dir.path());

    let check = env.spkctl_json(&["check"]).await;
    check.assert_code(100);
    let report = check.json();
    assert_eq!(report["updates"], 1, "{check}");
    let names: Vec<&str> = report["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["plasma"], "{check}");
    let text = env.spkctl(&["check"]).await;
    text.assert_code(100);
    assert!(text.stdout.contains("1 update available:"), "{text}");
    assert!(text.stdout.contains("plasma r1 -> r2"), "{text}");
    assert!(!text.stdout.contains("qt6 r1"), "{text}");
}

#[tokio::test]
async fn given_versions_win_over_the_previous_index() {
    let dir = tempfile::tempdir().expect("temporary directory");
    add(dir.path(), &plasma("6.6.5\n"));
    add(dir.path(), &qt6());
    publish(dir.path(), "r1", &["--version", "plasma=6.6.5-1"]);
    assert_eq!(version(dir.path(), "plasma"), "6.6.5-1");
    assert_eq!(version(dir.path(), "qt6"), "r1");

    // A versions file names the changed plasma; a flag renames the unchanged qt6 anyway.
    add(dir.path(), &plasma("6.6.6\n"));
    let versions = dir.path().join("versions.txt");
    std::fs::write(
        &versions,
        "# NAME VERSION\nplasma 6.6.6-1\n\nqt6 6.10.0-1\n",
    )
    .unwrap();
    publish(
        dir.path(),
        "r2",
        &[
            "--versions",
            versions.to_str().unwrap(),
            "--version",
            "qt6=6.10.1-1",
        ],
    );
    assert_eq!(version(dir.path(), "plasma"), "6.6.6-1");
    assert_eq!(version(dir.path(), "qt6"), "6.10.1-1");

    // A fresh directory keeps the versions of the index named by --previous.
    let previous = tempfile::tempdir().expect("temporary directory");
    let previous_index = previous.path().join("index.json");
    std::fs::copy(dir.path().join("index.json"), &previous_index).unwrap();
    let fresh = tempfile::tempdir().expect("temporary directory");
    add(fresh.path(), &plasma("6.6.7\n"));
    add(fresh.path(), &qt6());
    publish(
        fresh.path(),
        "r3",
        &["--previous", previous_index.to_str().unwrap()],
    );
    assert_eq!(version(fresh.path(), "plasma"), "r3");
    assert_eq!(version(fresh.path(), "qt6"), "6.10.1-1");

    // A versions line for a package that is not there is refused.
    std::fs::write(&versions, "kde-frameworks 6.20\n").unwrap();
    let refused = std::process::Command::new(binary("spk-publish"))
        .arg(fresh.path())
        .args(["--release", "r4", "--versions"])
        .arg(&versions)
        .output()
        .expect("run spk-publish");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("versions.txt:1: there is no kde-frameworks.tar.xz"),
        "{stderr}"
    );
}
