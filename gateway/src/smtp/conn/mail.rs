//! The mail transaction: MAIL, RCPT, DATA and the real-time relay to the next hop
//! (`250` only after the next hop said `250`).

use std::time::Instant;

use tracing::debug;

use crate::relay::{NextHopConnection, RelayError, Step};
use crate::smtp::command::MailParams;
use crate::smtp::data::{DataDecoder, DataEncoder, Progress};
use crate::smtp::received::{self, TraceInfo};
use crate::smtp::session::Transaction;
use crate::wire::io::DATA_CHUNK;
use crate::wire::reply::{self, Reply};

use super::{Connection, Flow};

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
        let (decision, outcome) = match e.step_failure() {
            // A refusal of a transaction step belongs to that step's decision; a
            // permanent refusal of the session itself (greeting, EHLO, STARTTLS) is
            // passed through like any other permanent refusal: retrying would not help.
            Some(f) if f.step().in_transaction() && !f.is_unexpected() => {
                (decision_of(f.step()), "refused_by_next_hop")
            }
            Some(f) if f.is_permanent() => ("relay", "refused_by_next_hop"),
            _ => ("relay", "temp_fail"),
        };
        let hop = &self.listener.next_hop;
        let reason = format!("{what}next hop {}:{}: {e}", hop.host, hop.port);
        self.decision(decision, outcome, &reason);
        e.client_reply()
    }

    pub(super) async fn mail(&mut self, from: String, params: MailParams) -> Flow {
        if let Err(mut r) = self.st.check_mail(&self.rules(), &params) {
            if r == reply::auth_required() && self.st.cert_mapping_failed && self.st.cert.is_some()
            {
                self.map_certificate().await;
                if self.st.auth.is_some() {
                    return Box::pin(self.mail(from, params)).await;
                }
                if self.st.cert_mapping_failed {
                    r = reply::temporary_auth_failure();
                }
            }
            self.decision("mail", "refused", &r.summary());
            return self.refuse(&r);
        }
        // A connection kept from an earlier transaction may have been closed by the next
        // hop meanwhile (silently, or with a `421` as an MTA does at its idle timeout):
        // then reconnect once instead of failing the client.
        let mut reused = self.upstream.is_some();
        let result = loop {
            if self.upstream.is_none() {
                let connect = NextHopConnection::connect(&self.listener.next_hop);
                let result = tokio::select! {
                    _ = self.ctx.hard_stop.cancelled() => {
                        self.reply(&reply::shutting_down());
                        return Flow::Close;
                    }
                    r = connect => r,
                };
                match result {
                    Ok(up) => self.upstream = Some(up),
                    Err(e) => {
                        let r = self.relay_failed(&e, "");
                        self.count_message("temp_failed");
                        return self.refuse(&r);
                    }
                }
            }
            let up = self.upstream.as_mut().expect("connected above");
            if params.smtputf8 && !up.extensions.smtputf8 && !from.is_ascii() {
                let r = Reply::new(553, "5.6.7", "The next hop does not support SMTPUTF8");
                self.decision("mail", "refused", &r.summary());
                return self.refuse(&r);
            }
            let mut line = format!("MAIL FROM:<{from}>");
            if let (Some(size), true) = (params.size, up.extensions.size) {
                line.push_str(&format!(" SIZE={size}"));
            }
            if params.body_8bit == Some(true) && up.extensions.eight_bit {
                line.push_str(" BODY=8BITMIME");
            }
            if params.smtputf8 && up.extensions.smtputf8 {
                line.push_str(" SMTPUTF8");
            }
            line.push_str("\r\n");
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
        match result {
            Err(e) => {
                let r = self.relay_failed(&e, "");
                self.refuse(&r)
            }
            Ok(_) => {
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
        }
    }

    pub(super) async fn rcpt(&mut self, to: String) -> Flow {
        if let Err(r) = self.st.check_rcpt(&self.rules()) {
            self.decision("rcpt", "refused", &r.summary());
            return self.refuse(&r);
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
        let Some(up) = self.upstream.as_mut() else {
            self.st.txn = None;
            return self.refuse(&reply::next_hop_unavailable());
        };
        // Only `354` lets the client send its message: after anything else the next hop
        // is not reading one, and the body would reach it as commands.
        if let Err(e) = up.step(Step::Data, "DATA\r\n").await {
            let id = self
                .st
                .txn
                .as_ref()
                .map(|t| t.id.clone())
                .unwrap_or_default();
            let r = self.relay_failed(&e, &format!("id {id}: "));
            // A refusal leaves the next hop's transaction open: reset it there too.
            self.abort_transaction().await;
            return self.refuse(&r);
        }
        self.reply(&Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        if self.io.flush().await.is_err() {
            self.upstream = None;
            return Flow::Close;
        }
        let outcome = self.receive_and_relay().await;
        self.io.shrink();
        self.st.txn = None;
        self.st.messages += 1;
        outcome
    }

    /// Stream the message from the client to the next hop; reply when both ends are done.
    pub(super) async fn receive_and_relay(&mut self) -> Flow {
        let txn = self.st.txn.clone().expect("checked by check_data");
        let limits = &self.policy.policy.limits;
        let mut decoder = DataDecoder::new(limits.max_message_size);
        let mut encoder = DataEncoder::default();
        let mut content = Vec::with_capacity(DATA_CHUNK);
        let mut wire = Vec::with_capacity(DATA_CHUNK + 1024);
        let tls = self.st.tls.clone();
        let header = received::render(
            &TraceInfo {
                helo: self.st.helo.as_deref().unwrap_or(""),
                esmtp: self.st.esmtp,
                client_ip: Some(self.peer.ip()),
                hostname: &self.listener.hostname,
                tls: tls
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
            },
            time::OffsetDateTime::now_utc(),
        );
        encoder.encode(header.as_bytes(), &mut wire);
        let mut upstream_error: Option<RelayError> = None;
        // Two bounds: an idle limit per read, and a deadline for the whole phase so a
        // client trickling a byte just inside the idle limit cannot hold the session.
        let data_timeout = self.listener.data_timeout;
        let data_deadline = tokio::time::Instant::now() + self.listener.data_total_timeout;
        loop {
            // Decode what is buffered.
            let progress = decoder.feed(&self.io.rbuf, &mut content);
            let consumed = match progress {
                Progress::End { consumed } => consumed,
                _ => self.io.rbuf.len(),
            };
            self.io.consume(consumed);
            if !content.is_empty() {
                if !decoder.oversize() && upstream_error.is_none() {
                    encoder.encode(&content, &mut wire);
                }
                content.clear();
            }
            let end = matches!(progress, Progress::End { .. });
            if !end && wire.len() >= DATA_CHUNK {
                if upstream_error.is_none()
                    && let Some(up) = self.upstream.as_mut()
                    && let Err(e) = up.send(&wire).await
                {
                    upstream_error = Some(e);
                    self.upstream = None;
                }
                wire.clear();
            }
            match progress {
                Progress::End { .. } => break,
                Progress::BareNewline => {
                    self.upstream = None;
                    self.count_message("refused_bare_newline");
                    self.decision(
                        "data",
                        "refused",
                        &format!("id {}: bare CR or LF in message data", txn.id),
                    );
                    self.reply(&Reply::new(
                        521,
                        "5.5.2",
                        "Bare CR or LF in message data is not allowed; lines must end with CRLF",
                    ));
                    return Flow::Close;
                }
                Progress::NeedMore => {}
            }
            let read = tokio::select! {
                _ = self.ctx.hard_stop.cancelled() => None,
                r = tokio::time::timeout_at(
                    data_deadline.min(tokio::time::Instant::now() + data_timeout),
                    self.io.fill(DATA_CHUNK),
                ) => Some(r),
            };
            match read {
                None => {
                    self.upstream = None;
                    self.count_message("aborted_shutdown");
                    self.decision(
                        "data",
                        "aborted",
                        &format!("id {}: shutdown during DATA, nothing relayed", txn.id),
                    );
                    self.reply(&reply::shutting_down());
                    return Flow::Close;
                }
                Some(Err(_)) => {
                    self.upstream = None;
                    let why = if tokio::time::Instant::now() >= data_deadline {
                        self.count_message("aborted_deadline");
                        format!(
                            "DATA took longer than timeouts.dataTotal ({}s)",
                            self.listener.data_total_timeout.as_secs()
                        )
                    } else {
                        self.count_message("aborted_timeout");
                        format!("no data for timeouts.data ({}s)", data_timeout.as_secs())
                    };
                    self.decision(
                        "data",
                        "aborted",
                        &format!("id {}: {why}, nothing relayed", txn.id),
                    );
                    self.reply(&reply::idle_timeout());
                    return Flow::Close;
                }
                Some(Ok(Ok(0))) | Some(Ok(Err(_))) => {
                    // The client vanished mid-DATA: drop the next hop connection without
                    // the final dot, so the next hop discards the partial message.
                    self.upstream = None;
                    self.count_message("aborted_client_gone");
                    self.decision(
                        "data",
                        "aborted",
                        &format!(
                            "id {}: client disconnected during DATA, nothing relayed",
                            txn.id
                        ),
                    );
                    return Flow::Close;
                }
                Some(Ok(Ok(_))) => {}
            }
        }
        // End of data from the client.
        if decoder.oversize() {
            self.upstream = None;
            self.count_message("too_big");
            self.decision(
                "data",
                "refused",
                &format!(
                    "id {}: {} bytes over the limit of {}",
                    txn.id,
                    decoder.size(),
                    limits.max_message_size
                ),
            );
            return self.refuse(&reply::message_too_big());
        }
        if decoder.saw_nul() {
            self.upstream = None;
            self.count_message("refused_nul");
            self.decision(
                "data",
                "refused",
                &format!("id {}: NUL byte in message data", txn.id),
            );
            return self.refuse(&Reply::new(554, "5.6.0", "Message contains NUL characters"));
        }
        if let Some(e) = upstream_error {
            self.count_message("temp_failed");
            let r = self.relay_failed(&e, &format!("id {}: ", txn.id));
            return self.refuse(&r);
        }
        let Some(up) = self.upstream.as_mut() else {
            self.count_message("temp_failed");
            return self.refuse(&reply::next_hop_unavailable());
        };
        encoder.finish(&mut wire);
        let started = Instant::now();
        // `250` to the final dot, and nothing else, means the next hop took the message.
        let result = up.end_data(&wire).await;
        self.ctx
            .metrics
            .relay_seconds
            .get_or_create(&self.listener_labels())
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(up_reply) => {
                self.count_message("relayed");
                self.ctx
                    .metrics
                    .relayed_bytes
                    .get_or_create(&self.listener_labels())
                    .inc_by(decoder.size());
                self.decision(
                    "data",
                    "relayed",
                    &format!(
                        "id {}: {} bytes, {} recipient(s), next hop: {}",
                        txn.id,
                        decoder.size(),
                        txn.rcpts.len(),
                        up_reply.summary()
                    ),
                );
                self.reply(&Reply::new(
                    250,
                    "2.0.0",
                    format!("Ok: queued as {}", txn.id),
                ));
                Flow::Continue
            }
            Err(e) => {
                let permanent = e.step_failure().is_some_and(|f| f.is_permanent());
                self.count_message(if permanent {
                    "refused_next_hop"
                } else {
                    "temp_failed"
                });
                let r = self.relay_failed(&e, &format!("id {}: ", txn.id));
                self.refuse(&r)
            }
        }
    }
}

/// The decision a transaction step's outcome is logged under.
fn decision_of(step: Step) -> &'static str {
    match step {
        Step::Mail => "mail",
        Step::Rcpt => "rcpt",
        Step::Data | Step::EndOfData => "data",
        _ => "relay",
    }
}
