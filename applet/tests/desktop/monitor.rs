//! A bus monitor of method calls: what a service (and polkit) sees of a client's calls.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

/// A method call seen on a bus: its member and whether it allowed interactive authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCall {
    pub member: String,
    pub allow_interactive_auth: bool,
}

/// A monitor (`BecomeMonitor`) of the method calls named `members` on a bus, as polkit would
/// see their header flags.
pub struct CallMonitor {
    seen: Arc<Mutex<Vec<SeenCall>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CallMonitor {
    pub async fn start(address: &str, members: &[&str]) -> CallMonitor {
        let conn = zbus::connection::Builder::address(address)
            .expect("bus address")
            .build()
            .await
            .expect("monitor connection");
        let rules: Vec<zbus::MatchRule<'_>> = members
            .iter()
            .map(|m| {
                zbus::MatchRule::builder()
                    .msg_type(zbus::message::Type::MethodCall)
                    .member(*m)
                    .expect("member")
                    .build()
            })
            .collect();
        let stream = zbus::MessageStream::from(&conn);
        zbus::fdo::MonitoringProxy::new(&conn)
            .await
            .expect("Monitoring proxy")
            .become_monitor(&rules, 0)
            .await
            .expect("BecomeMonitor");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let _conn = conn;
                let mut stream = stream;
                while let Some(Ok(msg)) = stream.next().await {
                    let header = msg.header();
                    if msg.message_type() != zbus::message::Type::MethodCall {
                        continue;
                    }
                    let member = header.member().map(|m| m.to_string()).unwrap_or_default();
                    let allow_interactive_auth = msg
                        .primary_header()
                        .flags()
                        .contains(zbus::message::Flags::AllowInteractiveAuth);
                    seen.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(SeenCall {
                            member,
                            allow_interactive_auth,
                        });
                }
            }
        });
        CallMonitor { seen, task }
    }

    /// The calls seen so far.
    pub fn seen(&self) -> Vec<SeenCall> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for CallMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
