//! The proxies against the contract: every method, property and signal of
//! `xyz.smech.Spk1.xml` is used through `ManagerProxy` and `TransactionProxy` against a peer
//! that knows nothing but the XML. The peer checks the argument types of each call against
//! the XML and answers with values of the XML's types; a proxy whose Rust types disagree with
//! the XML fails to decode them. At the end, what was exercised must be the whole XML.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use zbus::message::Type as MessageType;
use zbus::zvariant::{Array, Dict, Signature, StructureBuilder, Value};
use zbus::{Connection, Message, MessageStream};

use spk_dbus::{
    ChangeOptions, CleanOptions, INTROSPECTION_XML, Kind, MANAGER_INTERFACE, MANAGER_PATH,
    ManagerProxy, TRANSACTION_INTERFACE, TransactionProxy, TransactionSignal,
};

/// One member of an interface, as the XML declares it.
#[derive(Debug, Clone)]
enum Member {
    Method { ins: String, outs: Vec<String> },
    Signal { args: Vec<(String, String)> },
    Property { ty: String },
}

/// `(interface, member name)` → member, for the two interfaces of spk.
fn contract() -> BTreeMap<(String, String), Member> {
    let doc = roxmltree::Document::parse_with_options(
        INTROSPECTION_XML,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("xyz.smech.Spk1.xml parses");
    let mut out = BTreeMap::new();
    for iface in doc.descendants().filter(|n| n.has_tag_name("interface")) {
        let iname = iface.attribute("name").unwrap().to_owned();
        for m in iface.children().filter(|n| n.is_element()) {
            let name = m.attribute("name").unwrap_or_default().to_owned();
            let args = |dir: Option<&str>| -> Vec<(String, String)> {
                m.children()
                    .filter(|a| a.has_tag_name("arg"))
                    .filter(|a| dir.is_none_or(|d| a.attribute("direction").unwrap_or("in") == d))
                    .map(|a| {
                        (
                            a.attribute("name").unwrap_or_default().to_owned(),
                            a.attribute("type").unwrap().to_owned(),
                        )
                    })
                    .collect()
            };
            let member = match m.tag_name().name() {
                "method" => Member::Method {
                    ins: args(Some("in")).into_iter().map(|(_, t)| t).collect(),
                    outs: args(Some("out")).into_iter().map(|(_, t)| t).collect(),
                },
                "signal" => Member::Signal { args: args(None) },
                "property" => Member::Property {
                    ty: m.attribute("type").unwrap().to_owned(),
                },
                _ => continue,
            };
            out.insert((iname.clone(), name), member);
        }
    }
    out
}

/// A string the proxies can decode for `name` (a property or argument whose values are words
/// of `spk_dbus::words`); any other string is empty.
fn word_for(name: &str) -> &'static str {
    match name {
        "State" | "state" => "finished",
        "Kind" => "install",
        "stage" => "downloading",
        "kind" => "spknew",
        "Hook.state" => "succeeded",
        _ => "",
    }
}

/// A value of type `sig` (arrays and dicts empty).
fn sample(sig: &Signature, name: &str) -> Value<'static> {
    match sig {
        Signature::U8 => Value::U8(0),
        Signature::Bool => Value::Bool(false),
        Signature::I16 => Value::I16(0),
        Signature::U16 => Value::U16(0),
        Signature::I32 => Value::I32(0),
        Signature::U32 => Value::U32(0),
        Signature::I64 => Value::I64(0),
        Signature::U64 => Value::U64(0),
        Signature::F64 => Value::F64(0.0),
        Signature::Str => Value::from(word_for(name)),
        Signature::ObjectPath => Value::ObjectPath("/".try_into().unwrap()),
        Signature::Variant => Value::new(Value::U8(0)),
        Signature::Array(child) => Value::Array(Array::new(child.signature())),
        // PreparedUpdate's dict: spkd sends every key of it (none prepared: prepared-at 0).
        Signature::Dict { key, value } if name == "PreparedUpdate" => {
            let mut d = Dict::new(key.signature(), value.signature());
            let changes = Value::Array(Array::new(&parse("(sss)")));
            for (k, v) in [
                ("prepared-at", Value::U64(0)),
                ("changes", changes),
                ("installed-size", Value::U64(0)),
                ("stale", Value::from("")),
            ] {
                d.append(Value::from(k), Value::new(v)).unwrap();
            }
            Value::Dict(d)
        }
        Signature::Dict { key, value } => {
            Value::Dict(Dict::new(key.signature(), value.signature()))
        }
        Signature::Structure(fields) => {
            let mut s = StructureBuilder::new();
            for f in fields.iter() {
                s = s.append_field(sample(f, name));
            }
            Value::Structure(s.build().unwrap())
        }
        other => panic!("no sample for {other}"),
    }
}

fn parse(sig: &str) -> Signature {
    Signature::try_from(sig).unwrap_or_else(|e| panic!("{sig}: {e}"))
}

