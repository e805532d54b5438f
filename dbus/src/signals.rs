//! A transaction's signals, decoded in one place: for a client that subscribes to every
//! transaction's signals before the call that creates one (so it misses none) and so reads raw
//! messages rather than one proxy's streams.

use zbus::Message;

use crate::proxy::{Finished, Hook, Notice, PackageDone, Progress};
use crate::rows;
use crate::words::{Activity, HookState, State};

/// One signal of `xyz.smech.Spk1.Transaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionSignal {
    /// `Progress(package, stage, done, total)`.
    Progress {
        package: String,
        activity: Activity,
        done: u64,
        total: u64,
    },
    /// `PackageDone(name, version)`.
    PackageDone { name: String, version: String },
    /// `Notice(package, kind, path, message)`.
    Notice(rows::Notice),
    /// `Hook(name, description, state, output)`.
    Hook {
        name: String,
        description: String,
        state: HookState,
        output: String,
    },
    /// `Finished(state, error_name, message)`.
    Finished {
        state: State,
        error_name: String,
        message: String,
    },
}

impl TransactionSignal {
    /// `msg` decoded, when it is one of the transaction signals and its arguments are what
    /// the contract says (the object path is the caller's to check).
    pub fn from_message(msg: &Message) -> Option<TransactionSignal> {
        if let Some(s) = Progress::from_message(msg.clone()) {
            let a = s.args().ok()?;
            return Some(TransactionSignal::Progress {
                package: a.package,
                activity: a.stage,
                done: a.done,
                total: a.total,
            });
        }
        if let Some(s) = PackageDone::from_message(msg.clone()) {
            let a = s.args().ok()?;
            return Some(TransactionSignal::PackageDone {
                name: a.name,
                version: a.version,
            });
        }
        if let Some(s) = Notice::from_message(msg.clone()) {
            let a = s.args().ok()?;
            return Some(TransactionSignal::Notice(rows::Notice {
                package: a.package,
                kind: a.kind,
                path: a.path,
                message: a.message,
            }));
        }
        if let Some(s) = Hook::from_message(msg.clone()) {
            let a = s.args().ok()?;
            return Some(TransactionSignal::Hook {
                name: a.name,
                description: a.description,
                state: a.state,
                output: a.output,
            });
        }
        if let Some(s) = Finished::from_message(msg.clone()) {
            let a = s.args().ok()?;
            return Some(TransactionSignal::Finished {
                state: a.state,
                error_name: a.error_name,
                message: a.message,
            });
        }
        None
    }
}
