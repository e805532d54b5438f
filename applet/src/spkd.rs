//! The notifier's client of spkd on the system bus: the few reads and calls it makes, through
//! `spk_dbus`'s proxy (whose modifying calls let polkit ask the desktop's authentication agent
//! for the user's rights, and wait as long as the user takes to type a password).

use std::collections::HashMap;

use spk_dbus::{
    BUS_NAME, ChangeOptions, HistoryRow, Kind, ManagerProxy, PackageState, PreparedRow, State,
    TRANSACTION_INTERFACE, TransactionProxy,
};
use zbus::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::error::Error;
use crate::model::{Job, Update};
use crate::offline::InstallWhen;

/// How much history the notifier reads for the result of a boot's update.
const HISTORY_LOOKED_AT: u32 = 10;

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
            .into_iter()
            .filter(|row| row.state == PackageState::Upgradable && !row.held)
            .map(|row| Update {
                name: row.name,
                installed_version: row.installed_version,
                available_version: row.available_version,
                system: row.kind == "system",
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
        let iface = zbus::names::InterfaceName::from_static_str_unchecked(TRANSACTION_INTERFACE);
        let all = props
            .get_all(iface)
            .await
            .map_err(|e| Error::call("Transaction.GetAll")(e.into()))?;
        let word = |name: &str| all.get(name).map(|v| &**v);
        let (Some(kind), Some(state)) = (
            word("Kind").and_then(|v| Kind::try_from(v).ok()),
            word("State").and_then(|v| State::try_from(v).ok()),
        ) else {
            return Err(Error::call("Transaction.GetAll")(zbus::Error::Variant(
                zbus::zvariant::Error::IncorrectType,
            )));
        };
        let mut job = Job::new(path, kind, state);
        apply_properties(&mut job, &all);
        Ok(job)
    }

    /// `Upgrade([], {})`: every installed package with an update, now or (option `offline`)
    /// prepared now and installed at the next boot.
    pub async fn upgrade_all(&self, when: InstallWhen) -> Result<OwnedObjectPath, Error> {
        let options = ChangeOptions {
            offline: when == InstallWhen::AtRestart,
            ..ChangeOptions::default()
        };
        self.manager
            .upgrade(&[], &options)
            .await
            .map_err(Error::call("Upgrade"))
    }

    /// `PreparedUpdate`: the update prepared for the next boot (`prepared_at` 0: none).
    pub async fn prepared(&self) -> Result<PreparedRow, Error> {
        self.manager
            .prepared_update()
            .await
            .map_err(Error::call("PreparedUpdate"))
    }

    /// `CancelPreparedUpdate()`: whether there was one to discard.
    pub async fn cancel_prepared(&self) -> Result<bool, Error> {
        self.manager
            .cancel_prepared_update()
            .await
            .map_err(Error::call("CancelPreparedUpdate"))
    }

    /// The latest entries of `GetHistory`, newest first.
    pub async fn recent_history(&self) -> Result<Vec<HistoryRow>, Error> {
        self.manager
            .get_history(HISTORY_LOOKED_AT)
            .await
            .map_err(Error::call("GetHistory"))
    }

    /// `Cancel()` on the transaction at `path` (spkd lets its requester or root cancel it).
    pub async fn cancel(&self, path: &str) -> Result<(), Error> {
        let transaction = TransactionProxy::builder(&self.conn)
            .path(path.to_owned())
            .map_err(Error::call("Transaction proxy"))?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(Error::call("Transaction proxy"))?;
        transaction.cancel().await.map_err(Error::call("Cancel"))
    }

    /// `Refresh({})`.
    pub async fn refresh(&self) -> Result<OwnedObjectPath, Error> {
        self.manager
            .refresh(&ChangeOptions::default())
            .await
            .map_err(Error::call("Refresh"))
    }
}

/// Copy the transaction properties present in `props` onto `job`.
pub fn apply_properties(job: &mut Job, props: &HashMap<String, OwnedValue>) {
    for (key, value) in props {
        match key.as_str() {
            "Kind" => job.kind = Kind::try_from(&**value).unwrap_or(job.kind),
            "State" => job.state = State::try_from(&**value).unwrap_or(job.state),
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

fn string(value: &OwnedValue) -> String {
    value
        .downcast_ref::<&str>()
        .map(str::to_owned)
        .unwrap_or_default()
}
