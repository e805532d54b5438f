//! What tar keeps, spk keeps: the archive's modification times on files, symlinks and the
//! directories a package creates (never on existing ones), owners by name resolved in the
//! target root, file capabilities from the signed index only, and the system users a package
//! needs, created before its files.

use std::os::unix::fs::MetadataExt;

use spk_tests::repo::MTIME;
use spk_tests::{Env, Package, Repo};

/// (seconds, nanoseconds) of the modification time of `path` (not following a symlink).
fn mtime_of(env: &Env, rel: &str) -> (i64, i64) {
    let meta =
        std::fs::symlink_metadata(env.path(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}"));
    (meta.mtime(), meta.mtime_nsec())
}

fn viewer(version: &str, base: u64) -> Package {
    Package::new("viewer", version)
        .dir("usr/share/viewer", 0o755)
        .with_mtime("usr/share/viewer", base - 100, 0)
        .file(
            "usr/share/viewer/data.qml",
            format!("// viewer {version}\n"),
            0o644,
        )
        .with_mtime("usr/share/viewer/data.qml", base, 123_456_789)
        .file(
            "usr/share/viewer/data.qmlc",
            format!("cache of {version}\n"),
            0o644,
        )
        .with_mtime("usr/share/viewer/data.qmlc", base + 1, 0)
        .symlink("usr/share/viewer/current.qml", "data.qml")
        .with_mtime("usr/share/viewer/current.qml", base + 2, 0)
        .file(
            "usr/bin/viewer",
            format!("#!/bin/sh\necho {version}\n"),
            0o755,
        )
}

#[tokio::test]
async fn files_symlinks_and_new_directories_keep_the_archives_times() {
    let env = Env::new(&Repo::new().with(viewer("1", 1_600_000_000))).await;
    // An existing directory: the package's entry for it must not give it the archive's time.
    std::fs::create_dir_all(env.path("usr/share")).unwrap();
    let usr_share_before = mtime_of(&env, "usr/share");

    env.spkctl(&["install", "viewer"]).await.assert_success();

    assert_eq!(
        mtime_of(&env, "usr/share/viewer/data.qml"),
        (1_600_000_000, 123_456_789),
        "a file keeps its time, nanoseconds too"
    );
    assert_eq!(
        mtime_of(&env, "usr/share/viewer/data.qmlc"),
        (1_600_000_001, 0)
    );
    assert_eq!(
        mtime_of(&env, "usr/share/viewer/current.qml"),
        (1_600_000_002, 0),
        "a symlink keeps its own time"
    );
    assert_eq!(
        mtime_of(&env, "usr/share/viewer"),
        (1_599_999_900, 0),
        "a directory the package creates gets its time after its contents are placed"
    );
    assert_eq!(mtime_of(&env, "usr/bin/viewer"), (MTIME as i64, 0));
    assert_ne!(
        mtime_of(&env, "usr/share"),
        (MTIME as i64, 0),
        "an existing directory never gets the archive's time"
    );
    assert!(mtime_of(&env, "usr/share") >= usr_share_before);
    env.spkctl(&["verify"]).await.assert_success();

    // An upgrade brings the new version's times.
    env.publish(&Repo::new().with(viewer("2", 1_700_000_500)));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_eq!(
        mtime_of(&env, "usr/share/viewer/data.qml"),
        (1_700_000_500, 123_456_789)
    );
    assert_eq!(
        mtime_of(&env, "usr/share/viewer/current.qml"),
        (1_700_000_502, 0)
    );
    // A file whose time changed locally is not damage.
    let touched = env.path("usr/share/viewer/data.qmlc");
    let now = std::fs::File::options().write(true).open(&touched).unwrap();
    now.set_modified(std::time::SystemTime::now()).unwrap();
    env.spkctl(&["verify"]).await.assert_success();
}

const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";
const VERIFICATION: &str = "xyz.smech.Spk1.Error.Verification";

/// `etc/passwd` and `etc/group` of a small SmechOS root: root, and `extra` lines.
fn accounts(env: &Env, passwd_extra: &str, group_extra: &str) {
    std::fs::create_dir_all(env.path("etc")).unwrap();
    std::fs::write(
        env.path("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{passwd_extra}"),
    )
    .unwrap();
    std::fs::write(env.path("etc/group"), format!("root:x:0:\n{group_extra}")).unwrap();
}

/// polkit as a system package: its rules directory readable only by group polkitd.
fn polkit(with_sysusers: bool) -> Package {
    let p = Package::new("polkit", "126-1")
        .system()
        .dir("etc/polkit-1/rules.d", 0o750)
        .owned_by("etc/polkit-1/rules.d", "root", 0, "polkitd", 7777)
        .file(
            "etc/polkit-1/rules.d/50-default.rules",
            "polkit.addAdminRule(function() { return [\"unix-group:wheel\"]; });\n",
            0o640,
        )
        .owned_by(
            "etc/polkit-1/rules.d/50-default.rules",
            "polkitd",
            7777,
            "polkitd",
            7777,
        )
        .file("usr/lib/polkit-1/polkitd", "#!/bin/sh\n", 0o755);
    if with_sysusers {
        p.file(
            "usr/lib/sysusers.d/polkit.conf",
            "# polkit\nu polkitd - \"User for polkitd\" /etc/polkit-1/rules.d\n",
            0o644,
        )
    } else {
        p
    }
}

fn owner_of(env: &Env, rel: &str) -> (u32, u32) {
    let meta = std::fs::symlink_metadata(env.path(rel)).unwrap();
    (meta.uid(), meta.gid())
}

/// The line of `name` in the root's `etc/passwd`, if any.
fn passwd_line(env: &Env, name: &str) -> Vec<String> {
    std::fs::read_to_string(env.path("etc/passwd"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_owner_the_target_root_lacks_is_refused() {
    let env = Env::new(&Repo::new().with(polkit(false))).await;
    accounts(&env, "", "");
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "polkit"]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["error-name"], CONFLICT, "{run}");
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {message}");
    assert!(
        message.starts_with("polkit: etc/polkit-1/rules.d")
            && message.contains("belongs to group 'polkitd', which the target root does not have"),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
}

#[tokio::test]
async fn a_sysusers_entry_creates_the_owner_before_the_files_and_only_once() {
    let env = Env::new(&Repo::new().with(polkit(true))).await;
    accounts(&env, "", "");

    env.spkctl(&["install", "polkit"]).await.assert_success();

    let line = passwd_line(&env, "polkitd");
    assert_eq!(line.len(), 1, "{line:?}");
    let uid: u32 = line[0].split(':').nth(2).unwrap().parse().unwrap();
    assert!((101..1000).contains(&uid), "a system uid: {line:?}");
    let group = std::fs::read_to_string(env.path("etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find(|l| l.starts_with("polkitd:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
        .expect("a polkitd group");
    eprintln!("etc/passwd: {}", line[0]);
    assert_eq!(owner_of(&env, "etc/polkit-1/rules.d"), (0, gid));
    env.assert_dir("etc/polkit-1/rules.d", 0o750);
    assert_eq!(
        owner_of(&env, "etc/polkit-1/rules.d/50-default.rules"),
        (uid, gid)
    );
    env.spkctl(&["verify"]).await.assert_success();

    // Again: the user is not created twice; verify sees a changed owner.
    env.spkctl(&["install", "--reinstall", "polkit"])
        .await
        .assert_success();
    assert_eq!(passwd_line(&env, "polkitd").len(), 1);
    std::os::unix::fs::chown(
        env.path("etc/polkit-1/rules.d/50-default.rules"),
        Some(0),
        Some(0),
    )
    .unwrap();
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_code(1);
    assert!(
        verify
            .stdout
            .contains(&format!("owner 0:0, expected {uid}:{gid}")),
        "{verify}"
    );
    // Removing the package never removes its users.
    env.spkctl(&["remove", "polkit"]).await.assert_success();
    assert_eq!(passwd_line(&env, "polkitd").len(), 1);
}

#[tokio::test]
async fn names_resolve_in_the_target_root_not_on_the_host() {
    let env = Env::new(&Repo::new().with(polkit(false))).await;
    // The target's polkitd has another number than any the host may give it.
    accounts(
        &env,
        "polkitd:x:4321:4322:polkit:/:/usr/sbin/nologin\n",
        "polkitd:x:4322:\n",
    );

    env.spkctl(&["install", "polkit"]).await.assert_success();

    assert_eq!(
        owner_of(&env, "etc/polkit-1/rules.d/50-default.rules"),
        (4321, 4322)
    );
    assert_eq!(owner_of(&env, "etc/polkit-1/rules.d"), (0, 4322));
    // The archive's own numbers (7777) were never used.
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn a_userland_package_cannot_give_a_file_to_a_user_unless_the_index_lists_it() {
    let game = Package::new("tetris", "1")
        .file("var/games/tetris.scores", "", 0o664)
        .owned_by("var/games/tetris.scores", "root", 0, "games", 60)
        .file("usr/bin/tetris", "#!/bin/sh\n", 0o755);
    let env = Env::new(&Repo::new().with(game.clone())).await;
    accounts(&env, "", "games:x:60:\n");
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "tetris"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], VERIFICATION, "{run}");
    let message = run.json()["error-message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!("user sees: {message}");
    assert!(
        message.contains("refused archive entry 'var/games/tetris.scores': owner root:games not allowed in this userland package"),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());

    // The signed index may allow it for that path.
    let mut repo = Repo::new();
    repo.add(game).owners = vec!["var/games/tetris.scores".into()];
    env.publish(&repo);
    env.spkctl(&["install", "tetris"]).await.assert_success();
    assert_eq!(owner_of(&env, "var/games/tetris.scores"), (0, 60));
}

/// What the real `getcap` (libcap2-bin) says of `path`: its capability text, or "" for none.
fn getcap(path: &std::path::Path) -> String {
    let out = std::process::Command::new("getcap")
        .arg(path)
        .output()
        .expect("run getcap (libcap2-bin)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit_once(' ')
        .map(|(_, caps)| caps.to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn capabilities_come_from_the_signed_index_only() {
    // An archive that also carries a security.capability xattr of its own (cap_sys_admin, on a
    // file the index says nothing about): it must never reach the disk.
    let sys_admin: [u8; 20] = [
        0x01, 0, 0, 0x02, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let kwin = Package::new("kwin", "6.6.5-1")
        .file("usr/bin/kwin_wayland", "#!/bin/sh\necho kwin\n", 0o755)
        .file("usr/bin/kwin_helper", "#!/bin/sh\necho helper\n", 0o755)
        .with_xattr("usr/bin/kwin_helper", "security.capability", &sys_admin)
        .with_xattr("usr/bin/kwin_wayland", "security.capability", &sys_admin);
    let mut repo = Repo::new();
    repo.add(kwin).capabilities = [(
        "usr/bin/kwin_wayland".to_string(),
        "cap_sys_nice=ep".to_string(),
    )]
    .into();
    let env = Env::new(&repo).await;

    env.spkctl(&["install", "kwin"]).await.assert_success();

    assert_eq!(getcap(&env.path("usr/bin/kwin_wayland")), "cap_sys_nice=ep");
    assert_eq!(getcap(&env.path("usr/bin/kwin_helper")), "");
    let info = env.spkctl(&["info", "kwin"]).await;
    info.assert_success();
    assert!(
        info.stdout
            .contains("Capabilities:     /usr/bin/kwin_wayland cap_sys_nice=ep"),
        "{info}"
    );
    env.spkctl(&["verify"]).await.assert_success();

    // Capabilities taken away, or given where the index gave none, are reported.
    let status = std::process::Command::new("setcap")
        .args(["-r"])
        .arg(env.path("usr/bin/kwin_wayland"))
        .status()
        .unwrap();
    assert!(status.success());
    let status = std::process::Command::new("setcap")
        .arg("cap_net_raw=ep")
        .arg(env.path("usr/bin/kwin_helper"))
        .status()
        .unwrap();
    assert!(status.success());
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_code(1);
    assert!(
        verify.stdout.contains(
            "kwin: /usr/bin/kwin_wayland: file capabilities none, expected cap_sys_nice=ep"
        ) && verify.stdout.contains(
            "kwin: /usr/bin/kwin_helper: file capabilities cap_net_raw=ep, expected none"
        ),
        "{verify}"
    );
    // An upgrade (here a reinstall) sets them again.
    env.spkctl(&["install", "--reinstall", "kwin"])
        .await
        .assert_success();
    assert_eq!(getcap(&env.path("usr/bin/kwin_wayland")), "cap_sys_nice=ep");
}
