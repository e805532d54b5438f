//! A plain zbus client of spkd, seeing what any D-Bus client would see.
//!
//! [`Client`] calls the Manager methods and reads properties by name, and hands the tests what
//! arrived as plain values (JSON, strings, tuples), so that the tests check the wire itself,
//! not `spk_dbus`'s reading of it. On the way, every row, notice and transaction signal is also
//! decoded with `spk_dbus`'s types (the ones spkctl and spk-notifier use), and a test fails if
//! spkd sends anything they cannot read. [`TransactionWatch`] subscribes to transaction
//! signals and property changes *before* a method is called, then collects the events of one
//! transaction until its `Finished` signal.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::Select;
use serde_json::{Value as Json, json};
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::{Connection, MatchRule, Message, MessageStream};

pub use spk_dbus::{
    BUS_NAME, MANAGER_INTERFACE as MANAGER, MANAGER_PATH, TRANSACTION_INTERFACE as TRANSACTION,
    TRANSACTIONS_PATH as TRANSACTION_PREFIX,
};
use spk_dbus::{PackageRow, TransactionSignal};

/// How long a test waits for one transaction to finish.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(90);

/// Options dictionary (`a{sv}`) of Manager methods.
pub type Options<'a> = HashMap<&'a str, Value<'a>>;

/// A connection to the test bus talking to spkd.
pub struct Client {
    pub conn: Connection,
}

impl Client {
    pub async fn connect(address: &str) -> Client {
        let conn = zbus::connection::Builder::address(address)
            .expect("bus address")
            .build()
            .await
            .expect("connect to bus");
        Client { conn }
    }

