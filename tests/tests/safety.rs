//! Hostile archives: whatever a tarball on the mirror says, nothing is written outside the
//! root, no device node or setuid file appears, and a refused entry fails the whole package
//! (never a silent skip), leaving the root as it was.

use std::os::unix::fs::PermissionsExt;

use spk_tests::{Env, Package, Repo};

/// Install `package` (published after spkd started); expect exit 1, a message naming the
/// package and `entry` (the offending archive entry), and an unchanged root.
async fn install_is_refused(env: &Env, package: Package, entry: &str) {
    let name = package.name.clone();
    env.publish(&Repo::new().with(package));
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", &name]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert_ne!(
        report["error-name"], "xyz.smech.Spk1.Error.UnknownPackage",
        "the package must have been found:\n{run}"
    );
    let message = report["error-message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{name}: ")) && message.contains(entry),
        "the message names the package and the entry {entry:?}:\n{run}"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn an_entry_climbing_out_of_the_root_fails_the_package() {
    let env = Env::new(&Repo::new()).await;
    let evil = Package::new("evil-dotdot", "1")
        .file("usr/share/doc/readme", "harmless\n", 0o644)
        .file("../escaped.txt", "pwned\n", 0o644);

    install_is_refused(&env, evil, "..").await;

    assert!(
        !env.dir().join("escaped.txt").exists(),
        "a file was written outside the root"
    );
    env.assert_absent("usr/share/doc/readme");
}

#[tokio::test]
async fn a_file_written_through_a_symlink_of_the_archive_fails_the_package() {
    let env = Env::new(&Repo::new()).await;
    let outside = env.dir().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let evil = Package::new("evil-symlink", "1")
        .symlink("usr/lib/evil", outside.to_str().unwrap())
        .file("usr/lib/evil/pwned", "pwned\n", 0o644);

    install_is_refused(&env, evil, "usr/lib/evil/pwned").await;

    let written: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
    assert!(written.is_empty(), "written outside the root: {written:?}");
}

#[tokio::test]
async fn a_device_node_fails_the_package() {
    let env = Env::new(&Repo::new()).await;
    let evil = Package::new("evil-device", "1")
        .file("usr/bin/tool", "tool\n", 0o755)
        .char_device("usr/share/evil-mem", 1, 1);

    install_is_refused(&env, evil, "usr/share/evil-mem").await;
}

#[tokio::test]
async fn a_userland_package_never_installs_a_setuid_file() {
    let env = Env::new(&Repo::new()).await;
    env.publish(
        &Repo::new().with(
            Package::new("sneaky", "1")
                .file("usr/bin/sneaky", "#!/bin/sh\nid\n", 0o4755)
                .file("usr/bin/sneaky-group", "#!/bin/sh\nid\n", 0o2755),
        ),
    );

    let run = env.spkctl(&["install", "sneaky"]).await;

    let privileged: Vec<String> = env
        .snapshot()
        .nodes
        .iter()
        .filter(|(_, node)| node.mode & 0o6000 != 0)
        .map(|(path, node)| format!("{path} {:o}", node.mode))
        .collect();
    assert!(
        privileged.is_empty(),
        "setuid/setgid files installed: {privileged:?}\n{run}"
    );
    if run.code == Some(0) {
        let mode = std::fs::metadata(env.path("usr/bin/sneaky"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "the mode is masked, not dropped");
    }
}
