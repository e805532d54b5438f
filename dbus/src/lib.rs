//! spkd's D-Bus contract in code, beside its other forms in this folder (the introspection
//! XML `xyz.smech.Spk1.xml`, the bus policy, the activation file and the polkit actions): the
//! bus name, object paths and interface names ([`names`]), the error names ([`Error`]), the
//! words of states, kinds and notices ([`words`]), the typed rows of the `a{sv}` and struct
//! results ([`rows`]), the method options ([`options`]), one client proxy per interface
//! ([`ManagerProxy`], [`TransactionProxy`]) and the transaction signals decoded
//! ([`TransactionSignal`]).
//!
//! spkd's `#[interface]` implementations use these types, and spkctl, spk-notifier and the
//! tests talk to spkd through them. The XML stays the authority: a test compares the running
//! daemon's introspection with it, and `tests/proxies.rs` checks the proxies against it.

pub mod error;
pub mod names;
pub mod options;
pub mod proxy;
pub mod rows;
pub mod signals;
pub mod words;

pub use error::Error;
pub use names::{
    BUS_NAME, ERROR_PREFIX, MANAGER_INTERFACE, MANAGER_PATH, TRANSACTION_INTERFACE,
    TRANSACTIONS_PATH, is_transaction_path, transaction_id, transaction_path,
};
pub use options::{ChangeOptions, CleanOptions};
pub use proxy::{ManagerProxy, TransactionProxy};
pub use rows::{
    HistoryChange, HistoryRow, Notice, PackageRow, PlannedChange, PreparedRow, Problem,
    RepositoryRow,
};
pub use signals::TransactionSignal;
pub use words::{
    Activity, ChangeAction, HookState, Kind, NoticeKind, PackageState, ProblemKind, State,
    UnknownWord,
};

/// The introspection XML of the API, as installed in `dbus-1/interfaces/`.
pub const INTROSPECTION_XML: &str = include_str!("../xyz.smech.Spk1.xml");
