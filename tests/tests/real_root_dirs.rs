//! Directories of a real root: spk never changes the mode or owner of a directory that was
//! there before it, creates missing ones 0755 (or with the archive's mode when the archive has
//! an entry for a new one), and on remove takes away only the directories it created, once
//! they are empty, never a protected system directory (`tmp`, `root`, `opt`, ...).

use spk_tests::{Env, Package, Repo};

/// Install `name`, check the transaction left nothing behind and verify is clean.
async fn install(env: &Env, name: &str) {
    env.spkctl(&["install", name]).await.assert_success();
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}

/// Remove `name`, check the transaction left nothing behind and verify is clean.
async fn remove(env: &Env, name: &str) {
    env.spkctl(&["remove", name]).await.assert_success();
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
    assert_eq!(env.installed_version(name).await, None);
}

#[tokio::test]
async fn tmp_and_root_keep_their_modes_through_install_and_remove() {
    // The archive has no entries for tmp/ and root/, as the package had.
    let profile = Package::new("shell-profile", "1")
        .file("tmp/x", "scratch\n", 0o644)
        .file("root/.profile", "export PS1='# '\n", 0o600)
        .without_parent_entries();
    let env = Env::builder(&Repo::new().with(profile.clone()))
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .start()
        .await;

    install(&env, "shell-profile").await;

    env.assert_dir("tmp", 0o1777);
    env.assert_dir("root", 0o700);
    env.assert_owner("root", 0, 0);
    env.assert_files_are(&[&profile], &[]);

    remove(&env, "shell-profile").await;

    env.assert_dir("tmp", 0o1777);
    env.assert_dir("root", 0o700);
    env.assert_owner("root", 0, 0);
    env.assert_dir_holds("tmp", &[]);
    env.assert_dir_holds("root", &[]);
}

#[tokio::test]
async fn an_archive_entry_for_an_existing_directory_does_not_change_it() {
    // A normal `tar -c` archive: tmp/ and root/ are entries of mode 0755.
    let profile = Package::new("shell-profile", "1")
        .file("tmp/x", "scratch\n", 0o644)
        .file("root/.profile", "export PS1='# '\n", 0o600);
    let env = Env::builder(&Repo::new().with(profile.clone()))
        .dir("tmp", 0o1777)
        .dir("root", 0o700)
        .start()
        .await;

    install(&env, "shell-profile").await;

    env.assert_dir("tmp", 0o1777);
    env.assert_dir("root", 0o700);

    remove(&env, "shell-profile").await;

    env.assert_dir("tmp", 0o1777);
    env.assert_dir("root", 0o700);
}

#[tokio::test]
async fn an_existing_opt_keeps_its_mode_and_owner_and_stays_after_remove() {
    let app = Package::new("app", "1").file("opt/app/bin/x", "#!/bin/sh\n", 0o755);
    let env = Env::builder(&Repo::new().with(app.clone()))
        .dir_owned("opt", 0o750, 1000, 1000)
        .start()
        .await;

    install(&env, "app").await;

    env.assert_dir("opt", 0o750);
    env.assert_owner("opt", 1000, 1000);
    env.assert_dir("opt/app", 0o755);
    env.assert_dir("opt/app/bin", 0o755);
    env.assert_owner("opt/app", 0, 0);
    env.assert_files_are(&[&app], &[]);

    remove(&env, "app").await;

    env.assert_absent("opt/app");
    env.assert_dir("opt", 0o750);
    env.assert_owner("opt", 1000, 1000);
    env.assert_dir_holds("opt", &[]);
}

#[tokio::test]
async fn directories_spk_created_go_on_remove_but_a_protected_one_stays() {
    let app = Package::new("app", "1").file("opt/app/bin/x", "#!/bin/sh\n", 0o755);
    let env = Env::builder(&Repo::new().with(app)).start().await;
    assert!(!env.path("opt").exists());

    install(&env, "app").await;
    env.assert_dir("opt", 0o755);

    remove(&env, "app").await;

    // opt is a protected system directory; opt/app and opt/app/bin were spk's.
    env.assert_dir("opt", 0o755);
    env.assert_dir_holds("opt", &[]);
}

#[tokio::test]
async fn a_directory_that_is_not_empty_is_never_removed() {
    let app = Package::new("app", "1")
        .file("usr/share/app/data/table", "1 2 3\n", 0o644)
        .file("usr/share/app/readme", "app\n", 0o644);
    let env = Env::builder(&Repo::new().with(app)).start().await;
    install(&env, "app").await;
    // The admin keeps a file of their own in the package's directory.
    std::fs::write(env.path("usr/share/app/data/local"), "mine\n").expect("write local");

    remove(&env, "app").await;

    env.assert_file("usr/share/app/data/local", b"mine\n", 0o644);
    env.assert_absent("usr/share/app/data/table");
    env.assert_absent("usr/share/app/readme");
    env.assert_dir_holds("usr/share/app", &["data"]);
    env.assert_dir_holds("usr/share/app/data", &["local"]);
}

#[tokio::test]
async fn a_directory_that_existed_before_stays_even_when_empty() {
    let site = Package::new("site", "1").file("data/www/index.html", "<h1>hi</h1>\n", 0o644);
    let env = Env::builder(&Repo::new().with(site))
        .dir("data", 0o755)
        .dir("data/www", 0o2775)
        .start()
        .await;

    install(&env, "site").await;
    env.assert_dir("data/www", 0o2775);

    remove(&env, "site").await;

    env.assert_dir("data", 0o755);
    env.assert_dir("data/www", 0o2775);
    env.assert_dir_holds("data/www", &[]);
}

#[tokio::test]
async fn an_explicit_entry_gives_a_new_directory_its_mode() {
    let vault =
        Package::new("vault", "1")
            .dir("srv/vault", 0o700)
            .file("srv/vault/key", "secret\n", 0o600);
    let env = Env::builder(&Repo::new().with(vault)).start().await;

    install(&env, "vault").await;

    env.assert_dir("srv/vault", 0o700);
    env.assert_file("srv/vault/key", b"secret\n", 0o600);
}

#[tokio::test]
async fn an_upgrade_that_drops_a_directory_removes_it_once_empty() {
    let v1 = Package::new("app", "1")
        .file("opt/app/bin/x", "#!/bin/sh\necho 1\n", 0o755)
        .file("opt/app/plugins/a.so", "plugin a\n", 0o644)
        .file("opt/app/plugins/b.so", "plugin b\n", 0o644);
    let v2 = Package::new("app", "2").file("opt/app/bin/x", "#!/bin/sh\necho 2\n", 0o755);
    let env = Env::builder(&Repo::new().with(v1)).start().await;
    install(&env, "app").await;
    env.publish(&Repo::new().with(v2.clone()));

    env.spkctl(&["upgrade"]).await.assert_success();

    env.assert_files_are(&[&v2], &[]);
    env.assert_absent("opt/app/plugins");
    env.assert_dir_holds("opt/app", &["bin"]);
    env.spkctl(&["verify"]).await.assert_success();
    env.assert_staging_clean();
}
