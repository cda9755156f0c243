//! A message on its way to the next hop, from the next hop's `354` to the final dot.
//!
//! The next hop connection moves into a [`NextHopMessage`] when DATA gets `354`
//! ([`NextHopConnection::data`]), and comes back out only through
//! [`NextHopMessage::end`], which sends the final dot. Every other way out — a failed
//! send, a message refused or abandoned on the client's side, a timeout, a shutdown —
//! drops the handle, and with it the connection, before the final dot: the next hop then
//! discards the partial message instead of delivering it. Nothing can keep such a
//! connection for the next transaction, because nothing else can take it out.

use super::client::{NextHopConnection, RelayError};
use super::reply::UpstreamReply;
use super::step::Step;

/// A message being sent to the next hop (after its `354`, before the final dot).
#[derive(Debug)]
pub struct NextHopMessage {
    conn: NextHopConnection,
}

/// The next hop did not answer DATA with `354`.
#[derive(Debug)]
pub struct DataRefused {
    /// What went wrong.
    pub error: RelayError,
    /// The connection, when the refusal leaves it usable (a refusal of DATA other than
    /// `421`): the transaction is still open there and must be reset.
    pub connection: Option<NextHopConnection>,
}

impl NextHopConnection {
    /// Send DATA. Only `354` lets a message follow: after anything else the next hop is
    /// not reading one, and the message would reach it as commands.
    pub async fn data(mut self) -> Result<NextHopMessage, DataRefused> {
        match self.step(Step::Data, "DATA\r\n").await {
            Ok(_) => Ok(NextHopMessage::after_354(self)),
            Err(error) => {
                let connection = error.keeps_connection().then_some(self);
                Err(DataRefused { error, connection })
            }
        }
    }
}

impl NextHopMessage {
    /// Only [`NextHopConnection::data`] starts a message, after the next hop's `354`.
    pub(super) fn after_354(conn: NextHopConnection) -> Self {
        Self { conn }
    }

    /// Send the next part of the message (dot-stuffed). On failure the connection is
    /// gone with the handle, and the message with it.
    pub async fn send(mut self, bytes: &[u8]) -> Result<Self, RelayError> {
        self.conn.send(bytes).await?;
        Ok(self)
    }

    /// Send the rest of the message with the final dot (`last`), and read the next hop's
    /// verdict: `Ok` only for `250`. The connection comes back when it may carry the
    /// next transaction: after `250`, or after a refusal that leaves its state defined
    /// ([`RelayError::keeps_connection`]).
    pub async fn end(
        mut self,
        last: &[u8],
    ) -> (Result<UpstreamReply, RelayError>, Option<NextHopConnection>) {
        let result = self.conn.end_data(last).await;
        let keep = result
            .as_ref()
            .map_or_else(RelayError::keeps_connection, |_| true);
        (result, keep.then_some(self.conn))
    }
}
