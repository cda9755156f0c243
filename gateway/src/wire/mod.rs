//! SMTP on the wire, for both ends the gateway plays: the server that clients talk to
//! ([`smtp`](crate::smtp)) and the client of the next hop ([`relay`](crate::relay)).
//!
//! - [`io`]: buffered line I/O for one connection;
//! - [`params`]: the `MAIL FROM` parameters both ends speak;
//! - [`reply`]: SMTP replies, including the ones whose code and text are a contract.
//!
//! Both ends import this module; it imports neither (so the session can use the relay
//! without the relay using the session).

pub(crate) mod io;
pub(crate) mod params;
pub(crate) mod reply;
