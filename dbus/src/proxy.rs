//! The client side: one `#[proxy]` per interface of `xyz.smech.Spk1.xml`, with the typed rows
//! and words of this crate. `tests/proxies.rs` calls every member through them against a peer
//! that answers with the XML's types.
//!
//! Calls that change the system carry ALLOW_INTERACTIVE_AUTHORIZATION, so polkit may ask the
//! user's authentication agent instead of refusing at once. No call has a reply timeout: a
//! user may take a while to type a password (zbus sets none unless asked to).

use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

use crate::options::{ChangeOptions, CleanOptions};
use crate::rows::{
    self, HistoryRow, PackageRow, PlannedChange, PreparedRow, Problem, RepositoryRow,
};
use crate::words::{Activity, HookState, Kind, NoticeKind, State};

/// `xyz.smech.Spk1.Manager` at `/xyz/smech/Spk1`.
#[proxy(
    interface = "xyz.smech.Spk1.Manager",
    default_service = "xyz.smech.Spk1",
    default_path = "/xyz/smech/Spk1",
    gen_blocking = false
)]
pub trait Manager {
    /// Fetch every repository's index; `UpdatesAvailable` follows when updates exist.
    #[zbus(allow_interactive_auth)]
    fn refresh(&self, options: &ChangeOptions) -> zbus::Result<OwnedObjectPath>;
    #[zbus(allow_interactive_auth)]
    fn install(&self, names: &[&str], options: &ChangeOptions) -> zbus::Result<OwnedObjectPath>;
    /// Upgrade the named packages, or every installed one when `names` is empty.
    #[zbus(allow_interactive_auth)]
    fn upgrade(&self, names: &[&str], options: &ChangeOptions) -> zbus::Result<OwnedObjectPath>;
    #[zbus(allow_interactive_auth)]
    fn remove(&self, names: &[&str], options: &ChangeOptions) -> zbus::Result<OwnedObjectPath>;
    /// Back to the previous build of each named package, from the cache (or, with option
    /// `undo`, undo one history entry).
    #[zbus(allow_interactive_auth)]
    fn rollback(&self, names: &[&str], options: &ChangeOptions) -> zbus::Result<OwnedObjectPath>;
    /// Hold installed packages: upgrades leave them alone unless named.
    #[zbus(allow_interactive_auth)]
    fn hold(&self, names: &[&str]) -> zbus::Result<()>;
    #[zbus(allow_interactive_auth)]
    fn unhold(&self, names: &[&str]) -> zbus::Result<()>;
    /// Discard the prepared update and free its space: whether there was one.
    #[zbus(allow_interactive_auth)]
    fn cancel_prepared_update(&self) -> zbus::Result<bool>;
    fn list_packages(&self) -> zbus::Result<Vec<PackageRow>>;
    fn get_transactions(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    /// What Install/Upgrade/Remove (`kind`) would do, changing nothing.
    fn plan(
        &self,
        kind: Kind,
        names: &[&str],
        options: &ChangeOptions,
    ) -> zbus::Result<Vec<PlannedChange>>;
    /// Installed files that differ from their package's manifest.
    fn verify(&self, names: &[&str]) -> zbus::Result<Vec<Problem>>;
    /// Drop cached tarballs: how many files and bytes went.
    #[zbus(allow_interactive_auth)]
    fn clean(&self, options: &CleanOptions) -> zbus::Result<(u32, u64)>;
    /// Past transactions, newest first.
    fn get_history(&self, limit: u32) -> zbus::Result<Vec<HistoryRow>>;
    fn get_repositories(&self) -> zbus::Result<Vec<RepositoryRow>>;

    #[zbus(signal)]
    fn updates_available(&self, count: u32, names: Vec<String>) -> zbus::Result<()>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn root(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn update_count(&self) -> zbus::Result<u32>;
    /// Unix seconds of the last successful refresh; 0 = never.
    #[zbus(property)]
    fn last_refresh(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn busy(&self) -> zbus::Result<bool>;
    /// The update prepared for the next boot (`prepared_at` 0: none).
    #[zbus(property)]
    fn prepared_update(&self) -> zbus::Result<PreparedRow>;
    /// Read live: spkd announces no change of it.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trusted_keys(&self) -> zbus::Result<Vec<String>>;
}

/// `xyz.smech.Spk1.Transaction` at `/xyz/smech/Spk1/transaction/N` (give the path when
/// building it).
#[proxy(
    interface = "xyz.smech.Spk1.Transaction",
    default_service = "xyz.smech.Spk1",
    gen_blocking = false
)]
pub trait Transaction {
    // The generated signal types (`Progress`, `Notice`, `Finished`, …) take the signals' names:
    // the `Notices` property's rows are `rows::Notice`.

    /// Stop the transaction: downloads at once, installs at the next package boundary.
    fn cancel(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn progress(&self, package: String, stage: Activity, done: u64, total: u64)
    -> zbus::Result<()>;
    #[zbus(signal)]
    fn package_done(&self, name: String, version: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn notice(
        &self,
        package: String,
        kind: NoticeKind,
        path: String,
        message: String,
    ) -> zbus::Result<()>;
    /// A transaction hook started or ended, with the end of what it printed.
    #[zbus(signal)]
    fn hook(
        &self,
        name: String,
        description: String,
        state: HookState,
        output: String,
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn finished(&self, state: State, error_name: String, message: String) -> zbus::Result<()>;

    #[zbus(property)]
    fn kind(&self) -> zbus::Result<Kind>;
    #[zbus(property)]
    fn packages(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<State>;
    /// Never goes down within a transaction.
    #[zbus(property)]
    fn percentage(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn current_package(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn error_name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn error_message(&self) -> zbus::Result<String>;
    /// The uid that started it.
    #[zbus(property)]
    fn requester(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn notices(&self) -> zbus::Result<Vec<rows::Notice>>;
}
