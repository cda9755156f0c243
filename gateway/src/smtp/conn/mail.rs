//! The mail transaction: MAIL, RCPT, DATA and the real-time relay to the next hop
//! (`250` only after the next hop said `250`).
//!
//! After the next hop's `354` the connection lives in a [`NextHopMessage`], which gives it
//! back only with the final dot; every other ending of the DATA phase is a
//! [`TransactionOutcome`], finished in one place ([`Connection::finish`]).

use std::time::Instant;

use tracing::debug;

use crate::metrics::{MessageOutcome, RateLimitedLabels};
use crate::rate_limit::Counted;
use crate::relay::{ClientOrigin, NextHopConnection, NextHopMessage, RelayError, Step};
use crate::smtp::data::Progress;
use crate::smtp::identity_header;
use crate::smtp::received::{self, TraceInfo};
use crate::smtp::session::Transaction;
use crate::wire::io::DATA_CHUNK;
use crate::wire::params::MailParams;
use crate::wire::reply::{self, Reply};

use super::body::Body;
use super::outcome::{DecisionLine, TransactionOutcome};
use super::tls::Remap;
use super::{Connection, Flow};

/// The message on its way to the next hop, or why it no longer goes there (the
/// connection is gone; the client's data is still read to its end).
type Upload = Result<NextHopMessage, RelayError>;

impl Connection {
    /// Forget the open transaction, and reset it at the next hop too.
    pub(super) async fn abort_transaction(&mut self) {
        if self.st.txn.take().is_some()
            && let Some(up) = self.upstream.as_mut()
            && up.step(Step::Rset, "RSET\r\n").await.is_err()
        {
            self.upstream = None;
        }
    }

    /// A relay step failed: log the decision, drop the next hop connection unless the
    /// protocol defines its state after this failure, and return the client's reply (a
    /// permanent refusal passed through, else `451 4.4.1`; never a positive reply).
    /// `what` names the message or recipient concerned, for the log.
    pub(super) fn relay_failed(&mut self, e: &RelayError, what: &str) -> Reply {
        if !e.keeps_connection() {
            self.upstream = None;
        }
        let hop = &self.listener.next_hop;
        let line = DecisionLine::relay_failure(e, what, (&hop.host, hop.port));
        self.decision(line.decision, line.outcome, &line.reason);
        e.client_reply()
    }

    /// Take one message or recipient from the session's rate limit budgets (user and
    /// client address). `Err`: a budget is spent; the command has been refused
    /// (`451 4.7.1` at MAIL, `452 4.5.3` at RCPT), logged and counted.
    fn take_rate(&mut self, counted: Counted) -> Result<(), Flow> {
        let user = self.st.auth.as_ref().map(|a| a.user.as_str());
        let Err(limited) = self.policy.rate.take(counted, user, self.peer.ip()) else {
            return Ok(());
        };
        let (decision, r) = match counted {
            Counted::Messages => ("mail", reply::message_rate_limited()),
            Counted::Recipients => ("rcpt", reply::recipient_rate_limited()),
        };
        self.ctx
            .metrics
            .rate_limited
            .get_or_create(&RateLimitedLabels {
                listener: self.listener.name.clone(),
                policy: self.policy.name.clone(),
                scope: limited.scope.label(),
                counted: counted.as_str(),
            })
            .inc();
        self.decision(decision, limited.scope.outcome(), &limited.to_string());
        Err(self.refuse(&r))
    }

