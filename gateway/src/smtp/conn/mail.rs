//! The mail transaction: MAIL, RCPT, DATA and the real-time relay to the next hop
//! (`250` only after the next hop said `250`).

use std::time::Instant;

use tracing::debug;

use crate::relay::{NextHopConnection, RelayError};
use crate::smtp::command::MailParams;
use crate::smtp::data::{DataDecoder, DataEncoder, Progress};
use crate::smtp::io::DATA_CHUNK;
use crate::smtp::received::{self, TraceInfo};
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::Transaction;

use super::{Connection, Flow};

impl Connection {
    /// Forget the open transaction, and reset it at the next hop too.
    pub(super) async fn abort_transaction(&mut self) {
        if self.st.txn.take().is_some()
            && let Some(up) = self.upstream.as_mut()
        {
            match up.command("RSET\r\n", "RSET").await {
                Ok(r) if r.code == 250 => {}
                _ => self.upstream = None,
            }
        }
    }

    pub(super) fn relay_failed(&mut self, stage: &str, e: &RelayError) -> Reply {
        self.upstream = None;
        // A permanent refusal of the session itself (greeting, EHLO, STARTTLS) is passed
        // through like any other permanent refusal: retrying would not help.
        if let RelayError::Refused(up) = e
            && (500..=599).contains(&up.code)
        {
            self.decision(
                "relay",
                "refused_by_next_hop",
                &format!(
                    "next hop {}:{} during {stage}: {}",
                    self.listener.next_hop.host,
                    self.listener.next_hop.port,
                    up.summary()
                ),
            );
            return up.to_client(reply::next_hop_unavailable());
        }
        self.decision(
            "relay",
            "temp_fail",
            &format!(
                "next hop {}:{} during {stage}: {e}",
                self.listener.next_hop.host, self.listener.next_hop.port
            ),
        );
        reply::next_hop_unavailable()
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
                        let r = self.relay_failed("connect", &e);
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
            match up.command(&line, "MAIL").await {
                Err(e) if reused => {
                    debug!(session = %self.id, error = %e, "kept next hop connection is gone; reconnecting");
                    self.upstream = None;
                    reused = false;
                }
                Ok(r) if reused && r.code == 421 => {
                    debug!(session = %self.id, reply = %r.summary(), "kept next hop connection was closed by the next hop; reconnecting");
                    self.upstream = None;
                    reused = false;
                }
                other => break other,
            }
        };
        match result {
            Err(e) => {
                let r = self.relay_failed("MAIL", &e);
                self.refuse(&r)
            }
            Ok(up_reply) if up_reply.code == 250 => {
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
            Ok(up_reply) => {
                if up_reply.code == 421 {
                    self.upstream = None;
                }
                self.decision("mail", "refused_by_next_hop", &up_reply.summary());
                let r = up_reply.to_client(Reply::new(250, "2.1.0", "Sender ok"));
                self.refuse(&r)
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
        match up.command(&format!("RCPT TO:<{to}>\r\n"), "RCPT").await {
            Err(e) => {
                self.st.txn = None;
                let r = self.relay_failed("RCPT", &e);
                self.refuse(&r)
            }
            Ok(up_reply) if up_reply.code == 250 || up_reply.code == 251 => {
                if let Some(t) = self.st.txn.as_mut() {
                    t.rcpts.push(to);
                }
                self.reply(&Reply::new(250, "2.1.5", "Recipient ok"));
                Flow::Continue
            }
            Ok(up_reply) => {
                if up_reply.code == 421 {
                    self.upstream = None;
                    self.st.txn = None;
                }
                self.decision(
                    "rcpt",
                    "refused_by_next_hop",
                    &format!("<{}>: {}", received::sanitize(&to, 256), up_reply.summary()),
                );
                let r = up_reply.to_client(Reply::new(250, "2.1.5", "Recipient ok"));
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
        match up.command("DATA\r\n", "DATA").await {
            Err(e) => {
                self.st.txn = None;
                let r = self.relay_failed("DATA", &e);
                return self.refuse(&r);
            }
            Ok(r) if r.code == 354 => {}
            Ok(up_reply) => {
                self.abort_transaction().await;
                self.decision("data", "refused_by_next_hop", &up_reply.summary());
                let r = up_reply.to_client(Reply::new(354, "2.0.0", "unused"));
                return self.refuse(&r);
            }
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
            let r = self.relay_failed("DATA transfer", &e);
            return self.refuse(&r);
        }
        let Some(up) = self.upstream.as_mut() else {
            self.count_message("temp_failed");
            return self.refuse(&reply::next_hop_unavailable());
        };
        encoder.finish(&mut wire);
        let started = Instant::now();
        let result = match up.send(&wire).await {
            Ok(()) => up.read_reply("end of DATA").await,
            Err(e) => Err(e),
        };
        self.ctx
            .metrics
            .relay_seconds
            .get_or_create(&self.listener_labels())
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(e) => {
                self.count_message("temp_failed");
                let r = self.relay_failed("end of DATA", &e);
                self.refuse(&r)
            }
            Ok(up_reply) if up_reply.code == 250 => {
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
            Ok(up_reply) => {
                if up_reply.code == 421 {
                    self.upstream = None;
                }
                self.count_message(if up_reply.code >= 500 {
                    "refused_next_hop"
                } else {
                    "temp_failed"
                });
                self.decision(
                    "data",
                    "refused_by_next_hop",
                    &format!("id {}: {}", txn.id, up_reply.summary()),
                );
                let r = up_reply.to_client(Reply::new(250, "2.0.0", "unused"));
                self.refuse(&r)
            }
        }
    }
}
