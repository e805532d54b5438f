//! spk-notifier on a headless desktop: a real StatusNotifierWatcher and a real notification
//! server (dunst on Xvfb) on a private session bus, spkd on its own "system" bus, and the
//! user's story told through them — updates appear, the tray item turns Active with the count,
//! a notification offers "Install updates now", choosing it upgrades the system.
//!
//! Needs `Xvfb`, `dunst` and `status-notifier-watcher` (Debian packages `xvfb`, `dunst`,
//! `haskell-status-notifier-item-utils`; `.ci/run` installs them) besides what `spk-tests`
//! needs. Each test prints what the watcher, the item and dunst exposed (see `--nocapture`).

mod desktop;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use desktop::{CallMonitor, Session, eventually};
use spk_tests::client::{MANAGER, MANAGER_PATH, TRANSACTION};
use spk_tests::{Fault, Package, Repo};
use zbus::object_server::ObjectServer;
use zbus::zvariant::OwnedObjectPath;

fn kate(version: &str) -> Package {
    Package::new("kate", version).file(
        "usr/bin/kate",
        format!("#!/bin/sh\necho kate {version}\n"),
        0o755,
    )
}

/// Wait until spkd has a transaction of `kind` in state `finished`; its path.
async fn finished_transaction(session: &Session, kind: &str) -> String {
    let client = session.env.client().await;
    let client = &client;
    eventually(
        &format!("a finished {kind} transaction in spkd"),
        || async move {
            let mut seen = Vec::new();
            for path in client.transactions().await {
                let props = client.properties(path.as_str(), TRANSACTION).await;
                if props["Kind"] == kind && props["State"] == "finished" {
                    return Ok(path.to_string());
                }
                seen.push(props);
            }
            Err(format!("{seen:?}"))
        },
    )
    .await
}

/// The labels of a menu, in order.
fn labels(menu: &[(i32, String, bool)]) -> Vec<&str> {
    menu.iter().map(|(_, label, _)| label.as_str()).collect()
}

/// The keys of the install actions dunst's context menu offered, sorted (its lines read
/// `#LABEL (SUMMARY) [ID,KEY]`, in an order of dunst's own).
fn install_actions(offered: &str) -> Vec<&str> {
    let mut keys: Vec<&str> = offered
        .lines()
        .filter(|l| l.starts_with("#Install updates"))
        .filter_map(|l| l.rsplit_once(',')?.1.strip_suffix(']'))
        .collect();
    keys.sort();
    keys
}