    pub(super) async fn mail(&mut self, from: String, params: MailParams) -> Flow {
        if let Err(mut r) = self.st.check_mail(&self.rules(), &params) {
            if r == reply::auth_required() {
                match self.remap_after_outage().await {
                    Remap::Unreachable => r = reply::temporary_auth_failure(),
                    Remap::Answered if self.st.auth.is_some() => {
                        return Box::pin(self.mail(from, params)).await;
                    }
                    Remap::Answered | Remap::NotAsked => {}
                }
            }
            self.decision("mail", "refused", &r.summary());
            return self.refuse(&r);
        }
        if let Err(r) = self.check_sender(&from).await {
            self.decision("mail", "refused", &r.summary());
            return self.refuse(&r);
        }
        if let Err(flow) = self.take_rate(Counted::Messages) {
            return flow;
        }
        // A connection kept from an earlier transaction may have been closed by the next
        // hop meanwhile (silently, or with a `421` as an MTA does at its idle timeout):
        // then reconnect once instead of failing the client.
        let mut reused = self.upstream.is_some();
        let result = loop {
            let up = match self.connect_next_hop().await {
                Ok(up) => up,
                Err(flow) => return flow,
            };
            if params.smtputf8 && !up.extensions.smtputf8 && !from.is_ascii() {
                let r = Reply::new(553, "5.6.7", "The next hop does not support SMTPUTF8");
                self.decision("mail", "refused", &r.summary());
                return self.refuse(&r);
            }
            let line = up.extensions.mail_command(&from, &params);
            match up.step(Step::Mail, &line).await {
                // Gone (silently, or with a `421` as an MTA says at its idle timeout), or
                // no longer making sense: a fresh connection gets one chance.
                Err(e) if reused && !e.keeps_connection() => {
                    debug!(session = %self.id, error = %e, "kept next hop connection is unusable; reconnecting");
                    self.upstream = None;
                    reused = false;
                }
                other => break other,
            }
        };
        if let Err(e) = result {
            let r = self.relay_failed(&e, "");
            return self.refuse(&r);
        }
        self.txn_seq += 1;
        let id = format!("{}.{}", self.id, self.txn_seq);
        self.decision("mail", "accepted", &format!("id {id}"));
        self.st.txn = Some(Transaction {
            id,
            from,
            params,
            rcpts: Vec::new(),
            attempted: 0,
        });
        self.reply(&Reply::new(250, "2.1.0", "Sender ok"));
        Flow::Continue
    }

    /// The next hop connection: the one kept, else a new one. `Err`: the client has been
    /// answered (a failure to connect, or a shutdown while connecting).
    async fn connect_next_hop(&mut self) -> Result<&mut NextHopConnection, Flow> {
        let origin = self.origin();
        // A connection whose next hop was told (XCLIENT) about the session as it was
        // before (unauthenticated, another HELO) does not carry this message.
        if let Some(up) = self.upstream.take_if(|up| !up.serves(&origin)) {
            up.quit().await;
        }
        if self.upstream.is_none() {
            let connect = NextHopConnection::connect(&self.listener.next_hop, &origin);
            let result = tokio::select! {
                _ = self.ctx.hard_stop.cancelled() => {
                    self.reply(&reply::shutting_down());
                    return Err(Flow::Close);
                }
                r = connect => r,
            };
            match result {
                Ok(up) => {
                    if let Some(told) = &up.told {
                        let hop = &self.listener.next_hop;
                        self.decision(
                            "relay",
                            "xclient",
                            &format!(
                                "next hop {}:{} told client {} port {} login {}",
                                hop.host,
                                hop.port,
                                told.addr,
                                told.port,
                                told.login.as_deref().unwrap_or("-")
                            ),
                        );
                    }
                    self.upstream = Some(up);
                }
                Err(e) => {
                    let r = self.relay_failed(&e, "");
                    self.count_message(MessageOutcome::TempFailed);
                    return Err(self.refuse(&r));
                }
            }
        }
        Ok(self.upstream.as_mut().expect("connected above"))
    }