    /// Call `iface.method` on `path` of spkd.
    pub async fn call<B>(
        &self,
        path: &str,
        iface: &str,
        method: &str,
        body: &B,
    ) -> zbus::Result<Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(BUS_NAME), path, Some(iface), method, body)
            .await
    }

    /// `Install(names, options)`; the returned error is the call's own D-Bus error.
    pub async fn install(
        &self,
        names: &[&str],
        options: Options<'_>,
    ) -> zbus::Result<OwnedObjectPath> {
        self.transaction_call("Install", names, options).await
    }

    pub async fn upgrade(
        &self,
        names: &[&str],
        options: Options<'_>,
    ) -> zbus::Result<OwnedObjectPath> {
        self.transaction_call("Upgrade", names, options).await
    }

    pub async fn remove(
        &self,
        names: &[&str],
        options: Options<'_>,
    ) -> zbus::Result<OwnedObjectPath> {
        self.transaction_call("Remove", names, options).await
    }

    async fn transaction_call(
        &self,
        method: &str,
        names: &[&str],
        options: Options<'_>,
    ) -> zbus::Result<OwnedObjectPath> {
        let reply = self
            .call(MANAGER_PATH, MANAGER, method, &(names, options))
            .await?;
        reply.body().deserialize::<OwnedObjectPath>()
    }

    /// `ListPackages()` as JSON objects (for readable assertions and failure messages).
    pub async fn list_packages(&self) -> Vec<Json> {
        let reply = self
            .call(MANAGER_PATH, MANAGER, "ListPackages", &())
            .await
            .expect("ListPackages");
        let rows: Vec<HashMap<String, OwnedValue>> = reply
            .body()
            .deserialize()
            .expect("ListPackages returns aa{sv}");
        reply
            .body()
            .deserialize::<Vec<PackageRow>>()
            .unwrap_or_else(|e| panic!("spk_dbus::PackageRow cannot read ListPackages: {e}"));
        rows.iter()
            .map(|row| Json::Object(row.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()))
            .collect()
    }

    /// `GetTransactions()`.
    pub async fn transactions(&self) -> Vec<OwnedObjectPath> {
        let reply = self
            .call(MANAGER_PATH, MANAGER, "GetTransactions", &())
            .await
            .expect("GetTransactions");
        reply
            .body()
            .deserialize()
            .expect("GetTransactions returns ao")
    }

    /// Read property `iface.name` of `path`.
    pub async fn property(&self, path: &str, iface: &str, name: &str) -> OwnedValue {
        let reply = self
            .call(
                path,
                "org.freedesktop.DBus.Properties",
                "Get",
                &(iface, name),
            )
            .await
            .unwrap_or_else(|e| panic!("Get {iface}.{name} on {path}: {e}"));
        reply.body().deserialize().expect("Get returns v")
    }

    /// Read property `iface.name` of `path` as JSON.
    pub async fn property_json(&self, path: &str, iface: &str, name: &str) -> Json {
        let value = self.property(path, iface, name).await;
        to_json(&value)
    }

    /// All properties of `iface` on `path` as a JSON object.
    pub async fn properties(&self, path: &str, iface: &str) -> Json {
        let reply = self
            .call(path, "org.freedesktop.DBus.Properties", "GetAll", &(iface,))
            .await
            .unwrap_or_else(|e| panic!("GetAll {iface} on {path}: {e}"));
        let all: HashMap<String, OwnedValue> = reply.body().deserialize().expect("a{sv}");
        Json::Object(all.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
    }

    /// The introspection XML of `path`.
    pub async fn introspect(&self, path: &str) -> String {
        let reply = self
            .call(
                path,
                "org.freedesktop.DBus.Introspectable",
                "Introspect",
                &(),
            )
            .await
            .unwrap_or_else(|e| panic!("Introspect {path}: {e}"));
        reply.body().deserialize().expect("Introspect returns s")
    }

    /// The `Notices` property (`a(ssss)`) of transaction `path`.
    pub async fn notices(&self, path: &str) -> Vec<Notice> {
        let reply = self
            .call(
                path,
                "org.freedesktop.DBus.Properties",
                "Get",
                &(TRANSACTION, "Notices"),
            )
            .await
            .unwrap_or_else(|e| panic!("Get {TRANSACTION}.Notices on {path}: {e}"));
        let value: OwnedValue = reply.body().deserialize().expect("Get returns v");
        <Vec<spk_dbus::Notice>>::try_from(value.try_clone().expect("clone"))
            .unwrap_or_else(|e| panic!("spk_dbus::Notice cannot read Notices: {e}"));
        let rows: Vec<(String, String, String, String)> = value
            .try_into()
            .unwrap_or_else(|e| panic!("Notices is not a(ssss): {e}"));
        rows.into_iter()
            .map(|(package, kind, path, message)| Notice {
                package,
                kind,
                path,
                message,
            })
            .collect()
    }

    /// `Verify(names)`: `(package, path, kind, detail)` for every problem found.
    pub async fn verify(&self, names: &[&str]) -> Vec<(String, String, String, String)> {
        let reply = self
            .call(MANAGER_PATH, MANAGER, "Verify", &(names,))
            .await
            .expect("Verify");
        reply
            .body()
            .deserialize::<Vec<spk_dbus::Problem>>()
            .unwrap_or_else(|e| panic!("spk_dbus::Problem cannot read Verify: {e}"));
        reply.body().deserialize().expect("Verify returns a(ssss)")
    }

    /// `Clean({"all": all})`: how many cached files were removed, and their bytes.
    pub async fn clean(&self, all: bool) -> (u32, u64) {
        let options: Options<'_> = HashMap::from([("all", Value::from(all))]);
        let reply = self
            .call(MANAGER_PATH, MANAGER, "Clean", &(options,))
            .await
            .expect("Clean");
        reply.body().deserialize().expect("Clean returns (ut)")
    }

    /// Subscribe to every transaction's signals and property changes. Do this before the
    /// method call that creates the transaction, so no event can be missed.
    pub async fn watch(&self) -> TransactionWatch {
        let signals = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface(TRANSACTION)
            .expect("interface")
            .build();
        let changes = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .expect("interface")
            .member("PropertiesChanged")
            .expect("member")
            .path_namespace(TRANSACTION_PREFIX)
            .expect("path namespace")
            .build();
        let signals = MessageStream::for_match_rule(signals, &self.conn, Some(4096))
            .await
            .expect("subscribe to transaction signals");
        let changes = MessageStream::for_match_rule(changes, &self.conn, Some(4096))
            .await
            .expect("subscribe to transaction property changes");
        TransactionWatch {
            stream: futures_util::stream::select(signals, changes),
            pending: VecDeque::new(),
        }
    }
}

/// A `Progress(package, stage, done, total)` signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub package: String,
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

/// A `Notice(package, kind, path, message)` signal, or a row of the `Notices` property: a
/// file kept beside its new version (`spknew`), saved on removal (`spksave`), or a mount point
/// not replaced (`mount-point`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub package: String,
    pub kind: String,
    pub path: String,
    pub message: String,
}

