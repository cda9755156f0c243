//! The SMTP server: command parser, session rules, message data, trace headers
//! and the per-connection driver.

pub mod command;
pub mod conn;
pub mod data;
pub mod monitor;
pub mod received;
pub mod sasl;
pub mod session;

pub use conn::{Connection, SessionContext};
