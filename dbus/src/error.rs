//! The errors spkd replies with, `xyz.smech.Spk1.Error.<Name>`: one variant per name, carrying
//! the message. spkd maps its engine's error classes onto these in one place (`spkd/src/bus`).

/// A D-Bus error of spkd.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "xyz.smech.Spk1.Error")]
pub enum Error {
    /// Any other error (the bus, a malformed call): passed on as zbus names it.
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
    /// A caller other than root already has as many transactions queued or running as it may.
    Busy(String),
}

impl From<zbus::fdo::Error> for Error {
    fn from(e: zbus::fdo::Error) -> Self {
        Error::ZBus(zbus::Error::FDO(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn error_names_carry_the_prefix() {
        let e = Error::Verification("bad".into());
        assert_eq!(
            e.name().as_str(),
            format!("{}.Verification", crate::names::ERROR_PREFIX)
        );
    }
}
