//! The one place where engine errors become D-Bus errors (`xyz.smech.Spk1.Error.<Name>`).

use spk_engine::{Error, ErrorKind};

pub const PREFIX: &str = "xyz.smech.Spk1.Error";

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "xyz.smech.Spk1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    UnknownPackage(String),
    NotAuthorized(String),
    Network(String),
    Verification(String),
    Conflict(String),
    Cancelled(String),
    Io(String),
    InvalidArgs(String),
    NotAvailable(String),
    Busy(String),
}

impl From<Error> for BusError {
    fn from(e: Error) -> Self {
        let msg = e.message();
        match e.kind() {
            ErrorKind::UnknownPackage => BusError::UnknownPackage(msg),
            ErrorKind::NotAuthorized => BusError::NotAuthorized(msg),
            ErrorKind::Network => BusError::Network(msg),
            ErrorKind::Verification => BusError::Verification(msg),
            ErrorKind::Conflict => BusError::Conflict(msg),
            ErrorKind::Cancelled => BusError::Cancelled(msg),
            ErrorKind::Io => BusError::Io(msg),
            ErrorKind::InvalidArgs => BusError::InvalidArgs(msg),
            ErrorKind::NotAvailable => BusError::NotAvailable(msg),
            ErrorKind::Busy => BusError::Busy(msg),
        }
    }
}

impl From<zbus::fdo::Error> for BusError {
    fn from(e: zbus::fdo::Error) -> Self {
        BusError::ZBus(zbus::Error::FDO(Box::new(e)))
    }
}

/// Full D-Bus error name of an engine error class (the transaction's `ErrorName`).
pub fn error_name(kind: ErrorKind) -> String {
    format!("{PREFIX}.{}", kind.name())
}
