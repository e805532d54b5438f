//! The download cache (`var/cache/spk/<sha256>.tar.xz`): after each transaction every package
//! keeps at most `keep_versions` (default 2) tarballs, the installed version's and the previous
//! one; after remove only the removed version's stays. `spkctl clean` removes every cached file
//! but the installed versions' tarballs, `clean --all` removes all. Free space is checked
//! before downloading: a download that cannot fit is refused before any tarball is fetched,
//! naming the file system and the shortfall.

use spk_tests::repo::noise;
use spk_tests::{Env, Package, Repo};

const IO: &str = "xyz.smech.Spk1.Error.Io";

fn plasma(version: u32) -> Package {
    Package::new("plasma", &format!("{version}"))
        .file("usr/bin/plasmashell", format!("plasma {version}\n"), 0o755)
        .file("usr/share/plasma/version", format!("{version}\n"), 0o644)
}

fn kwin() -> Package {
    Package::new("kwin", "1").file("usr/bin/kwin", "kwin\n", 0o755)
}

/// The release holding plasma at `version` and kwin.
fn release(version: u32) -> Repo {
    Repo::new().with(plasma(version)).with(kwin())
}

/// The sha256 of package `name`'s tarball in `repo`.
fn sha(repo: &Repo, name: &str) -> String {
    repo.get(name).sha256.clone()
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

#[tokio::test]
async fn the_cache_keeps_the_installed_and_the_previous_version_of_each_package() {
    let env = Env::builder(&release(1)).start().await;
    let (p1, p2, p3) = (
        sha(&release(1), "plasma"),
        sha(&release(2), "plasma"),
        sha(&release(3), "plasma"),
    );
    let k1 = sha(&release(1), "kwin");

    env.spkctl(&["install", "plasma", "kwin"])
        .await
        .assert_success();
    assert_eq!(env.cached_tarballs(), sorted(vec![p1.clone(), k1.clone()]));

    env.publish(&release(2));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_eq!(
        env.cached_tarballs(),
        sorted(vec![p1.clone(), p2.clone(), k1.clone()])
    );

    env.publish(&release(3));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_eq!(env.cached_tarballs(), sorted(vec![p2, p3, k1]));
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn keep_versions_1_keeps_only_the_installed_versions_tarball() {
    let env = Env::builder(&release(1))
        .setting("keep_versions = 1")
        .start()
        .await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&release(2));

    env.spkctl(&["upgrade"]).await.assert_success();

    assert_eq!(env.cached_tarballs(), [sha(&release(2), "plasma")]);
}

#[tokio::test]
async fn remove_keeps_only_the_removed_versions_tarball() {
    let env = Env::builder(&release(1)).start().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    env.publish(&release(2));
    env.spkctl(&["upgrade"]).await.assert_success();
    assert_eq!(env.cached_tarballs().len(), 2);

    env.spkctl(&["remove", "plasma"]).await.assert_success();

    assert_eq!(env.cached_tarballs(), [sha(&release(2), "plasma")]);
}

/// Panic unless `line` is `Removed {n} cached file{s} ({human bytes}).`, e.g.
/// `Removed 2 cached files (1.21 KiB).`
#[track_caller]
fn assert_removed_line(run: &spk_tests::daemon::CtlOutput, n: u32) {
    let line = run.stdout.trim_end();
    let head = format!("Removed {n} cached file{} (", if n == 1 { "" } else { "s" });
    let size = line
        .strip_prefix(&head)
        .and_then(|rest| rest.strip_suffix(")."))
        .unwrap_or_else(|| panic!("expected `{head}SIZE).`:\n{run}"));
    let (number, unit) = size
        .split_once(' ')
        .unwrap_or_else(|| panic!("the size is not `NUMBER UNIT`:\n{run}"));
    assert!(
        number.parse::<f64>().is_ok() && ["B", "KiB", "MiB", "GiB"].contains(&unit),
        "the size is not `NUMBER UNIT`:\n{run}"
    );
}

#[tokio::test]
async fn clean_removes_every_cached_file_but_the_installed_versions() {
    let env = Env::builder(&release(1)).start().await;
    env.spkctl(&["install", "plasma", "kwin"])
        .await
        .assert_success();
    env.publish(&release(2));
    env.spkctl(&["upgrade"]).await.assert_success();
    env.spkctl(&["remove", "kwin"]).await.assert_success();
    assert_eq!(env.cached_tarballs().len(), 3);

    let run = env.spkctl(&["clean"]).await;

    run.assert_success();
    assert_removed_line(&run, 2);
    assert_eq!(env.cached_tarballs(), [sha(&release(2), "plasma")]);
    assert_eq!(env.client().await.clean(false).await, (0, 0));
    env.spkctl(&["verify"]).await.assert_success();
}

#[tokio::test]
async fn clean_all_removes_every_cached_file() {
    let env = Env::builder(&release(1)).start().await;
    env.spkctl(&["install", "plasma"]).await.assert_success();
    let size = release(1).get("plasma").size;

    let run = env.spkctl(&["clean", "--all"]).await;

    run.assert_success();
    assert_removed_line(&run, 1);
    assert_eq!(env.cached_tarballs(), Vec::<String>::new());
    env.spkctl(&["verify"]).await.assert_success();

    // Over D-Bus: what was removed, in files and bytes.
    env.spkctl(&["install", "--reinstall", "plasma"])
        .await
        .assert_success();
    assert_eq!(env.client().await.clean(true).await, (1, size));
    assert_eq!(env.cached_tarballs(), Vec::<String>::new());
}

/// A package of `mib` MiB that xz cannot shrink, installed under `dir`.
fn big(dir: &str, mib: usize) -> Package {
    Package::new("big", "1").file(&format!("{dir}/blob"), noise(7, mib << 20), 0o644)
}

#[tokio::test]
async fn a_download_that_cannot_fit_is_refused_before_downloading() {
    let env = Env::builder(&Repo::new().with(big("usr/share/big", 6)))
        .root_size("4m")
        .start()
        .await;
    env.server.clear_requests();
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "big"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], IO, "{run}");
    let message = run.json()["error-message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("user sees: {message}");
    assert!(
        message.contains("not enough free space on / (tmpfs) for ")
            && message.contains(": needs ")
            && message.contains(" free (")
            && message.ends_with(" short)"),
        "{run}"
    );
    assert_eq!(env.server.tarball_gets(), Vec::<String>::new());
    before.assert_untouched(&env.snapshot());
    assert_eq!(env.cached_tarballs(), Vec::<String>::new());
    env.assert_staging_clean();
    assert_eq!(env.installed_version("big").await, None);
}

#[tokio::test]
async fn files_that_cannot_fit_on_their_file_system_are_refused_before_committing() {
    let env = Env::builder(&Repo::new().with(big("opt/big", 2)))
        .tmpfs("opt", "1m")
        .start()
        .await;
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", "big"]).await;

    run.assert_code(1);
    assert_eq!(run.json()["error-name"], IO, "{run}");
    let report = run.json();
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {message}");
    assert!(
        message.contains("not enough free space on /opt (tmpfs) for "),
        "{run}"
    );
    before.assert_untouched(&env.snapshot());
    env.assert_mount("opt", "tmpfs");
    env.assert_staging_clean();
    assert_eq!(env.installed_version("big").await, None);
}
