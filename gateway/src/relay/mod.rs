//! Relaying to the listener's next hop.
//!
//! The gateway never queues: MAIL, RCPT and DATA are proxied to the next hop in real time,
//! so the client's `250` for a message means the next hop has accepted it, and a
//! per-recipient refusal from the next hop reaches the client unchanged.

mod client;
mod message;
pub mod reply;
mod step;
mod tls;
pub mod xclient;

pub use client::{NextHopConnection, RelayError};
pub use message::{DataRefused, NextHopMessage};
pub use reply::UpstreamReply;
pub use step::{Step, StepFailure};
pub use tls::{NextHopRuntime, build_next_hop};
pub use xclient::ClientOrigin;