/// The peer: answers every call as the XML says, and records what it was asked.
async fn serve(conn: Connection, contract: BTreeMap<(String, String), Member>, seen: Seen) {
    let mut calls = MessageStream::from(&conn);
    while let Some(Ok(msg)) = calls.next().await {
        if msg.message_type() != MessageType::MethodCall {
            continue;
        }
        let header = msg.header();
        let iface = header
            .interface()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let sent = msg.body().signature().to_string_no_parens();
        let reply = Message::method_return(&header).unwrap();
        let reply = if iface == "org.freedesktop.DBus.Properties" && member == "Get" {
            let (piface, prop): (String, String) = msg.body().deserialize().unwrap();
            let Some(Member::Property { ty }) = contract.get(&(piface.clone(), prop.clone()))
            else {
                seen.error(format!("Get of {piface}.{prop}, which the XML lacks"));
                continue;
            };
            seen.record(&piface, &prop);
            reply.build(&(sample(&parse(ty), &prop),)).unwrap()
        } else {
            let Some(Member::Method { ins, outs }) = contract.get(&(iface.clone(), member.clone()))
            else {
                // What a proxy asks a bus (GetNameOwner before it subscribes to signals): a
                // peer-to-peer connection has no bus to answer.
                if iface != "org.freedesktop.DBus" {
                    seen.error(format!("call of {iface}.{member}, which the XML lacks"));
                }
                let e = Message::error(&header, "org.freedesktop.DBus.Error.UnknownMethod")
                    .unwrap()
                    .build(&("no such method",))
                    .unwrap();
                conn.send(&e).await.unwrap();
                continue;
            };
            seen.record(&iface, &member);
            if &sent != ins {
                seen.error(format!(
                    "{iface}.{member} sent ({sent}), the XML says ({ins})"
                ));
            }
            let mut body = StructureBuilder::new();
            for ty in outs {
                body = body.append_field(sample(&parse(ty), &member));
            }
            match outs.is_empty() {
                true => reply.build(&()).unwrap(),
                false => reply.build(&body.build().unwrap()).unwrap(),
            }
        };
        conn.send(&reply).await.unwrap();
    }
}

/// What the peer was asked, and what disagreed.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Log>>);

#[derive(Clone, Default)]
struct Log {
    /// `(interface, member)` of every method called and property read.
    members: BTreeSet<(String, String)>,
    errors: Vec<String>,
}

impl Seen {
    fn record(&self, iface: &str, member: &str) {
        self.0
            .lock()
            .unwrap()
            .members
            .insert((iface.to_owned(), member.to_owned()));
    }

    fn error(&self, e: String) {
        self.0.lock().unwrap().errors.push(e);
    }
}