impl Notice {
    pub fn new(package: &str, kind: &str, path: &str, message: &str) -> Notice {
        Notice {
            package: package.to_string(),
            kind: kind.to_string(),
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// Everything one transaction reported, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct TransactionLog {
    pub progress: Vec<Progress>,
    pub package_done: Vec<(String, String)>,
    /// `Notice` signals.
    pub notices: Vec<Notice>,
    /// `Finished(state, error_name, message)`.
    pub finished: (String, String, String),
    /// `Percentage` values from PropertiesChanged.
    pub percentages: Vec<u32>,
    /// `State` values from PropertiesChanged.
    pub states: Vec<String>,
}

/// A subscription to transaction events.
pub struct TransactionWatch {
    stream: Select<MessageStream, MessageStream>,
    /// Messages of other transactions, kept for a later `until_finished`.
    pending: VecDeque<Message>,
}

impl TransactionWatch {
    /// Collect the events of transaction `path` until its `Finished` signal; panics after
    /// `timeout`, showing what arrived so far.
    pub async fn until_finished(&mut self, path: &str, timeout: Duration) -> TransactionLog {
        let mut log = TransactionLog::default();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut earlier: VecDeque<Message> = std::mem::take(&mut self.pending);
        loop {
            let msg = if let Some(msg) = earlier.pop_front() {
                msg
            } else {
                let next = tokio::time::timeout_at(deadline, self.stream.next()).await;
                match next {
                    Err(_) => panic!(
                        "no Finished signal from {path} within {timeout:?}; so far: {log:#?}"
                    ),
                    Ok(None) => {
                        panic!("signal stream ended before Finished from {path}; so far: {log:#?}")
                    }
                    Ok(Some(Err(e))) => panic!("signal stream error: {e}"),
                    Ok(Some(Ok(msg))) => msg,
                }
            };
            let header = msg.header();
            if header.path().map(|p| p.as_str()) != Some(path) {
                self.pending.push_back(msg.clone());
                continue;
            }
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let body = msg.body();
            if member != "PropertiesChanged" && TransactionSignal::from_message(&msg).is_none() {
                panic!("spk_dbus::TransactionSignal cannot read {member} from {path}: {msg:?}");
            }
            match member.as_str() {
                "Progress" => {
                    let (package, stage, done, total): (String, String, u64, u64) =
                        body.deserialize().expect("Progress(s s t t)");
                    log.progress.push(Progress {
                        package,
                        stage,
                        done,
                        total,
                    });
                }
                "Notice" => {
                    let (package, kind, path, message): (String, String, String, String) =
                        body.deserialize().expect("Notice(s s s s)");
                    log.notices.push(Notice {
                        package,
                        kind,
                        path,
                        message,
                    });
                }
                "PackageDone" => {
                    let done: (String, String) = body.deserialize().expect("PackageDone(s s)");
                    log.package_done.push(done);
                }
                "Finished" => {
                    log.finished = body.deserialize().expect("Finished(s s s)");
                    // Keep what was buffered but not yet looked at, in order.
                    self.pending.extend(earlier);
                    return log;
                }
                "PropertiesChanged" => {
                    let (iface, changed, _invalidated): (
                        String,
                        HashMap<String, OwnedValue>,
                        Vec<String>,
                    ) = body.deserialize().expect("PropertiesChanged(s a{sv} as)");
                    if iface != TRANSACTION {
                        continue;
                    }
                    for (name, value) in changed {
                        match name.as_str() {
                            "Percentage" => log
                                .percentages
                                .push(u32::try_from(value).expect("Percentage is u")),
                            "State" => {
                                spk_dbus::State::try_from(&*value).unwrap_or_else(|e| {
                                    panic!("spk_dbus::State cannot read {value:?}: {e}")
                                });
                                log.states
                                    .push(String::try_from(value).expect("State is s"))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A D-Bus value as JSON (numbers, strings, booleans, arrays, dicts; others as their text).
pub fn to_json(value: &Value<'_>) -> Json {
    match value {
        Value::U8(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::I16(v) => json!(v),
        Value::U16(v) => json!(v),
        Value::I32(v) => json!(v),
        Value::U32(v) => json!(v),
        Value::I64(v) => json!(v),
        Value::U64(v) => json!(v),
        Value::F64(v) => json!(v),
        Value::Str(v) => json!(v.as_str()),
        Value::ObjectPath(v) => json!(v.as_str()),
        Value::Signature(v) => json!(v.to_string()),
        Value::Value(v) => to_json(v),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Structure(s) => Json::Array(s.fields().iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}