    pub(super) async fn rcpt(&mut self, to: String) -> Flow {
        if let Err(r) = self.st.check_rcpt(&self.rules()) {
            self.decision("rcpt", "refused", &r.summary());
            return self.refuse(&r);
        }
        if let Err(flow) = self.take_rate(Counted::Recipients) {
            return flow;
        }
        if let Some(t) = self.st.txn.as_mut() {
            t.attempted += 1;
        }
        let Some(up) = self.upstream.as_mut() else {
            self.st.txn = None;
            return self.refuse(&reply::next_hop_unavailable());
        };
        match up.step(Step::Rcpt, &format!("RCPT TO:<{to}>\r\n")).await {
            Ok(_) => {
                if let Some(t) = self.st.txn.as_mut() {
                    t.rcpts.push(to);
                }
                self.reply(&Reply::new(250, "2.1.5", "Recipient ok"));
                Flow::Continue
            }
            Err(e) => {
                let what = format!("<{}>: ", received::sanitize(&to, 256));
                let r = self.relay_failed(&e, &what);
                if self.upstream.is_none() {
                    // The transaction went with the connection.
                    self.st.txn = None;
                }
                self.refuse(&r)
            }
        }
    }

    pub(super) async fn data(&mut self) -> Flow {
        if let Err(r) = self.st.check_data() {
            self.decision("data", "refused", &r.summary());
            return self.refuse(&r);
        }
        let Some(up) = self.upstream.take() else {
            self.st.txn = None;
            return self.refuse(&reply::next_hop_unavailable());
        };
        let message = match up.data().await {
            Ok(message) => message,
            Err(refused) => {
                self.upstream = refused.connection;
                let id = self
                    .st
                    .txn
                    .as_ref()
                    .map(|t| t.id.clone())
                    .unwrap_or_default();
                let r = self.relay_failed(&refused.error, &format!("id {id}: "));
                // A refusal leaves the next hop's transaction open: reset it there too.
                self.abort_transaction().await;
                return self.refuse(&r);
            }
        };
        self.reply(&Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        if self.io.flush().await.is_err() {
            // Dropping `message` drops the next hop connection before the final dot.
            return Flow::Close;
        }
        self.receive_and_relay(message).await
    }

    /// Stream the message from the client to the next hop; reply when both ends are done.
    async fn receive_and_relay(&mut self, message: NextHopMessage) -> Flow {
        let txn = self.st.txn.clone().expect("checked by check_data");
        let max_size = self.policy.policy.limits.max_message_size;
        let mut body = Body::new(max_size, self.trace_header(&txn).as_bytes());
        let outcome = match self.receive(&mut body, Ok(message)).await {
            // Before the final dot: whatever ended it dropped the next hop connection.
            Err(ended) => ended,
            Ok(upload) => match body.refusal(max_size) {
                Some(refused) => refused,
                None => self.end_of_data(&txn, &mut body, upload).await,
            },
        };
        self.finish(&txn.id, outcome)
    }

    /// Read the message to the client's end of data, sending it on in chunks while the
    /// next hop takes it. `Err`: the DATA phase ended before that; the upload, and with it
    /// the next hop connection, is dropped.
    async fn receive(
        &mut self,
        body: &mut Body,
        mut upload: Upload,
    ) -> Result<Upload, TransactionOutcome> {
        // Two bounds: an idle limit per read, and a deadline for the whole phase so a
        // client trickling a byte just inside the idle limit cannot hold the session.
        let deadline = tokio::time::Instant::now() + self.listener.data_total_timeout;
        loop {
            let (progress, consumed) = body.feed(&self.io.rbuf, upload.is_ok());
            self.io.consume(consumed);
            let end = matches!(progress, Progress::End { .. });
            if !end && body.chunk_ready() {
                upload = match upload {
                    Ok(message) => message.send(body.chunk()).await,
                    failed => failed,
                };
                body.sent();
            }
            match progress {
                Progress::End { .. } => return Ok(upload),
                Progress::BareNewline => return Err(TransactionOutcome::BareNewline),
                Progress::NeedMore => self.read_data(deadline).await?,
            }
        }
    }

    /// Wait for more message data, within `timeouts.data` and the phase's `deadline`.
    async fn read_data(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<(), TransactionOutcome> {
        let idle = self.listener.data_timeout;
        let read = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => None,
            r = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + idle),
                self.io.fill(DATA_CHUNK),
            ) => Some(r),
        };
        match read {
            None => Err(TransactionOutcome::Shutdown),
            Some(Err(_)) if tokio::time::Instant::now() >= deadline => {
                Err(TransactionOutcome::DataDeadline {
                    total: self.listener.data_total_timeout,
                })
            }
            Some(Err(_)) => Err(TransactionOutcome::DataTimeout { idle }),
            // The client vanished mid-DATA.
            Some(Ok(Ok(0) | Err(_))) => Err(TransactionOutcome::ClientGone),
            Some(Ok(Ok(_))) => Ok(()),
        }
    }

    /// The client's message is complete and acceptable: send the final dot, and keep the
    /// next hop connection for the next transaction when it may carry one.
    async fn end_of_data(
        &mut self,
        txn: &Transaction,
        body: &mut Body,
        upload: Upload,
    ) -> TransactionOutcome {
        let message = match upload {
            Ok(message) => message,
            Err(e) => return TransactionOutcome::NextHopFailed(e),
        };
        let started = Instant::now();
        // `250` to the final dot, and nothing else, means the next hop took the message.
        let (result, kept) = message.end(body.last()).await;
        self.ctx
            .metrics
            .relay_seconds
            .get_or_create(&self.listener_labels())
            .observe(started.elapsed().as_secs_f64());
        self.upstream = kept;
        match result {
            Ok(next_hop) => TransactionOutcome::Relayed {
                bytes: body.size(),
                recipients: txn.rcpts.len(),
                next_hop,
            },
            Err(e) => TransactionOutcome::NextHopFailed(e),
        }
    }

    /// The one place a DATA phase ends: count the message, log the decision, reply, and
    /// close the transaction.
    fn finish(&mut self, id: &str, outcome: TransactionOutcome) -> Flow {
        self.count_message(outcome.metric());
        if let TransactionOutcome::Relayed { bytes, .. } = outcome {
            self.ctx
                .metrics
                .relayed_bytes
                .get_or_create(&self.listener_labels())
                .inc_by(bytes);
        }
        let hop = &self.listener.next_hop;
        let line = outcome.decision(id, (&hop.host, hop.port));
        self.decision(line.decision, line.outcome, &line.reason);
        let closes = outcome.closes_session();
        let flow = match outcome.reply(id) {
            Some(r) if closes => {
                self.reply(&r);
                Flow::Close
            }
            None => Flow::Close,
            Some(r) if r.is_positive() => {
                self.reply(&r);
                Flow::Continue
            }
            Some(r) => self.refuse(&r),
        };
        self.io.shrink();
        self.st.txn = None;
        self.st.messages += 1;
        flow
    }

    /// The `Received` header the message gets.
    /// The client as XCLIENT describes it to the next hop.
    fn origin(&self) -> ClientOrigin {
        ClientOrigin {
            addr: self.peer.ip(),
            port: self.peer.port(),
            helo: self.st.helo.clone().unwrap_or_default(),
            esmtp: self.st.esmtp,
            login: self.st.auth.as_ref().map(|a| a.user.clone()),
        }
    }

    /// `Received`, then (authenticated sessions) `X-Postern-Authenticated-User`.
    fn trace_header(&self, txn: &Transaction) -> String {
        let mut h = self.received(txn);
        if let Some(a) = &self.st.auth {
            h.push_str(&identity_header::render(&a.user, a.method));
        }
        h
    }

    fn received(&self, txn: &Transaction) -> String {
        received::render(
            &TraceInfo {
                helo: self.st.helo.as_deref().unwrap_or(""),
                esmtp: self.st.esmtp,
                client_ip: Some(self.peer.ip()),
                hostname: &self.listener.hostname,
                tls: self
                    .st
                    .tls
                    .as_ref()
                    .map(|t| (t.version.as_str(), t.cipher.as_str())),
                auth: self.st.auth.as_ref().map(|a| (a.user.as_str(), a.method)),
                id: &txn.id,
                for_rcpt: if txn.rcpts.len() == 1 {
                    Some(txn.rcpts[0].as_str())
                } else {
                    None
                },
                utf8: txn.params.smtputf8,
                proxy_ip: self.proxy.map(|p| p.ip()),
            },
            time::OffsetDateTime::now_utc(),
        )
    }
}
