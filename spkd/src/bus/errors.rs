//! The one place where engine errors become D-Bus errors (`xyz.smech.Spk1.Error.<Name>`, named
//! in spk-dbus).

use spk_engine::{Error, ErrorKind};
use zbus::DBusError;

pub use spk_dbus::Error as BusError;

/// The D-Bus error of an engine error class, carrying `msg`.
fn of_kind(kind: ErrorKind, msg: String) -> BusError {
    match kind {
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

/// An engine error as the caller receives it.
pub fn bus_error(e: Error) -> BusError {
    of_kind(e.kind(), e.message())
}

/// Full D-Bus error name of an engine error class (the transaction's `ErrorName`).
pub fn error_name(kind: ErrorKind) -> String {
    of_kind(kind, String::new()).name().to_string()
}
