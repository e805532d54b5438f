//! Where spkd is on the bus: its well-known name, its object paths and its interface names.
//! The `#[proxy]` and `#[interface]` attributes need these as literals; tests check that each
//! literal equals the constant here.

use zbus::zvariant::OwnedObjectPath;

/// The well-known name spkd owns on the system bus.
pub const BUS_NAME: &str = "xyz.smech.Spk1";
/// The Manager object.
pub const MANAGER_PATH: &str = "/xyz/smech/Spk1";
pub const MANAGER_INTERFACE: &str = "xyz.smech.Spk1.Manager";
pub const TRANSACTION_INTERFACE: &str = "xyz.smech.Spk1.Transaction";
/// Parent of every transaction object, `/xyz/smech/Spk1/transaction/N` (a path namespace for
/// match rules).
pub const TRANSACTIONS_PATH: &str = "/xyz/smech/Spk1/transaction";
/// Every spk error is named `xyz.smech.Spk1.Error.<Name>` (see [`crate::Error`]).
pub const ERROR_PREFIX: &str = "xyz.smech.Spk1.Error";

/// The polkit actions of `xyz.smech.spk.policy` that spkd asks about.
pub mod polkit {
    pub const REFRESH: &str = "xyz.smech.spk.refresh";
    pub const INSTALL: &str = "xyz.smech.spk.install";
    /// Upgrade, roll back, hold and unhold.
    pub const UPGRADE: &str = "xyz.smech.spk.upgrade";
    pub const REMOVE: &str = "xyz.smech.spk.remove";
    pub const CLEAN: &str = "xyz.smech.spk.clean";
    /// Taking over files of other packages or of none (options `force`, `adopt`).
    pub const FORCE: &str = "xyz.smech.spk.force";
}

/// The object path of transaction number `id`.
pub fn transaction_path(id: u64) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{TRANSACTIONS_PATH}/{id}"))
        .expect("a path and a number make a valid object path")
}

/// The number N of the transaction path `/xyz/smech/Spk1/transaction/N`: also the id of its
/// history entry (`GetHistory`), which spkd records under the same number.
pub fn transaction_id(path: &str) -> Option<u64> {
    path.strip_prefix(TRANSACTIONS_PATH)?
        .strip_prefix('/')?
        .parse()
        .ok()
}

/// Whether `path` lies below [`TRANSACTIONS_PATH`] (a transaction object's path).
pub fn is_transaction_path(path: &str) -> bool {
    path.strip_prefix(TRANSACTIONS_PATH)
        .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_path_and_its_number_go_both_ways() {
        assert_eq!(
            transaction_path(17).as_str(),
            "/xyz/smech/Spk1/transaction/17"
        );
        assert_eq!(transaction_id("/xyz/smech/Spk1/transaction/17"), Some(17));
        assert_eq!(transaction_id("/xyz/smech/Spk1/transaction/x"), None);
        assert_eq!(transaction_id("/xyz/smech/Spk1/transaction17"), None);
        assert_eq!(transaction_id("/t/17"), None);
    }
}
