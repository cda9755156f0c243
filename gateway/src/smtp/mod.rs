//! The SMTP server: command parser, replies, session rules, message data, trace headers
//! and the per-connection driver.

pub mod command;
pub mod conn;
pub mod data;
pub mod io;
pub mod monitor;
pub mod received;
pub mod reply;
pub mod sasl;
pub mod session;

pub use conn::{Connection, SessionContext};