/// Emit every signal of `iface` from the XML, with sample arguments, at `path`.
async fn emit_all(
    conn: &Connection,
    contract: &BTreeMap<(String, String), Member>,
    iface: &str,
    path: &str,
) {
    for ((i, name), member) in contract {
        let Member::Signal { args } = member else {
            continue;
        };
        if i != iface {
            continue;
        }
        let mut body = StructureBuilder::new();
        for (arg, ty) in args {
            // A hook's state has words of its own.
            let key = if name == "Hook" {
                format!("Hook.{arg}")
            } else {
                arg.clone()
            };
            body = body.append_field(sample(&parse(ty), &key));
        }
        conn.emit_signal(
            None::<&str>,
            path,
            iface,
            name.as_str(),
            &body.build().unwrap(),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_proxies_agree_with_the_xml() {
    let contract = contract();
    assert!(
        contract.len() > 20,
        "the XML holds the interfaces: {contract:?}"
    );
    let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
    let guid = zbus::Guid::generate();
    let peer = zbus::connection::Builder::unix_stream(theirs)
        .server(guid)
        .unwrap()
        .p2p()
        .build();
    let client = zbus::connection::Builder::unix_stream(ours).p2p().build();
    let (peer, client) = tokio::try_join!(peer, client).unwrap();

    let seen = Seen::default();
    tokio::spawn(serve(peer.clone(), contract.clone(), seen.clone()));

    let m = ManagerProxy::builder(&client)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let t_path = "/xyz/smech/Spk1/transaction/1";
    let t = TransactionProxy::builder(&client)
        .path(t_path)
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let opts = ChangeOptions {
        dry_run: true,
        ..ChangeOptions::default()
    };

    // Methods.
    m.refresh(&opts).await.unwrap();

    m.install(&["a"], &opts).await.unwrap();
    m.upgrade(&[], &opts).await.unwrap();
    m.remove(&["a"], &opts).await.unwrap();
    m.rollback(&["a"], &opts).await.unwrap();
    m.rollback(
        &[],
        &ChangeOptions {
            undo: Some(7),
            ..ChangeOptions::default()
        },
    )
    .await
    .unwrap();
    m.hold(&["a"]).await.unwrap();
    m.cancel_prepared_update().await.unwrap();
    m.unhold(&["a"]).await.unwrap();
    m.list_packages().await.unwrap();
    m.get_transactions().await.unwrap();
    m.plan(Kind::Install, &["a"], &opts).await.unwrap();
    m.verify(&[]).await.unwrap();
    m.clean(&CleanOptions { all: true }).await.unwrap();
    m.get_history(10).await.unwrap();
    m.get_repositories().await.unwrap();
    t.cancel().await.unwrap();

    // Properties.
    m.version().await.unwrap();
    m.root().await.unwrap();
    m.update_count().await.unwrap();
    m.last_refresh().await.unwrap();
    m.busy().await.unwrap();
    m.trusted_keys().await.unwrap();
    assert!(!m.prepared_update().await.unwrap().is_prepared());
    t.kind().await.unwrap();
    t.packages().await.unwrap();
    t.state().await.unwrap();
    t.percentage().await.unwrap();
    t.bytes_done().await.unwrap();
    t.bytes_total().await.unwrap();
    t.current_package().await.unwrap();
    t.error_name().await.unwrap();
    t.error_message().await.unwrap();
    t.requester().await.unwrap();
    t.notices().await.unwrap();

    // Signals: subscribe, let the peer emit every one, decode each.
    let mut updates = m.receive_updates_available().await.unwrap();
    let mut progress = t.receive_progress().await.unwrap();
    let mut done = t.receive_package_done().await.unwrap();
    let mut notice = t.receive_notice().await.unwrap();
    let mut hook = t.receive_hook().await.unwrap();
    let mut finished = t.receive_finished().await.unwrap();
    emit_all(&peer, &contract, MANAGER_INTERFACE, MANAGER_PATH).await;
    emit_all(&peer, &contract, TRANSACTION_INTERFACE, t_path).await;
    let mut signals = BTreeSet::new();
    updates.next().await.unwrap().args().unwrap();
    signals.insert((MANAGER_INTERFACE, "UpdatesAvailable"));
    // The transaction signals also through `TransactionSignal`, the decoder of clients that
    // subscribe before a transaction exists.
    let decodes = |msg: &zbus::Message| TransactionSignal::from_message(msg).is_some();
    let p = progress.next().await.unwrap();
    p.args().unwrap();
    assert!(decodes(p.message()));
    signals.insert((TRANSACTION_INTERFACE, "Progress"));
    let d = done.next().await.unwrap();
    d.args().unwrap();
    assert!(decodes(d.message()));
    signals.insert((TRANSACTION_INTERFACE, "PackageDone"));
    let n = notice.next().await.unwrap();
    n.args().unwrap();
    assert!(decodes(n.message()));
    signals.insert((TRANSACTION_INTERFACE, "Notice"));
    let h = hook.next().await.unwrap();
    h.args().unwrap();
    assert!(decodes(h.message()));
    signals.insert((TRANSACTION_INTERFACE, "Hook"));
    let f = finished.next().await.unwrap();
    f.args().unwrap();
    assert!(decodes(f.message()));
    signals.insert((TRANSACTION_INTERFACE, "Finished"));

    let Log {
        members: mut exercised,
        errors,
    } = seen.0.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:#?}");
    exercised.extend(signals.iter().map(|(i, m)| (i.to_string(), m.to_string())));
    let declared: BTreeSet<(String, String)> = contract.keys().cloned().collect();
    assert_eq!(
        exercised, declared,
        "the test (and so the proxies) must cover exactly the XML's members"
    );
}

#[test]
fn the_literals_of_the_proxies_are_the_names() {
    use zbus::proxy::Defaults;
    assert_eq!(
        ManagerProxy::INTERFACE.as_ref().map(|i| i.as_str()),
        Some(MANAGER_INTERFACE)
    );
    assert_eq!(
        ManagerProxy::DESTINATION.as_ref().map(|d| d.as_str()),
        Some(spk_dbus::BUS_NAME)
    );
    assert_eq!(
        ManagerProxy::PATH.as_ref().map(|p| p.as_str()),
        Some(MANAGER_PATH)
    );
    assert_eq!(
        TransactionProxy::INTERFACE.as_ref().map(|i| i.as_str()),
        Some(TRANSACTION_INTERFACE)
    );
    assert!(spk_dbus::is_transaction_path(
        spk_dbus::transaction_path(7).as_str()
    ));
}

#[test]
fn every_word_is_in_the_xml() {
    let words: Vec<&str> = [
        spk_dbus::State::ALL
            .iter()
            .map(|w| w.as_str())
            .collect::<Vec<_>>(),
        spk_dbus::Kind::ALL.iter().map(|w| w.as_str()).collect(),
        spk_dbus::Activity::ALL.iter().map(|w| w.as_str()).collect(),
        spk_dbus::PackageState::ALL
            .iter()
            .map(|w| w.as_str())
            .collect(),
        spk_dbus::ChangeAction::ALL
            .iter()
            .map(|w| w.as_str())
            .collect(),
        spk_dbus::NoticeKind::ALL
            .iter()
            .map(|w| w.as_str())
            .collect(),
        spk_dbus::ProblemKind::ALL
            .iter()
            .map(|w| w.as_str())
            .collect(),
    ]
    .concat();
    for w in words {
        assert!(
            INTROSPECTION_XML.contains(w),
            "'{w}' is not documented in xyz.smech.Spk1.xml"
        );
    }
}
