//! The notifier's one error type: what failed, and on which bus.

/// A failure that stops the notifier (everything else is logged and survived).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid bus address '{address}': {source}")]
    BusAddress {
        address: String,
        source: Box<zbus::Error>,
    },
    #[error("cannot connect to the {bus} bus: {source}")]
    Connect {
        bus: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("D-Bus call {what} failed: {source}")]
    Call {
        what: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("cannot show the tray icon: {0}")]
    Tray(#[from] ksni::Error),
    #[error("cannot set up the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// A `map_err` adapter naming the call that failed.
    pub fn call(what: &'static str) -> impl FnOnce(zbus::Error) -> Error {
        move |source| Error::Call {
            what,
            source: Box::new(source),
        }
    }

    /// A `map_err` adapter for a failed connection to `bus`.
    pub fn connect(bus: &'static str) -> impl FnOnce(zbus::Error) -> Error {
        move |source| Error::Connect {
            bus,
            source: Box::new(source),
        }
    }
}
