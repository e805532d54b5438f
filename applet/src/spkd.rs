//! The notifier's client of spkd on the system bus: proxies of `dbus/xyz.smech.Spk1.xml` and
//! the few reads and calls the notifier makes.
//!
//! Calls that change the system (`Refresh`, `Upgrade`) carry the
//! ALLOW_INTERACTIVE_AUTHORIZATION flag, so polkit may ask the desktop's authentication agent
//! for the user's rights instead of refusing at once. They have no reply timeout: the user may
//! take a while to type a password (zbus sets no method timeout unless asked to).

use std::collections::HashMap;

use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, proxy};

use crate::error::Error;
use crate::model::{Job, Update};

/// spkd's well-known name.
pub const BUS_NAME: &str = "xyz.smech.Spk1";
pub const MANAGER_PATH: &str = "/xyz/smech/Spk1";
pub const MANAGER_IFACE: &str = "xyz.smech.Spk1.Manager";
pub const TRANSACTION_IFACE: &str = "xyz.smech.Spk1.Transaction";
/// Parent of every transaction object.
pub const TRANSACTION_PREFIX: &str = "/xyz/smech/Spk1/transaction/";

#[proxy(
    interface = "xyz.smech.Spk1.Manager",
    default_service = "xyz.smech.Spk1",
    default_path = "/xyz/smech/Spk1"
)]
pub trait Manager {
    #[zbus(allow_interactive_auth)]
    fn refresh(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedObjectPath>;
    #[zbus(allow_interactive_auth)]
    fn upgrade(
        &self,
        names: &[&str],
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_packages(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    fn get_transactions(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    #[zbus(property)]
    fn update_count(&self) -> zbus::Result<u32>;
}

/// Connect to the bus spkd lives on: `address`, or the system bus.
pub async fn connect(address: Option<&str>) -> Result<Connection, Error> {
    let (builder, bus) = match address {
        Some(address) => (
            zbus::connection::Builder::address(address).map_err(|source| Error::BusAddress {
                address: address.to_owned(),
                source: Box::new(source),
            })?,
            "spkd",
        ),
        None => (
            zbus::connection::Builder::system().map_err(Error::connect("system"))?,
            "system",
        ),
    };
    builder.build().await.map_err(Error::connect(bus))
}

/// spkd as seen from one bus connection.
#[derive(Clone)]
pub struct Spkd {
    conn: Connection,
    manager: ManagerProxy<'static>,
}

impl Spkd {
    pub async fn new(conn: &Connection) -> Result<Spkd, Error> {
        let manager = ManagerProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(Error::call("Manager proxy"))?;
        Ok(Spkd {
            conn: conn.clone(),
            manager,
        })
    }

    /// `UpdateCount` and the `upgradable` rows of `ListPackages` (held packages left out, as
    /// spkd leaves them out of its count).
    pub async fn updates(&self) -> Result<(u32, Vec<Update>), Error> {
        let count = self
            .manager
            .update_count()
            .await
            .map_err(Error::call("UpdateCount"))?;
        let rows = self
            .manager
            .list_packages()
            .await
            .map_err(Error::call("ListPackages"))?;
        let updates = rows
            .iter()
            .filter(|row| text(row, "state") == "upgradable")
            .filter(|row| !matches!(row.get("held").map(|v| &**v), Some(Value::Bool(true))))
            .map(|row| Update {
                name: text(row, "name"),
                installed_version: text(row, "installed-version"),
                available_version: text(row, "available-version"),
            })
            .collect();
        Ok((count, updates))
    }

    /// Every transaction spkd still has (running, queued, or recently ended).
    pub async fn transactions(&self) -> Result<Vec<Job>, Error> {
        let paths = self
            .manager
            .get_transactions()
            .await
            .map_err(Error::call("GetTransactions"))?;
        let mut jobs = Vec::with_capacity(paths.len());
        for path in paths {
            match self.transaction(path.as_str()).await {
                Ok(job) => jobs.push(job),
                // It may have left the bus between the two calls.
                Err(e) => tracing::debug!(%path, error = %e, "transaction vanished"),
            }
        }
        Ok(jobs)
    }

    /// All properties of the transaction at `path`.
    pub async fn transaction(&self, path: &str) -> Result<Job, Error> {
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination(BUS_NAME)
            .and_then(|b| b.path(path.to_owned()))
            .map_err(Error::call("Properties proxy"))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(Error::call("Properties proxy"))?;
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(TRANSACTION_IFACE);
        let all = props
            .get_all(iface)
            .await
            .map_err(|e| Error::call("Transaction.GetAll")(e.into()))?;
        let mut job = Job {
            path: path.to_owned(),
            kind: String::new(),
            packages: Vec::new(),
            state: String::new(),
            percentage: 0,
            current_package: String::new(),
            error_message: String::new(),
            done: Vec::new(),
            notices: Vec::new(),
        };
        apply_properties(&mut job, &all);
        Ok(job)
    }

    /// `Upgrade([], {})`: every installed package with an update.
    pub async fn upgrade_all(&self) -> Result<OwnedObjectPath, Error> {
        self.manager
            .upgrade(&[], HashMap::new())
            .await
            .map_err(Error::call("Upgrade"))
    }

    /// `Refresh({})`.
    pub async fn refresh(&self) -> Result<OwnedObjectPath, Error> {
        self.manager
            .refresh(HashMap::new())
            .await
            .map_err(Error::call("Refresh"))
    }
}

/// Copy the transaction properties present in `props` onto `job`.
pub fn apply_properties(job: &mut Job, props: &HashMap<String, OwnedValue>) {
    for (key, value) in props {
        match key.as_str() {
            "Kind" => job.kind = string(value),
            "State" => job.state = string(value),
            "CurrentPackage" => job.current_package = string(value),
            "ErrorMessage" => job.error_message = string(value),
            "Percentage" => job.percentage = value.downcast_ref::<u32>().unwrap_or(job.percentage),
            "Packages" => {
                if let Ok(names) = <Vec<String>>::try_from(value.clone()) {
                    job.packages = names;
                }
            }
            _ => {}
        }
    }
}

/// The string at `key` of a `ListPackages` row ("" when absent or not a string).
fn text(row: &HashMap<String, OwnedValue>, key: &str) -> String {
    row.get(key).map(string).unwrap_or_default()
}

fn string(value: &OwnedValue) -> String {
    value
        .downcast_ref::<&str>()
        .map(str::to_owned)
        .unwrap_or_default()
}
