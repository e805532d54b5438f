//! spkd's D-Bus face: a thin adapter from `xyz.smech.Spk1` to the engine.

pub mod auth;
pub mod errors;
pub mod manager;
pub mod p2p;
pub mod transaction;
pub mod wire;
