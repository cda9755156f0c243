//! The SMTP server: command parser, session rules, message data, trace headers
//! and the per-connection driver.

pub mod command;
pub(crate) mod conn;
pub mod data;
pub(crate) mod identity_header;
pub(crate) mod monitor;
pub(crate) mod received;
pub mod sasl;
pub(crate) mod session;

pub use conn::{Connection, SessionContext};