/// `Refresh({})` on spkd, as another client (the boot-time check) would call it.
async fn refresh_from_elsewhere(session: &Session) {
    let client = session.env.client().await;
    let options: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    client
        .call(MANAGER_PATH, MANAGER, "Refresh", &(options,))
        .await
        .expect("Refresh");
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_turn_the_item_active_and_the_notification_installs_them() {
    let mut s = Session::start(&Repo::new().with(kate("1.0-1")), &["kate"]).await;
    let item = s.item().await;
    let desktop = &s.desktop;
    // What spkd's polkit check will see of the notifier's calls.
    let calls = CallMonitor::start(s.env.bus.address(), &["Refresh", "Upgrade"]).await;

    // Nothing pending: the item is Passive and offers no install.
    let idle = s.wait_for(&item, "Passive", "System is up to date").await;
    let idle_props = item.all_properties(desktop).await;
    let menu = item.menu(desktop).await;
    assert!(
        menu.iter()
            .any(|(_, l, enabled)| l == "Install updates now" && !enabled),
        "{menu:?}"
    );

    // A new release; the user clicks "Check now" in the tray menu.
    let v2 = Repo::new().with(kate("2.0-1"));
    s.env.publish(&v2);
    // The download of the upgrade stalls a moment, so its progress can be watched.
    s.env.server.set_fault_times(
        &v2.get("kate").path(),
        Fault::Stall(Duration::from_millis(1500)),
        1,
    );
    item.click(desktop, "Check now").await;
    let (title, names) = s.wait_for(&item, "Active", "1 update available").await;
    assert_eq!(names, "kate");
    let active_props = item.all_properties(desktop).await;
    let active_menu = item.menu(desktop).await;
    assert_eq!(
        labels(&active_menu)[..2],
        ["Install updates now", "Install updates at restart"],
        "{active_menu:?}"
    );
    assert!(
        active_menu
            .iter()
            .any(|(_, l, enabled)| l == "Install updates now" && *enabled),
        "{active_menu:?}"
    );

    // dunst received one notification offering "Install updates now".
    let received = eventually("dunst to receive the notification", || async move {
        let r = desktop.received();
        if r.is_empty() {
            Err("nothing".to_owned())
        } else {
            Ok(r)
        }
    })
    .await;
    let notice = &received[0];
    assert_eq!(notice.app_name, "Software Updates");
    assert_eq!(notice.summary, "1 update available");
    assert_eq!(notice.body, "kate 1.0-1 → 2.0-1");
    assert_eq!(notice.desktop_entry, "spk-notifier");
    let displayed = desktop.dunstctl(&["count", "displayed"]);
    assert_eq!(displayed.trim(), "1", "dunst displays {displayed}");

    // The user opens the notification's actions and picks "Install updates now".
    desktop.dunstctl(&["context"]);
    let offered = eventually("dunst's context menu", || async move {
        desktop
            .context_menu()
            .filter(|m| !m.is_empty())
            .ok_or_else(String::new)
    })
    .await;
    // Both installs are offered (dunst lists actions in an order of its own; kate is userland,
    // so the notifier sent "install" first, as its menu shows).
    assert_eq!(
        install_actions(&offered),
        ["install", "install-at-restart"],
        "dunst offered: {offered}"
    );
    assert!(
        offered.lines().any(|l| l.ends_with(",default]")),
        "{offered}"
    );

    // The upgrade runs; the tooltip shows its progress (no job tracker on this desktop).
    let item_ref = &item;
    let (progress_title, activity) = eventually("progress in the tooltip", || async move {
        let item = item_ref;
        let now = (item.status(desktop).await, item.tooltip(desktop).await);
        if now.0 == "Active" && now.1.0.starts_with("Installing updates — ") {
            Ok(now.1)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    // The overall progress: "Installing updates — 42 %, 0 of 1" (packages done of the update).
    let overall = progress_title.trim_start_matches("Installing updates — ");
    let (percent, tally) = overall.split_once(" %, ").expect(&progress_title);
    assert!(
        percent.parse::<u32>().is_ok_and(|p| p <= 100),
        "{progress_title}"
    );
    assert!(tally == "0 of 1" || tally == "1 of 1", "{progress_title}");
    // Without a job tracker, a notice with a progress bar (the `value` hint) shows it too.
    let bar = eventually("a progress notification", || async move {
        let r = desktop.received();
        r.iter()
            .find(|n| n.summary == "Installing updates")
            .cloned()
            .ok_or_else(|| format!("{r:?}"))
    })
    .await;
    assert!(
        bar.progress.parse::<u32>().is_ok_and(|p| p <= 100),
        "no value hint: {bar:?}"
    );
    let transaction = finished_transaction(&s, "upgrade").await;
    s.env
        .assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 2.0-1\n", 0o755);
    // Both calls let polkit ask the desktop's agent for a password.
    let seen = calls.seen();
    for member in ["Refresh", "Upgrade"] {
        assert!(
            seen.iter()
                .any(|c| c.member == member && c.allow_interactive_auth),
            "{member} without ALLOW_INTERACTIVE_AUTHORIZATION: {seen:?}"
        );
    }

    // Done: Passive again, and a notice says so.
    s.wait_for(&item, "Passive", "System is up to date").await;
    let done = eventually("the 'Updates installed' notice", || async move {
        let r = desktop.received();
        r.iter()
            .find(|n| n.summary == "Updates installed")
            .cloned()
            .ok_or_else(|| format!("{r:?}"))
    })
    .await;
    assert_eq!(done.body, "kate 2.0-1");
    // The notifier's log is plain text, without terminal colour codes.
    let log = s.notifier.log();
    assert!(log.contains("notification shown"), "{log}");
    assert!(!log.contains('\x1b'), "colour codes in the log:\n{log}");

    eprintln!("===== account =====");
    eprintln!(
        "watcher RegisteredStatusNotifierItems = {:?}",
        desktop.registered_items().await
    );
    eprintln!("item (idle) ToolTip = {idle:?}");
    for (k, v) in &idle_props {
        eprintln!("  idle   {k} = {v}");
    }
    eprintln!("item (updates) ToolTip = ({title:?}, {names:?})");
    for (k, v) in &active_props {
        eprintln!("  active {k} = {v}");
    }
    eprintln!("menu (idle) = {menu:?}");
    eprintln!("menu (updates) = {active_menu:?}");
    eprintln!("progress tooltip = ({progress_title:?}, {activity:?})");
    eprintln!("dunst received = {:#?}", desktop.received());
    eprintln!("dunst context menu offered:\n{offered}");
    eprintln!("upgrade transaction = {transaction}");
    eprintln!("calls seen on spkd's bus = {seen:?}");
    eprintln!("dunstctl history = {}", desktop.dunstctl(&["history"]));
}

/// Calls the notifier made on the fake job tracker, in order.
#[derive(Clone, Default)]
struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    fn push(&self, call: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A stand-in for Plasma's `org.kde.JobViewServer` that records what it is told.
struct FakeJobViewServer {
    log: CallLog,
    views: u32,
}

#[zbus::interface(name = "org.kde.JobViewServer")]
impl FakeJobViewServer {
    #[zbus(name = "requestView")]
    async fn request_view(
        &mut self,
        app_name: String,
        app_icon_name: String,
        capabilities: i32,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> OwnedObjectPath {
        self.views += 1;
        let path = format!("/JobViewServer/JobView_{}", self.views);
        let view = FakeJobView {
            log: self.log.clone(),
        };
        server
            .at(path.as_str(), view)
            .await
            .expect("serve job view");
        self.log.push(format!(
            "requestView({app_name:?}, {app_icon_name:?}, {capabilities}) -> {path}"
        ));
        OwnedObjectPath::try_from(path).expect("path")
    }
}

struct FakeJobView {
    log: CallLog,
}

#[zbus::interface(name = "org.kde.JobViewV2")]
impl FakeJobView {
    #[zbus(name = "setPercent")]
    fn set_percent(&self, percent: u32) {
        self.log.push(format!("setPercent({percent})"));
    }
    #[zbus(name = "setInfoMessage")]
    fn set_info_message(&self, message: String) {
        self.log.push(format!("setInfoMessage({message:?})"));
    }
    #[zbus(name = "setDescriptionField")]
    fn set_description_field(&self, number: u32, name: String, value: String) -> bool {
        self.log.push(format!(
            "setDescriptionField({number}, {name:?}, {value:?})"
        ));
        true
    }
    #[zbus(name = "terminate")]
    fn terminate(&self, error_message: String) {
        self.log.push(format!("terminate({error_message:?})"));
    }
}

/// A [`FakeJobViewServer`] logging to `jobs` on the session's bus (until dropped).
async fn job_tracker(s: &Session, jobs: &CallLog) -> zbus::Connection {
    zbus::connection::Builder::address(s.desktop.bus.address())
        .expect("address")
        .name("org.kde.JobViewServer")
        .expect("name")
        .serve_at(
            "/JobViewServer",
            FakeJobViewServer {
                log: jobs.clone(),
                views: 0,
            },
        )
        .expect("serve")
        .build()
        .await
        .expect("job tracker on the session bus")
}

/// Wait until `jobs` holds a call starting with `prefix`; all calls so far.
async fn job_call(jobs: &CallLog, prefix: &str) -> Vec<String> {
    eventually(
        &format!("the job tracker to be told {prefix}"),
        || async move {
            let calls = jobs.calls();
            if calls.iter().any(|c| c.starts_with(prefix)) {
                Ok(calls)
            } else {
                Err(format!("{calls:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notifier_follows_spkd_restarts_and_upgrades_started_elsewhere() {
    let mut s = Session::start(&Repo::new().with(kate("1.0-1")), &["kate"]).await;
    let item = s.item().await;
    let jobs = CallLog::default();
    let _job_tracker = job_tracker(&s, &jobs).await;

    // The boot-time check (another client) finds an update.
    let v2 = Repo::new().with(kate("2.0-1"));
    s.env.publish(&v2);
    refresh_from_elsewhere(&s).await;
    s.wait_for(&item, "Active", "1 update available").await;
    let desktop = &s.desktop;
    eventually("one notification", || async move {
        let n = desktop.received().len();
        if n == 1 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;

    // spkd stops: the item says so.
    s.env.spkd.terminate(Duration::from_secs(15)).await;
    let (_, why) = s
        .wait_for(&item, "Passive", "Update service not running")
        .await;
    assert!(why.contains("spkd"), "{why}");

    // spkd is back: the item shows the updates again, without a second notification.
    s.env.restart_spkd().await;
    let desktop = &s.desktop;
    let item_ref = &item;
    let status = eventually("the item to see spkd again", || async move {
        let item = item_ref;
        let (title, _) = item.tooltip(desktop).await;
        if title == "Update service not running" {
            Err(title)
        } else {
            Ok(title)
        }
    })
    .await;
    eprintln!("after the restart the item said {status:?}");
    if status != "1 update available" {
        // This spkd forgot its last refresh; the next check finds the same update.
        refresh_from_elsewhere(&s).await;
    }
    s.wait_for(&item, "Active", "1 update available").await;
    assert_eq!(
        s.desktop.received().len(),
        1,
        "notified again for the same update: {:#?}",
        s.desktop.received()
    );

    // Someone upgrades with spkctl; the notifier follows it in the job tracker.
    s.env.server.set_fault_times(
        &v2.get("kate").path(),
        Fault::Stall(Duration::from_millis(800)),
        1,
    );
    s.env.spkctl(&["upgrade"]).await.assert_success();
    s.wait_for(&item, "Passive", "System is up to date").await;
    let jobs_ref = &jobs;
    let calls = eventually("the job view to end", || async move {
        let calls = jobs_ref.calls();
        if calls.iter().any(|c| c.starts_with("terminate")) {
            Ok(calls)
        } else {
            Err(format!("{calls:?}"))
        }
    })
    .await;
    assert_eq!(
        calls[0],
        "requestView(\"Software Updates\", \"system-software-update\", 1) -> /JobViewServer/JobView_1"
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "setInfoMessage(\"Installing updates\")"),
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("terminate(\"\")"),
        "{calls:?}"
    );
    let percents: Vec<u32> = calls
        .iter()
        .filter_map(|c| {
            c.strip_prefix("setPercent(")?
                .strip_suffix(')')?
                .parse()
                .ok()
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert_eq!(percents.last(), Some(&100), "{calls:?}");
    // With a job tracker, progress is not repeated as a notice.
    assert!(
        !s.desktop
            .received()
            .iter()
            .any(|n| n.summary == "Updates installed"),
        "{:#?}",
        s.desktop.received()
    );
    eprintln!("===== job tracker calls =====\n{}", calls.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_package_is_neither_counted_nor_announced() {
    let konsole = |version: &str| {
        Package::new("konsole", version).file(
            "usr/bin/konsole",
            format!("#!/bin/sh\necho konsole {version}\n"),
            0o755,
        )
    };
    let mut s = Session::start(
        &Repo::new().with(kate("1.0-1")).with(konsole("1.0-1")),
        &["kate", "konsole"],
    )
    .await;
    let item = s.item().await;
    s.wait_for(&item, "Passive", "System is up to date").await;
    s.env.spkctl(&["hold", "konsole"]).await.assert_success();

    s.env
        .publish(&Repo::new().with(kate("2.0-1")).with(konsole("2.0-1")));
    refresh_from_elsewhere(&s).await;
    let (_, names) = s.wait_for(&item, "Active", "1 update available").await;
    assert_eq!(names, "kate");
    let desktop = &s.desktop;
    let received = eventually("the notification", || async move {
        let r = desktop.received();
        if r.is_empty() {
            Err("nothing".to_owned())
        } else {
            Ok(r)
        }
    })
    .await;
    assert_eq!(received[0].body, "kate 1.0-1 → 2.0-1", "{received:#?}");

    // Root upgrades in a terminal: spkctl reports it there, the notifier announces nothing.
    s.env.spkctl(&["upgrade"]).await.assert_success();
    s.wait_for(&item, "Passive", "System is up to date").await;
    finished_transaction(&s, "upgrade").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results: Vec<_> = s
        .desktop
        .received()
        .into_iter()
        .filter(|n| n.summary.contains("installed"))
        .collect();
    assert!(
        results.is_empty(),
        "announced an upgrade run elsewhere: {results:#?}"
    );

    // Only konsole is new: nothing to show, nothing to announce.
    refresh_from_elsewhere(&s).await;
    finished_transaction(&s, "refresh").await;
    s.wait_for(&item, "Passive", "System is up to date").await;
    let announced = s
        .desktop
        .received()
        .into_iter()
        .filter(|n| n.summary.contains("available"))
        .count();
    assert_eq!(announced, 1, "{:#?}", s.desktop.received());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_update_says_nothing_was_changed() {
    let mut s = Session::start(&Repo::new().with(kate("1.0-1")), &["kate"]).await;
    let item = s.item().await;
    let v2 = Repo::new().with(kate("2.0-1"));
    s.env.publish(&v2);
    refresh_from_elsewhere(&s).await;
    s.wait_for(&item, "Active", "1 update available").await;

    // The user installs the update from the tray; its download stalls, and they cancel it.
    s.env.server.set_fault_times(
        &v2.get("kate").path(),
        Fault::Stall(Duration::from_secs(5)),
        1,
    );
    item.click(&s.desktop, "Install updates now").await;
    let client = s.env.client().await;
    let client = &client;
    let upgrade = eventually("the upgrade to run", || async move {
        for path in client.transactions().await {
            let props = client.properties(path.as_str(), TRANSACTION).await;
            if props["Kind"] == "upgrade" && props["State"] == "downloading" {
                return Ok(path.to_string());
            }
        }
        Err("no running upgrade".to_owned())
    })
    .await;
    client
        .call(&upgrade, TRANSACTION, "Cancel", &())
        .await
        .expect("Cancel");

    let desktop = &s.desktop;
    let notice = eventually("the cancel notice", || async move {
        let r = desktop.received();
        r.iter()
            .find(|n| n.summary.contains("ancel"))
            .cloned()
            .ok_or_else(|| format!("{r:#?}"))
    })
    .await;
    assert_eq!(notice.summary, "Update cancelled");
    assert_eq!(notice.body, "Nothing was changed.");
    s.env
        .assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 1.0-1\n", 0o755);
    eprintln!("dunst received = {:#?}", s.desktop.received());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_views_cancel_button_cancels_the_update() {
    let mut s = Session::start(&Repo::new().with(kate("1.0-1")), &["kate"]).await;
    let item = s.item().await;
    let jobs = CallLog::default();
    let tracker = job_tracker(&s, &jobs).await;
    let v2 = Repo::new().with(kate("2.0-1"));
    s.env.publish(&v2);
    refresh_from_elsewhere(&s).await;
    s.wait_for(&item, "Active", "1 update available").await;

    // The user installs the update; while it downloads, they press the job view's cancel.
    s.env.server.set_fault_times(
        &v2.get("kate").path(),
        Fault::Stall(Duration::from_secs(5)),
        1,
    );
    item.click(&s.desktop, "Install updates now").await;
    let calls = job_call(&jobs, "setInfoMessage").await;
    let view = calls[0]
        .rsplit_once(" -> ")
        .map(|(_, path)| path.to_owned())
        .expect("a view path");
    tracker
        .emit_signal(
            None::<()>,
            view.as_str(),
            "org.kde.JobViewV2",
            "cancelRequested",
            &(),
        )
        .await
        .expect("emit cancelRequested");

    let calls = job_call(&jobs, "terminate").await;
    assert_eq!(
        calls.last().map(String::as_str),
        Some("terminate(\"Update cancelled\")"),
        "{calls:?}"
    );
    let client = s.env.client().await;
    let client = &client;
    eventually("a cancelled upgrade in spkd", || async move {
        let mut seen = Vec::new();
        for path in client.transactions().await {
            let props = client.properties(path.as_str(), TRANSACTION).await;
            if props["Kind"] == "upgrade" && props["State"] == "cancelled" {
                return Ok(());
            }
            seen.push(props);
        }
        Err(format!("{seen:?}"))
    })
    .await;
    s.env
        .assert_file("usr/bin/kate", b"#!/bin/sh\necho kate 1.0-1\n", 0o755);
    eprintln!("===== job tracker calls =====\n{}", calls.join("\n"));
}

/// A system package: the update of a running desktop that is safer installed at restart.
fn plasma(version: &str) -> Package {
    Package::new("plasma-workspace", version)
        .file(
            "usr/bin/plasmashell",
            format!("#!/bin/sh\necho plasmashell {version}\n"),
            0o755,
        )
        .system()
}

/// spkd's `PreparedUpdate` as JSON (`prepared-at` 0: none).
async fn prepared_update(s: &Session) -> serde_json::Value {
    s.env
        .client()
        .await
        .property_json(MANAGER_PATH, MANAGER, "PreparedUpdate")
        .await
}

/// Wait until dunst received a notice with this `summary`; the notice.
async fn notice(s: &Session, summary: &str) -> desktop::Received {
    let desktop = &s.desktop;
    eventually(&format!("the notice {summary:?}"), || async move {
        let r = desktop.received();
        r.iter()
            .find(|n| n.summary == summary)
            .cloned()
            .ok_or_else(|| format!("{r:#?}"))
    })
    .await
}

/// A stand-in for Plasma's `org.kde.LogoutPrompt` (the restart dialog).
struct FakeLogoutPrompt(CallLog);

#[zbus::interface(name = "org.kde.LogoutPrompt")]
impl FakeLogoutPrompt {
    #[zbus(name = "promptReboot")]
    fn prompt_reboot(&self) {
        self.0.push("promptReboot".to_owned());
    }
}

/// A stand-in for ksmserver's `org.kde.Shutdown`.
struct FakeShutdown(CallLog);

#[zbus::interface(name = "org.kde.Shutdown")]
impl FakeShutdown {
    #[zbus(name = "logoutAndReboot")]
    fn logout_and_reboot(&self) {
        self.0.push("logoutAndReboot".to_owned());
    }
}

/// Serve `iface` at `path` under `name` on the session's bus (until dropped).
async fn serve_on_session<I: zbus::object_server::Interface>(
    s: &Session,
    name: &str,
    path: &str,
    iface: I,
) -> zbus::Connection {
    zbus::connection::Builder::address(s.desktop.bus.address())
        .expect("address")
        .name(name.to_owned())
        .expect("name")
        .serve_at(path, iface)
        .expect("serve")
        .build()
        .await
        .expect("a stand-in on the session bus")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_system_update_is_prepared_for_the_restart_and_the_session_asked_to_restart() {
    let mut s = Session::start(&Repo::new().with(plasma("6.5-1")), &["plasma-workspace"]).await;
    let item = s.item().await;
    s.wait_for(&item, "Passive", "System is up to date").await;

    // A Plasma update: installing it at restart is offered first, in the menu and the notice.
    s.env.publish(&Repo::new().with(plasma("6.6-1")));
    refresh_from_elsewhere(&s).await;
    s.wait_for(&item, "Active", "1 update available").await;
    let menu = item.menu(&s.desktop).await;
    assert_eq!(
        labels(&menu)[..2],
        ["Install updates at restart", "Install updates now"],
        "{menu:?}"
    );
    assert!(
        menu.iter().take(2).all(|(_, _, enabled)| *enabled),
        "{menu:?}"
    );
    let announced = notice(&s, "1 update available").await;
    assert_eq!(announced.body, "plasma-workspace 6.5-1 → 6.6-1");

    // The user picks "Install updates at restart" among the notice's actions.
    let desktop = &s.desktop;
    desktop.pick("Install updates at restart");
    desktop.dunstctl(&["context"]);
    let offered = eventually("dunst's context menu", || async move {
        desktop
            .context_menu()
            .filter(|m| !m.is_empty())
            .ok_or_else(String::new)
    })
    .await;
    assert_eq!(
        install_actions(&offered),
        ["install", "install-at-restart"],
        "dunst offered: {offered}"
    );

    // spkd prepares the update and installs nothing.
    let (title, body) = s
        .wait_for(&item, "Active", "Updates will be installed at restart")
        .await;
    assert_eq!(body, "plasma-workspace 6.5-1 → 6.6-1", "{title}");
    let prepared = prepared_update(&s).await;
    assert!(prepared["prepared-at"].as_u64() > Some(0), "{prepared}");
    assert_eq!(prepared["stale"], "", "{prepared}");
    s.env.assert_file(
        "usr/bin/plasmashell",
        b"#!/bin/sh\necho plasmashell 6.5-1\n",
        0o755,
    );
    assert_eq!(
        s.env.installed_version("plasma-workspace").await.as_deref(),
        Some("6.5-1")
    );
    let ready = notice(&s, "Updates ready for restart").await;
    assert!(
        ready.body.contains("next time the computer restarts"),
        "{ready:?}"
    );
    let icon = item.property(&s.desktop, "IconName").await;
    assert_eq!(String::try_from(icon).expect("s"), "system-reboot");
    let menu = item.menu(&s.desktop).await;
    for entry in ["Restart and install", "Cancel prepared update"] {
        assert!(
            menu.iter().any(|(_, l, enabled)| l == entry && *enabled),
            "{entry} missing: {menu:?}"
        );
    }
    assert!(
        menu.iter()
            .any(|(_, l, enabled)| l == "Install updates now" && !enabled),
        "{menu:?}"
    );

    // "Restart and install" on a desktop that cannot restart: the user is told to.
    item.click(&s.desktop, "Restart and install").await;
    let told = notice(&s, "Restart the computer to install the updates").await;
    assert!(
        told.body.contains("installed at the next restart"),
        "{told:?}"
    );

    // Under ksmserver alone: it ends the session and reboots.
    let calls = CallLog::default();
    let _shutdown = serve_on_session(
        &s,
        "org.kde.Shutdown",
        "/Shutdown",
        FakeShutdown(calls.clone()),
    )
    .await;
    item.click(&s.desktop, "Restart and install").await;
    job_call(&calls, "logoutAndReboot").await;

    // Under Plasma 6: its restart dialog, in preference.
    let _prompt = serve_on_session(
        &s,
        "org.kde.LogoutPrompt",
        "/LogoutPrompt",
        FakeLogoutPrompt(calls.clone()),
    )
    .await;
    item.click(&s.desktop, "Restart and install").await;
    let asked = job_call(&calls, "promptReboot").await;
    assert_eq!(asked, ["logoutAndReboot", "promptReboot"]);

    // The user changes their mind: the prepared update goes, the update is pending again.
    item.click(&s.desktop, "Cancel prepared update").await;
    s.wait_for(&item, "Active", "1 update available").await;
    let prepared = prepared_update(&s).await;
    assert_eq!(prepared["prepared-at"], 0, "{prepared}");
    assert!(!s.env.path("var/lib/spk/offline").exists());
    eprintln!("dunst context menu offered:\n{offered}");
    eprintln!("dunst received = {:#?}", s.desktop.received());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_update_installed_at_restart_is_told_once_after_the_boot() {
    let mut s = Session::start(&Repo::new().with(plasma("6.5-1")), &["plasma-workspace"]).await;
    let item = s.item().await;
    s.env.publish(&Repo::new().with(plasma("6.6-1")));
    s.env
        .spkctl(&["upgrade", "--offline"])
        .await
        .assert_success();
    s.wait_for(&item, "Active", "Updates will be installed at restart")
        .await;

    // The computer restarts: the session ends, the boot installs the update, the user logs in.
    s.stop_notifier().await;
    let boot = s.env.boot_applying_offline_update(&[]).await;
    assert!(
        boot.status.success(),
        "{}",
        String::from_utf8_lossy(&boot.stdout)
    );
    s.start_notifier();
    let item = s.item().await;
    let told = notice(&s, "Updates installed at restart").await;
    assert_eq!(told.body, "plasma-workspace 6.6-1");
    s.wait_for(&item, "Passive", "System is up to date").await;

    // The next login tells nothing again.
    s.stop_notifier().await;
    s.start_notifier();
    let item = s.item().await;
    s.wait_for(&item, "Passive", "System is up to date").await;
    let notifier = &s.notifier;
    eventually("the notifier to read the history", || async move {
        let log = notifier.log();
        if log.contains("no update installed at restart to tell") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    let told: Vec<_> = s
        .desktop
        .received()
        .into_iter()
        .filter(|n| n.summary.contains("at restart"))
        .collect();
    assert_eq!(told.len(), 1, "{told:#?}");
    let state = std::fs::read_to_string(s.env.dir().join("session/state/spk-notifier/state"))
        .expect("the notifier's state file");
    assert!(state.contains("announced_boot_update = "), "{state}");

    // The next update is prepared, then the admin installs something else: the boot discards
    // it, and the next login says so, with the day it was prepared.
    s.env
        .publish(&Repo::new().with(plasma("6.7-1")).with(kate("1.0-1")));
    s.env
        .spkctl(&["upgrade", "--offline"])
        .await
        .assert_success();
    s.wait_for(&item, "Active", "Updates will be installed at restart")
        .await;
    s.env.spkctl(&["install", "kate"]).await.assert_success();
    s.stop_notifier().await;
    let boot = s.env.boot_applying_offline_update(&[]).await;
    assert!(!boot.status.success());
    s.start_notifier();
    s.item().await;
    let failed = notice(&s, "Updates not installed at restart").await;
    let (prepared_on, why) = failed
        .body
        .strip_prefix("The updates prepared on ")
        .and_then(|rest| rest.split_once(" UTC could not be installed: "))
        .unwrap_or_else(|| panic!("{failed:?}"));
    assert_eq!(prepared_on.len(), "2026-12-02 09:42".len(), "{failed:?}");
    assert!(why.contains("was discarded"), "{failed:?}");
    eprintln!("state file:\n{state}");
    eprintln!("dunst received = {:#?}", s.desktop.received());
}
