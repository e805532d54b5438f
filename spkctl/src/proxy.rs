//! Client proxies of spkd's D-Bus API (dbus/xyz.smech.Spk1.xml).

use std::collections::HashMap;

use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

pub const TRANSACTION_IFACE: &str = "xyz.smech.Spk1.Transaction";

#[proxy(
    interface = "xyz.smech.Spk1.Manager",
    default_service = "xyz.smech.Spk1",
    default_path = "/xyz/smech/Spk1"
)]
pub trait Manager {
    fn refresh(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedObjectPath>;
    fn install(
        &self,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn upgrade(
        &self,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn remove(
        &self,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn rollback(
        &self,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn hold(&self, names: &[&str]) -> zbus::Result<()>;
    fn unhold(&self, names: &[&str]) -> zbus::Result<()>;
    fn list_packages(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    fn get_transactions(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        kind: &str,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<Vec<(String, String, String, String, u64, u64)>>;
    #[allow(clippy::type_complexity)]
    fn verify(&self, names: &[&str]) -> zbus::Result<Vec<(String, String, String, String)>>;
    fn clean(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<(u32, u64)>;
    fn get_history(&self, limit: u32) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    fn get_repositories(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn root(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn update_count(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn last_refresh(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn busy(&self) -> zbus::Result<bool>;
    /// Read live: spkd announces no change of it.
    #[zbus(property(emits_changed_signal = "false"))]
    fn trusted_keys(&self) -> zbus::Result<Vec<String>>;
}

#[proxy(
    interface = "xyz.smech.Spk1.Transaction",
    default_service = "xyz.smech.Spk1"
)]
pub trait Transaction {
    fn cancel(&self) -> zbus::Result<()>;

    #[zbus(property)]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn packages(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn percentage(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn error_name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn error_message(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn current_package(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn requester(&self) -> zbus::Result<u32>;
    #[allow(clippy::type_complexity)]
    #[zbus(property)]
    fn notices(&self) -> zbus::Result<Vec<(String, String, String, String)>>;
}
