//! A commit either completes or restores the old version exactly: an error while placing files
//! (a failpoint, a read-only mount) puts back everything already placed and says so; a crash
//! at any commit point leaves each package wholly old or wholly new after the restart, on every
//! mount; recovery never finishes a commit from a damaged or missing staging tree, nor from
//! another transaction's; and an entry that can neither finish nor roll back leaves spkd
//! running with the package `broken` until a reinstall repairs it.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spk_tests::{Env, Package, Repo};

const FAILPOINTS: &str = "SPKD_FAILPOINTS";
const IO: &str = "xyz.smech.Spk1.Error.Io";
const RESTORED: &str = "the previous version was restored";

/// Plasma at `version`: a dozen files whose content names the version, a symlink, a config,
/// and a file only version 1 has or only later versions have.
fn plasma(version: u32) -> Package {
    let mut p = Package::new("plasma", &format!("{version}.0-1"))
        .file(
            "usr/bin/plasmashell",
            format!("#!/bin/sh\necho plasma {version}\n"),
            0o755,
        )
        .symlink("usr/bin/plasma", "plasmashell")
        .file("etc/plasmarc", format!("version={version}\n"), 0o644);
    for i in 0..10 {
        p = p.file(
            &format!("usr/share/plasma/part-{i:02}"),
            format!("plasma {version} part {i}\n"),
            0o644,
        );
    }
    if version == 1 {
        p.file("usr/share/plasma/only-in-1", "old\n", 0o644)
    } else {
        p.file(
            &format!("usr/share/plasma/new-in-{version}"),
            "new\n",
            0o644,
        )
    }
}

fn repo(version: u32) -> Repo {
    Repo::new().with(plasma(version))
}

/// An environment with plasma 1 installed and `next` published.
async fn plasma_1_installed_with(next: u32) -> Env {
    let env = Env::builder(&repo(1)).start().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&repo(next));
    env
}

/// The database agrees with the disk, nothing is left in staging, plasma is at `version`.
async fn assert_plasma_is(env: &Env, version: u32) {
    env.assert_files_are(&[&plasma(version)], &[]);
    assert_eq!(
        env.installed_version("plasma").await,
        Some(format!("{version}.0-1"))
    );
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}

/// Restart spkd armed with `point` (abort), run `spkctl ARGS`, and expect spkd to die there.
/// spkd is not started again.
async fn crash_at(env: &mut Env, point: &str, args: &[&str]) {
    env.restart_spkd_with_env(&[(FAILPOINTS, point)]).await;

    let run = env.spkctl(args).await;

    assert_ne!(
        run.code,
        Some(0),
        "the transaction cannot have succeeded:\n{run}"
    );
    let status = env
        .spkd
        .wait_exit(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("spkd did not crash at {point}:\n{run}"));
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::ABORT.as_raw()),
        "spkd should have aborted at {point} ({status}):\n{}",
        env.spkd.log()
    );
    assert!(
        env.spkd
            .log()
            .contains(&format!("failpoint {point}: aborting")),
        "spkd died, but not at {point}:\n{}",
        env.spkd.log()
    );
}

/// Expect a failed `--json` run with an `Io` error whose message starts with `prefix` and
/// ends with `suffix`; returns the message.
#[track_caller]
fn io_failure(run: &spk_tests::daemon::CtlOutput, prefix: &str, suffix: &str) -> String {
    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert_eq!(report["error-name"], IO, "{run}");
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {message}");
    assert!(message.starts_with(prefix), "{run}");
    assert!(message.ends_with(suffix), "{run}");
    message.to_string()
}

#[tokio::test]
async fn an_error_mid_commit_puts_the_previous_version_back() {
    let mut env = plasma_1_installed_with(2).await;
    let before = env.snapshot();
    env.restart_spkd_with_env(&[(FAILPOINTS, "commit.mid-place=error")])
        .await;

    let run = env.spkctl_json(&["upgrade"]).await;

    io_failure(
        &run,
        "plasma: could not place ",
        ": failpoint commit.mid-place; the previous version was restored",
    );
    before.assert_same_content(&env.snapshot());
    assert_plasma_is(&env, 1).await;
    assert!(
        env.spkd
            .wait_exit(Duration::from_millis(200))
            .await
            .is_none(),
        "spkd died:\n{}",
        env.spkd.log()
    );
    // What a user at a terminal sees.
    let run = env.spkctl(&["upgrade"]).await;
    run.assert_code(1);
    let line = run.error_line();
    assert!(
        line.starts_with("error: plasma: could not place ")
            && line.ends_with(": failpoint commit.mid-place; the previous version was restored"),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());

    env.restart_spkd().await;
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 2).await;
}

