//! spk's engine: package sources, verified streaming downloads, safe unpacking into staging,
//! atomic commits into a target root, and the package database. It knows nothing of D-Bus or
//! terminals; `spkd`'s bus layer is a thin adapter over [`Engine`].

pub mod builds;
pub mod cache;
mod caching;
pub mod catalog;
pub mod change;
pub mod commit;
mod commit_staged;
pub mod config;
pub mod db;
pub mod engine;
pub mod entry_path;
pub mod error;
pub mod failpoint;
pub mod fcaps;
pub mod fetch;
mod fetch_all;
pub mod fetch_unpack;
mod holds;
mod hook_runner;
pub mod hooks;
pub mod index;
pub mod integrity;
pub mod layout;
pub mod live;
pub mod manifest;
pub mod mounts;
pub mod notice;
pub mod offline;
pub mod ownership;
mod planning;
pub mod progress;
pub mod proxy;
mod query;
mod recovery;
mod refresh;
pub mod request;
pub mod signature;
pub mod source;
pub mod sysusers;
mod transact;
pub mod unpack;
pub mod verify;
pub mod writeback;

pub use change::Change;
pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
pub use progress::{Event, HookState, Reporter, Stage, TxState};
pub use request::{Action, Options, Outcome, PackageInfo, PackageState, RepoInfo, Request};
