//! Every path lands on whichever file system holds it: a tmpfs `/boot`, a FAT `/boot/efi`
//! (regular files and directories only: a symlink or hard link there is refused with a clear
//! error and nothing changes), a separate `/var` holding spk's staging, a bind-mounted
//! `/etc/hosts` (never renamed over or removed: the new version goes beside it), and a mount
//! below a package's directory (removal succeeds around it). Mount points always stay.

use spk_tests::{Env, Package, Repo};

const CONFLICT: &str = "xyz.smech.Spk1.Error.Conflict";

/// The bootloader at `version`: a config on `/boot`, the EFI binary on `/boot/efi`, a module
/// in `/usr`.
fn grub(version: u32) -> Package {
    Package::new("bootloader-grub", &format!("2.12-{version}"))
        .system()
        .file(
            "boot/grub/grub.cfg",
            format!("set timeout=5 # grub {version}\n"),
            0o644,
        )
        .file(
            "boot/efi/EFI/smechos/grubx64.efi",
            format!("MZ grub efi binary {version}\n"),
            0o755,
        )
        .file(
            "usr/lib/grub/x86_64-efi/normal.mod",
            format!("grub module {version}\n"),
            0o644,
        )
}

/// A root with `/boot` on a tmpfs and `/boot/efi` on FAT.
async fn efi_machine(repo: &Repo) -> Env {
    Env::builder(repo)
        .tmpfs("boot", "16m")
        .fat("boot/efi", "8M")
        .start()
        .await
}

#[track_caller]
fn assert_boot_mounts(env: &Env) {
    env.assert_mount("boot", "tmpfs");
    env.assert_mount("boot/efi", "fuse.fusefat");
}

/// verify is clean, nothing is left in staging, the mounts are there.
async fn assert_clean(env: &Env) {
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}

#[tokio::test]
async fn a_bootloader_installs_upgrades_and_removes_across_a_tmpfs_boot_and_a_fat_efi() {
    let env = efi_machine(&Repo::new().with(grub(1))).await;

    env.spkctl(&["install", "bootloader-grub"])
        .await
        .assert_success();

    env.assert_files_are(&[&grub(1)], &[]);
    assert_boot_mounts(&env);
    assert_clean(&env).await;

    env.publish(&Repo::new().with(grub(2)));
    env.spkctl(&["upgrade"]).await.assert_success();

    env.assert_files_are(&[&grub(2)], &[]);
    assert_eq!(
        env.installed_version("bootloader-grub").await.as_deref(),
        Some("2.12-2")
    );
    assert_boot_mounts(&env);
    assert_clean(&env).await;

    env.spkctl(&["remove", "bootloader-grub"])
        .await
        .assert_success();

    env.assert_files_are(&[], &[]);
    assert_boot_mounts(&env);
    env.assert_dir_holds("boot", &["efi"]);
    env.assert_dir_holds("boot/efi", &[]);
    assert_clean(&env).await;
}

/// Install `package` on an EFI machine and expect a `Conflict` whose message names `path` and
/// ends with `reason`; the root stays exactly as it was.
async fn refused_on_fat(package: Package, path: &str, reason: &str) {
    refused_on_fat_from(
        &Repo::new().with(package.clone()),
        &package.name,
        path,
        reason,
    )
    .await;
}

/// [`refused_on_fat`] for package `name` of `repo`.
async fn refused_on_fat_from(repo: &Repo, name: &str, path: &str, reason: &str) {
    let env = efi_machine(repo).await;
    let before = env.snapshot();

    let run = env.spkctl_json(&["install", name]).await;

    run.assert_code(1);
    let report = run.json();
    assert_eq!(report["state"], "failed", "{run}");
    assert_eq!(report["error-name"], CONFLICT, "{run}");
    let message = report["error-message"].as_str().unwrap_or_default();
    eprintln!("user sees: {message}");
    assert!(
        message.starts_with(&format!("{name}: cannot place ")),
        "{run}"
    );
    assert!(message.contains(path), "{run}");
    assert!(
        message.ends_with(&format!(
            ": the file system at /boot/efi (fuse.fusefat) {reason}"
        )),
        "{run}"
    );
    before.assert_same_content(&env.snapshot());
    assert_boot_mounts(&env);
    env.assert_staging_clean();
    assert_eq!(env.installed_version(name).await, None);
}

