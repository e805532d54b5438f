//! End-to-end test harness of spk: a private `dbus-daemon`, a loopback HTTP server with fault
//! injection, a builder of real `.tar.xz` repositories, the real `spkd` and `spkctl` binaries as
//! processes, and snapshots of the temporary target root.
//!
//! The tests in `tests/` build an [`Env`] in one line and then act as a user or a D-Bus client
//! would; nothing here touches the host root. Roots with real mounts ([`Env::builder`]) live in a
//! private mount namespace ([`namespace`]).
//!
//! Needs: `dbus-daemon` on `PATH` (Debian package `dbus-daemon`), GNU `tar` with xz for the
//! harness self-tests, `openssl` (the certificate of the https front), root with
//! `unshare`/`nsenter`, `mkfs.vfat` (dosfstools) and `fusefat`
//! for the real-root tests, and the workspace binaries in `target/<profile>/` — run the suite as
//! `cargo test --workspace` or `cargo nextest run --workspace`, which build them first
//! (`-p spk-tests` alone would test whatever binaries were built last).
//!
//! The tests of polkit's own answers ([`polkit`]) need Debian's `polkitd` too.
//! The fleet tests (`tests/fleet.rs`, [`squid`]) need Debian's `squid`.

pub mod bus;
pub mod client;
pub mod daemon;
pub mod fixture;
pub mod http;
pub mod introspection;
pub mod make_install;
pub mod namespace;
pub mod openrc;
pub mod polkit;
pub mod real_root;
pub mod repo;
pub mod snapshot;
pub mod squid;
pub mod system_bus;
pub mod terminal;
pub mod tls;

pub use fixture::Env;
pub use http::{Fault, HttpServer};
pub use real_root::RootBuilder;
pub use repo::{Package, Repo};
pub use snapshot::Snapshot;