#[tokio::test]
async fn a_read_only_mount_is_refused_before_anything_changes() {
    let env = plasma_1_installed_with(2).await;
    env.make_read_only("usr/share/plasma");
    let before = env.snapshot();

    let run = env.spkctl_json(&["upgrade"]).await;

    // The new files are copied onto that file system first, so it fails there, with nothing
    // changed yet.
    let message = io_failure(
        &run,
        "plasma: cannot write to the file system at /usr/share/plasma (tmpfs) (for usr/share/plasma/",
        ": Read-only file system (os error 30)",
    );
    assert!(!message.contains("restored"), "{run}");
    before.assert_same_content(&env.snapshot());
    assert_plasma_is(&env, 1).await;

    env.unmount("usr/share/plasma");
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 2).await;
}

/// Set or clear the immutable attribute of `path` (`chattr`, e2fsprogs): renames over it and
/// links to it fail with EPERM, as on a damaged or locked-down system.
fn immutable(path: &Path, on: bool) {
    let status = std::process::Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(status.success(), "chattr on {} failed", path.display());
}

#[tokio::test]
async fn a_file_that_cannot_be_replaced_fails_the_upgrade_and_the_old_version_is_restored() {
    let env = plasma_1_installed_with(2).await;
    // The last of plasma's files in commit order: every other one is in place when it fails.
    let locked = env.path("usr/share/plasma/part-09");
    immutable(&locked, true);
    let before = env.snapshot();

    let run = env.spkctl_json(&["upgrade"]).await;

    immutable(&locked, false);
    let message = io_failure(
        &run,
        "plasma: could not place usr/share/plasma/part-09: ",
        &format!(": Operation not permitted (os error 1); {RESTORED}"),
    );
    assert!(message.contains("keep a backup of"), "{run}");
    before.assert_same_content(&env.snapshot());
    assert_plasma_is(&env, 1).await;

    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 2).await;
}

#[tokio::test]
async fn v2_failing_then_v3_killed_mid_download_then_a_restart_leave_v1() {
    let mut env = plasma_1_installed_with(2).await;

    // v2 fails mid-commit; v1 is intact.
    env.restart_spkd_with_env(&[(FAILPOINTS, "commit.mid-place=error")])
        .await;
    let run = env.spkctl(&["upgrade"]).await;
    run.assert_code(1);
    assert!(run.error_line().ends_with(RESTORED), "{run}");
    env.assert_files_are(&[&plasma(1)], &[]);

    // v3 is published; its upgrade is killed while its archive is being unpacked.
    env.publish(&repo(3));
    crash_at(&mut env, "stage.mid-unpack", &["upgrade"]).await;

    // The restart neither finishes v2's commit nor uses v3's partial staging tree.
    env.restart_spkd().await;
    assert_plasma_is(&env, 1).await;

    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 3).await;
}