#[tokio::test]
async fn a_symlink_on_fat_is_refused_and_nothing_changes() {
    let package = Package::new("efi-fallback", "1")
        .system()
        .file("boot/efi/EFI/BOOT/BOOTX64.EFI", "MZ fallback\n", 0o755)
        .symlink("boot/efi/EFI/smechos/grubx64.efi", "../BOOT/BOOTX64.EFI")
        .file("usr/share/doc/efi-fallback/README", "fallback\n", 0o644);

    refused_on_fat(
        package,
        "boot/efi/EFI/smechos/grubx64.efi",
        "cannot hold symlinks",
    )
    .await;
}

#[tokio::test]
async fn a_hard_link_on_fat_is_refused_and_nothing_changes() {
    let package = Package::new("efi-fallback", "1")
        .system()
        .file("boot/efi/EFI/BOOT/BOOTX64.EFI", "MZ fallback\n", 0o755)
        .hardlink(
            "boot/efi/EFI/smechos/grubx64.efi",
            "boot/efi/EFI/BOOT/BOOTX64.EFI",
        )
        .file("usr/share/doc/efi-fallback/README", "fallback\n", 0o644);

    refused_on_fat(
        package,
        "boot/efi/EFI/smechos/grubx64.efi",
        "cannot hold hard links",
    )
    .await;
}

#[tokio::test]
async fn a_setuid_file_on_fat_is_refused_and_nothing_changes() {
    let mut repo = Repo::new();
    repo.add(
        Package::new("efi-tools", "1")
            .system()
            .file("usr/bin/efi-helper", "#!/bin/sh\n", 0o755)
            .file("boot/efi/EFI/tools/helper.efi", "MZ helper\n", 0o4755),
    )
    .setuid = vec!["boot/efi/EFI/tools/helper.efi".into()];

    refused_on_fat_from(
        &repo,
        "efi-tools",
        "boot/efi/EFI/tools/helper.efi",
        "cannot hold setuid/setgid bits",
    )
    .await;
}

/// netbase at `version`: `/etc/hosts`, `/etc/services` and a version file.
fn netbase(version: u32) -> Package {
    Package::new("netbase", &format!("{version}"))
        .file(
            "etc/hosts",
            format!("127.0.0.1 localhost # netbase {version}\n"),
            0o644,
        )
        .file("etc/services", format!("# services {version}\n"), 0o644)
        .file("usr/share/netbase/version", format!("{version}\n"), 0o644)
}

const CHROOT_HOSTS: &[u8] = b"127.0.0.1 localhost\n10.0.0.2 buildhost # the host's\n";

