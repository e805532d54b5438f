//! What spkd says on the bus, as a stream of [`SpkdEvent`]s.
//!
//! Two match rules cover everything: `NameOwnerChanged` for `xyz.smech.Spk1` (spkd starting,
//! stopping, restarting) and every signal under `/xyz/smech/Spk1` (the Manager's
//! `UpdatesAvailable` and `PropertiesChanged`, each transaction's `PropertiesChanged`,
//! `Progress`, `PackageDone`, `Notice` and `Finished`). A signal counts only when it comes
//! from the connection that owns `xyz.smech.Spk1` at the time: anyone on the system bus may
//! emit a signal with spkd's interface names, only spkd can send from its own name.

use std::collections::HashMap;

use futures_util::StreamExt;
use futures_util::stream::Select;
use spk_dbus::proxy::UpdatesAvailable;
use spk_dbus::{
    Activity, BUS_NAME, MANAGER_INTERFACE, MANAGER_PATH, State, TRANSACTION_INTERFACE,
    TransactionSignal, is_transaction_path,
};
use zbus::fdo::DBusProxy;
use zbus::message::Type as MessageType;
use zbus::names::OwnedUniqueName;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, MatchRule, Message, MessageStream};

use crate::error::Error;

/// One thing spkd (or the bus about spkd) said.
#[derive(Debug)]
pub enum SpkdEvent {
    /// `xyz.smech.Spk1` has a new owner (spkd started) or none (spkd stopped).
    OwnerChanged(Option<OwnedUniqueName>),
    /// `UpdatesAvailable(count, names)`.
    UpdatesAvailable { count: u32, names: Vec<String> },
    /// A Manager property changed (`UpdateCount`, `Busy`, …).
    ManagerChanged { changed: Vec<String> },
    /// Properties of the transaction at `path` changed.
    TransactionChanged {
        path: String,
        changed: HashMap<String, OwnedValue>,
    },
    /// `Progress(package, activity, done, total)` of the transaction at `path`.
    Progress {
        path: String,
        package: String,
        activity: Activity,
        done: u64,
        total: u64,
    },
    /// `PackageDone(name, version)` of the transaction at `path`.
    PackageDone {
        path: String,
        name: String,
        version: String,
    },
    /// `Notice(package, kind, path, message)` of the transaction at `path` (a configuration
    /// file kept, a mount point left alone).
    Notice { path: String, message: String },
    /// `Finished(state, error_name, message)` of the transaction at `path`.
    TransactionFinished {
        path: String,
        state: State,
        message: String,
    },
}

/// The subscription; [`Watch::next`] yields events in bus order.
pub struct Watch {
    stream: Select<MessageStream, MessageStream>,
    owner: Option<OwnedUniqueName>,
}

impl Watch {
    /// Subscribe on `conn`, then learn spkd's current owner (in this order, so no change
    /// between the two is missed).
    pub async fn subscribe(conn: &Connection) -> Result<Watch, Error> {
        let owner_rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")
            .and_then(|b| b.interface("org.freedesktop.DBus"))
            .and_then(|b| b.member("NameOwnerChanged"))
            .and_then(|b| b.add_arg(BUS_NAME))
            .map_err(Error::call("NameOwnerChanged match rule"))?
            .build();
        let spkd_rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .path_namespace(MANAGER_PATH)
            .map_err(Error::call("spkd match rule"))?
            .build();
        let owners = MessageStream::for_match_rule(owner_rule, conn, Some(64))
            .await
            .map_err(Error::call("AddMatch NameOwnerChanged"))?;
        let signals = MessageStream::for_match_rule(spkd_rule, conn, Some(1024))
            .await
            .map_err(Error::call("AddMatch spkd signals"))?;
        let dbus = DBusProxy::new(conn)
            .await
            .map_err(Error::call("org.freedesktop.DBus proxy"))?;
        let owner = match zbus::names::BusName::try_from(BUS_NAME) {
            Ok(name) => dbus.get_name_owner(name).await.ok(),
            Err(_) => None,
        };
        Ok(Watch {
            stream: futures_util::stream::select(owners, signals),
            owner,
        })
    }

    /// The unique name of spkd when the subscription started or last changed.
    pub fn owner(&self) -> Option<&OwnedUniqueName> {
        self.owner.as_ref()
    }

    /// The next event, or `None` when the bus connection is gone.
    pub async fn next(&mut self) -> Option<SpkdEvent> {
        loop {
            let msg = match self.stream.next().await? {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::debug!(error = %e, "unreadable message on the spkd bus");
                    continue;
                }
            };
            if let Some(event) = self.decode(&msg) {
                return Some(event);
            }
        }
    }

    fn decode(&mut self, msg: &Message) -> Option<SpkdEvent> {
        let header = msg.header();
        let sender = header.sender()?.as_str();
        let interface = header.interface()?.as_str();
        let member = header.member()?.as_str();
        let path = header.path()?.as_str();
        if sender == "org.freedesktop.DBus" && member == "NameOwnerChanged" {
            let (name, _old, new): (String, String, String) = msg.body().deserialize().ok()?;
            if name != BUS_NAME {
                return None;
            }
            self.owner = OwnedUniqueName::try_from(new).ok();
            return Some(SpkdEvent::OwnerChanged(self.owner.clone()));
        }
        if self.owner.as_ref().map(|o| o.as_str()) != Some(sender) {
            tracing::debug!(%sender, %member, "ignoring a signal not sent by spkd");
            return None;
        }
        if let Some(signal) = UpdatesAvailable::from_message(msg.clone()) {
            let args = signal.args().ok()?;
            return Some(SpkdEvent::UpdatesAvailable {
                count: args.count,
                names: args.names,
            });
        }
        if (interface, member) == ("org.freedesktop.DBus.Properties", "PropertiesChanged") {
            let (iface, changed, invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().ok()?;
            return if iface == MANAGER_INTERFACE && path == MANAGER_PATH {
                let mut names: Vec<String> = changed.into_keys().collect();
                names.extend(invalidated);
                Some(SpkdEvent::ManagerChanged { changed: names })
            } else if iface == TRANSACTION_INTERFACE && is_transaction_path(path) {
                Some(SpkdEvent::TransactionChanged {
                    path: path.to_owned(),
                    changed,
                })
            } else {
                None
            };
        }
        if !is_transaction_path(path) {
            return None;
        }
        let path = path.to_owned();
        match TransactionSignal::from_message(msg)? {
            TransactionSignal::PackageDone { name, version } => Some(SpkdEvent::PackageDone {
                path,
                name,
                version,
            }),
            TransactionSignal::Notice(n) => Some(SpkdEvent::Notice {
                path,
                message: n.message,
            }),
            TransactionSignal::Finished { state, message, .. } => {
                Some(SpkdEvent::TransactionFinished {
                    path,
                    state,
                    message,
                })
            }
            TransactionSignal::Progress {
                package,
                activity,
                done,
                total,
            } => Some(SpkdEvent::Progress {
                path,
                package,
                activity,
                done,
                total,
            }),
            TransactionSignal::Hook { .. } => None,
        }
    }
}