/// The staged tree of plasma's interrupted commit, `var/lib/spk/staging/<txid>/plasma/tree`
/// (beside it, `backup/` holds hard links of the live files being replaced: those are the old
/// version itself, not staging to tamper with).
fn staging_tree(env: &Env) -> PathBuf {
    let trees: Vec<PathBuf> = std::fs::read_dir(env.path("var/lib/spk/staging"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("plasma/tree"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        trees.len(),
        1,
        "expected one staging tree var/lib/spk/staging/<txid>/plasma/tree after the crash, found \
         {trees:?}"
    );
    trees.into_iter().next().expect("one tree")
}

/// Regular files below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read staging").flatten() {
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            files.extend(files_below(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

#[tokio::test]
async fn a_crash_mid_commit_with_a_tampered_staging_tree_restores_the_old_version() {
    let mut env = plasma_1_installed_with(2).await;
    crash_at(&mut env, "commit.mid-place", &["upgrade"]).await;
    let staged = files_below(&staging_tree(&env));
    assert!(!staged.is_empty(), "nothing left in staging to tamper with");
    std::fs::write(&staged[0], "tampered\n").expect("tamper with a staged file");

    env.restart_spkd().await;

    assert_plasma_is(&env, 1).await;
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 2).await;
}

#[tokio::test]
async fn a_crash_mid_commit_with_a_missing_staging_tree_restores_the_old_version() {
    let mut env = plasma_1_installed_with(2).await;
    crash_at(&mut env, "commit.mid-place", &["upgrade"]).await;
    std::fs::remove_dir_all(staging_tree(&env)).expect("delete the staging tree");

    env.restart_spkd().await;

    assert_plasma_is(&env, 1).await;
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_plasma_is(&env, 2).await;
}

#[tokio::test]
async fn an_entry_that_can_neither_finish_nor_roll_back_leaves_the_package_broken_until_reinstalled()
 {
    let mut env = plasma_1_installed_with(2).await;
    crash_at(&mut env, "commit.mid-place", &["upgrade"]).await;
    // Neither the new version's remaining files nor the old version's can be written now.
    env.make_read_only("usr");

    env.restart_spkd().await;

    let list = env.spkctl_json(&["list"]).await;
    list.assert_success();
    let row = list
        .json()
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "plasma").cloned())
        .unwrap_or_else(|| panic!("plasma is not listed:\n{list}"));
    assert_eq!(row["state"], "broken", "{list}");
    let problem = row["problem"].as_str().unwrap_or_default().to_string();
    assert!(!problem.is_empty(), "a broken package says why:\n{list}");
    let info = env.spkctl(&["info", "plasma"]).await;
    info.assert_success();
    assert!(
        info.stdout
            .lines()
            .any(|l| l.starts_with("Problem: ") && l.contains(&problem)),
        "{info}"
    );
    let rows = env.client().await.list_packages().await;
    let row = rows
        .iter()
        .find(|r| r["name"] == "plasma")
        .expect("plasma over D-Bus");
    assert_eq!(row["state"], "broken", "{rows:?}");
    assert_eq!(row["problem"], problem.as_str(), "{rows:?}");
    let verify = env.spkctl(&["verify"]).await;
    verify.assert_code(1);
    assert!(verify.stdout.contains("plasma: "), "{verify}");

    env.unmount("usr");
    env.spkctl(&["install", "--reinstall", "plasma"])
        .await
        .assert_success();

    assert_plasma_is(&env, 2).await;
    let info = env.spkctl_json(&["info", "plasma"]).await;
    assert_eq!(info.json()["state"], "installed", "{info}");
}

/// The bootloader at `version`, with files on `/boot` (tmpfs), `/boot/efi` (FAT) and `/usr`.
fn grub(version: u32) -> Package {
    let mut p = Package::new("bootloader-grub", &format!("2.12-{version}")).system();
    for i in 0..4 {
        p = p
            .file(
                &format!("boot/grub/x86_64-efi/mod-{i}.mod"),
                format!("module {i} of grub {version}\n"),
                0o644,
            )
            .file(
                &format!("boot/efi/EFI/smechos/part{i}.efi"),
                format!("efi part {i} of grub {version}\n"),
                0o755,
            )
            .file(
                &format!("usr/lib/grub/tool-{i}"),
                format!("tool {i} of grub {version}\n"),
                0o755,
            );
    }
    p
}

#[tokio::test]
async fn a_crash_at_any_commit_point_across_mounts_leaves_one_whole_version() {
    let mut env = Env::builder(&Repo::new().with(grub(1)))
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .tmpfs("var", "64m")
        .start()
        .await;
    env.spkctl(&["install", "bootloader-grub"])
        .await
        .assert_success();
    let points = [
        "commit.before-journal",
        "commit.mid-place",
        "commit.after-place",
        "commit.before-complete",
    ];
    let mut current = 1;
    for (i, point) in points.iter().enumerate() {
        let next = i as u32 + 2;
        env.publish(&Repo::new().with(grub(next)));

        crash_at(&mut env, point, &["upgrade"]).await;
        env.restart_spkd().await;

        let version = env
            .installed_version("bootloader-grub")
            .await
            .unwrap_or_else(|| panic!("bootloader-grub is not installed after {point}"));
        let whole = [current, next]
            .into_iter()
            .find(|v| version == format!("2.12-{v}"))
            .unwrap_or_else(|| panic!("after {point}: version {version}"));
        eprintln!("after a crash at {point}: version {whole}");
        env.assert_files_are(&[&grub(whole)], &[]);
        env.spkctl(&["verify"]).await.assert_success();
        env.assert_staging_clean();
        env.assert_mount("boot", "tmpfs");
        env.assert_mount("boot/efi", "fuse.fusefat");
        env.assert_mount("var", "tmpfs");
        current = whole;
    }
    // And the daemon works: the last version installs whole.
    env.spkctl(&["upgrade"]).await.assert_success();
    env.assert_files_are(&[&grub(5)], &[]);
}