#[tokio::test]
async fn a_bind_mounted_hosts_file_is_not_replaced_on_upgrade() {
    let env = Env::builder(&Repo::new().with(netbase(1))).start().await;
    env.spkctl(&["install", "netbase"]).await.assert_success();
    // The root becomes a chroot: the host's /etc/hosts is bind-mounted over the package's.
    env.bind_file("etc/hosts", CHROOT_HOSTS);
    let hosts_source = env.dir().join("bind-etc_hosts");
    env.publish(&Repo::new().with(netbase(2)));

    let run = env.spkctl(&["upgrade"]).await;

    run.assert_success();
    assert_eq!(
        run.notes(),
        [
            "note: netbase: etc/hosts is a mount point and was not replaced; the new version is \
          etc/hosts.spknew"
        ],
        "{run}"
    );
    assert!(
        env.fstype("etc/hosts").is_some(),
        "etc/hosts is no longer mounted"
    );
    env.assert_content("etc/hosts", CHROOT_HOSTS);
    assert_eq!(std::fs::read(&hosts_source).unwrap(), CHROOT_HOSTS);
    env.assert_file(
        "etc/hosts.spknew",
        b"127.0.0.1 localhost # netbase 2\n",
        0o644,
    );
    env.assert_file("etc/services", b"# services 2\n", 0o644);
    env.assert_file("usr/share/netbase/version", b"2\n", 0o644);
    assert_eq!(env.installed_version("netbase").await.as_deref(), Some("2"));
    assert_clean(&env).await;

    // Removing the package leaves the mount point alone, without an error.
    env.spkctl(&["remove", "netbase"]).await.assert_success();

    assert!(
        env.fstype("etc/hosts").is_some(),
        "etc/hosts is no longer mounted"
    );
    env.assert_content("etc/hosts", CHROOT_HOSTS);
    assert_eq!(std::fs::read(&hosts_source).unwrap(), CHROOT_HOSTS);
    env.assert_absent("etc/services");
    env.assert_absent("usr/share/netbase");
    assert_clean(&env).await;
}

/// An app with files under usr, etc and var.
fn app(version: u32) -> Package {
    Package::new("app", &format!("{version}"))
        .file(
            "usr/bin/app",
            format!("#!/bin/sh\necho app {version}\n"),
            0o755,
        )
        .symlink("usr/bin/app-latest", "app")
        .file("etc/app.conf", format!("version = {version}\n"), 0o644)
        .file("var/lib/app/schema", format!("schema {version}\n"), 0o644)
}

#[tokio::test]
async fn staging_on_a_separate_var_works_for_install_upgrade_and_remove() {
    let env = Env::builder(&Repo::new().with(app(1)))
        .tmpfs("var", "64m")
        .start()
        .await;

    env.spkctl(&["install", "app"]).await.assert_success();

    env.assert_files_are(&[&app(1)], &[]);
    env.assert_mount("var", "tmpfs");
    assert_clean(&env).await;

    env.publish(&Repo::new().with(app(2)));
    env.spkctl(&["upgrade"]).await.assert_success();

    env.assert_files_are(&[&app(2)], &[]);
    env.assert_mount("var", "tmpfs");
    assert_clean(&env).await;

    env.spkctl(&["remove", "app"]).await.assert_success();

    env.assert_files_are(&[], &[]);
    env.assert_mount("var", "tmpfs");
    assert_clean(&env).await;
}

#[tokio::test]
async fn removing_a_package_with_a_mount_inside_its_directory_succeeds_and_spkd_restarts() {
    let data = Package::new("data", "1")
        .file("opt/data/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
        .file("opt/data/cache/index", "index\n", 0o644);
    let mut env = Env::builder(&Repo::new().with(data.clone())).start().await;
    env.spkctl(&["install", "data"]).await.assert_success();
    // The admin mounts a tmpfs on the package's cache directory and fills it.
    env.mount_tmpfs("opt/data/cache", "4m");
    std::fs::write(env.path("opt/data/cache/blob"), "admin's\n").expect("write blob");

    env.spkctl(&["remove", "data"]).await.assert_success();

    env.assert_absent("opt/data/bin");
    env.assert_mount("opt/data/cache", "tmpfs");
    env.assert_file("opt/data/cache/blob", b"admin's\n", 0o644);
    env.assert_dir_holds("opt/data", &["cache"]);
    assert_eq!(env.installed_version("data").await, None);
    assert_clean(&env).await;

    // Nothing was left that stops the next start.
    env.restart_spkd().await;
    assert_eq!(env.installed_version("data").await, None);
    assert_clean(&env).await;
    env.spkctl(&["install", "data"]).await.assert_success();
    env.assert_file("opt/data/cache/index", b"index\n", 0o644);
    env.assert_file("opt/data/cache/blob", b"admin's\n", 0o644);
    assert_clean(&env).await;
}
