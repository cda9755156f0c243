//! The SMTP client side: one connection to the next hop.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::NextHopRuntime;
use super::reply::{MAX_REPLY_LINE, ReplyError, ReplyParser, UpstreamReply};
use super::step::{Step, StepFailure};
use super::xclient::{self, ClientOrigin, XclientAttributes};
use crate::net::Stream;
use crate::wire::io::{LineError, LineIo};
use crate::wire::params::MailParams;
use crate::wire::reply::{self, Reply, sanitize_text};
use postern_config::TlsMode;

/// Why talking to the next hop failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// TCP connect failed.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("next hop timed out ({0:?}) during {1}")]
    Timeout(Duration, &'static str),
    /// I/O error or the next hop closed the connection.
    #[error("next hop connection lost during {stage}: {detail}")]
    Io {
        /// What we were doing.
        stage: &'static str,
        /// Cause.
        detail: String,
    },
    /// The next hop sent something that is not an SMTP reply.
    #[error("next hop protocol error during {stage}: {source}")]
    Malformed {
        /// What we were doing.
        stage: &'static str,
        /// What was wrong.
        source: ReplyError,
    },
    /// The next hop sent bytes nobody asked for: more than one reply to a command, or a
    /// reply before the end of the message. Taken as the answer to what follows, they
    /// could acknowledge a message the next hop never accepted.
    #[error("next hop protocol error: {0}")]
    Unsolicited(String),
    /// A step did not end with its positive reply (refused, or answered outside the
    /// protocol).
    #[error(transparent)]
    Step(#[from] StepFailure),
    /// `tls: Required` but the next hop does not offer STARTTLS.
    #[error("next hop does not offer STARTTLS, which nextHop.tls Required demands")]
    TlsUnavailable,
    /// The TLS handshake failed.
    #[error("TLS handshake with next hop failed: {0}")]
    Tls(String),
}

impl RelayError {
    /// Whether the next hop connection may still be used (only after a refusal of a
    /// transaction step, see [`StepFailure::keeps_connection`]).
    pub fn keeps_connection(&self) -> bool {
        matches!(self, Self::Step(f) if f.keeps_connection())
    }

    /// The refusal or out-of-protocol reply behind this error, if that is what it is.
    pub fn step_failure(&self) -> Option<&StepFailure> {
        match self {
            Self::Step(f) => Some(f),
            _ => None,
        }
    }

    /// What the client is told: a permanent refusal passed through, `451 4.4.1` for
    /// everything else. Never a positive reply.
    pub fn client_reply(&self) -> Reply {
        match self {
            Self::Step(f) => f.client_reply(),
            _ => reply::next_hop_unavailable(),
        }
    }
}

/// ESMTP extensions of the next hop that matter for relaying.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// SIZE.
    pub size: bool,
    /// 8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// XCLIENT (Postfix), with the attributes it takes.
    pub xclient: Option<XclientAttributes>,
}

impl Extensions {
    fn parse(reply: &UpstreamReply) -> Self {
        let mut e = Self::default();
        for line in reply.lines.iter().skip(1) {
            let (kw, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kw.to_ascii_uppercase().as_str() {
                "SIZE" => e.size = true,
                "8BITMIME" => e.eight_bit = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "STARTTLS" => e.starttls = true,
                "PIPELINING" => e.pipelining = true,
                "XCLIENT" => e.xclient = Some(XclientAttributes::parse(rest)),
                _ => {}
            }
        }
        e
    }

    /// The `MAIL FROM` line (with CRLF) for this next hop: of the client's parameters,
    /// those it announced support for.
    pub fn mail_command(&self, from: &str, params: &MailParams) -> String {
        let mut line = format!("MAIL FROM:<{from}>");
        if let (Some(size), true) = (params.size, self.size) {
            line.push_str(&format!(" SIZE={size}"));
        }
        if params.body_8bit == Some(true) && self.eight_bit {
            line.push_str(" BODY=8BITMIME");
        }
        if params.smtputf8 && self.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        line.push_str("\r\n");
        line
    }
}

/// An open SMTP session with the next hop, ready for `MAIL`.
#[derive(Debug)]
pub struct NextHopConnection {
    io: LineIo,
    /// The next hop's extensions (after STARTTLS when used).
    pub extensions: Extensions,
    /// TLS version and cipher when STARTTLS was used.
    pub tls: Option<(String, String)>,
    /// The client the next hop was told about with XCLIENT (`None`: not told).
    pub told: Option<ClientOrigin>,
    /// Whether XCLIENT is wanted and offered: then the connection serves only the client
    /// it was told about.
    xclient: bool,
    command_timeout: Duration,
}

impl NextHopConnection {
    /// Connect, read the greeting, EHLO (HELO as a fallback) and STARTTLS as configured;
    /// then, with `nextHop.xclient` and a next hop that offers it, XCLIENT about `origin`
    /// and EHLO again.
    pub async fn connect(rt: &NextHopRuntime, origin: &ClientOrigin) -> Result<Self, RelayError> {
        let addr = (rt.host.as_str(), rt.port);
        let tcp = timeout(rt.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RelayError::Timeout(rt.connect_timeout, "connect"))?
            .map_err(|source| RelayError::Connect {
                host: rt.host.clone(),
                port: rt.port,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Self {
            io: LineIo::new(Stream::Plain(tcp)),
            extensions: Extensions::default(),
            tls: None,
            told: None,
            xclient: false,
            command_timeout: rt.command_timeout,
        };
        let greeting = conn.read_reply(Step::Greeting).await?;
        Step::Greeting.judge(greeting)?;
        conn.ehlo(&rt.helo_name).await?;
        let want_tls = match rt.tls {
            TlsMode::Disabled => false,
            TlsMode::Preferred => conn.extensions.starttls,
            TlsMode::Required if conn.extensions.starttls => true,
            TlsMode::Required => return Err(RelayError::TlsUnavailable),
        };
        if want_tls {
            match conn.step(Step::StartTls, "STARTTLS\r\n").await {
                Ok(_) => conn.start_tls(rt).await?,
                // Refused (`454`, `5xx`): with `Preferred`, go on in plaintext, as the
                // protocol allows after a refusal. Anything else ends the attempt.
                Err(RelayError::Step(StepFailure::Refused { .. }))
                    if rt.tls == TlsMode::Preferred => {}
                Err(e) => return Err(e),
            }
        }
        if rt.xclient {
            conn.xclient(origin, &rt.helo_name).await?;
        }
        Ok(conn)
    }

    /// XCLIENT about `origin` if the next hop offers it; its `220` is a new greeting, so
    /// EHLO again (the extensions may differ for the client it now thinks it serves),
    /// with the client's own HELO name, as Postfix's proxy does: EHLO sets the name the
    /// next hop logs and puts in `Received`, overriding XCLIENT's `HELO`.
    async fn xclient(&mut self, origin: &ClientOrigin, helo: &str) -> Result<(), RelayError> {
        let Some(line) = self
            .extensions
            .xclient
            .as_ref()
            .and_then(|attrs| xclient::command(origin, attrs))
        else {
            return Ok(());
        };
        self.xclient = true;
        self.step(Step::Xclient, &line).await?;
        self.told = Some(origin.clone());
        let name = if !origin.helo.is_empty() && origin.helo.bytes().all(|b| b.is_ascii_graphic()) {
            origin.helo.as_str()
        } else {
            helo
        };
        self.ehlo(name).await
    }

    /// Whether this connection may carry mail of the client `origin`: always, unless the
    /// next hop was told about another client (e.g. before the session authenticated).
    pub fn serves(&self, origin: &ClientOrigin) -> bool {
        !self.xclient || self.told.as_ref() == Some(origin)
    }

    async fn start_tls(&mut self, rt: &NextHopRuntime) -> Result<(), RelayError> {
        let tcp = self
            .io
            .stream
            .take_plain()
            .ok_or_else(|| RelayError::Unsolicited("STARTTLS on a TLS connection".into()))?;
        let connector = TlsConnector::from(rt.tls_config.clone());
        let tls = timeout(
            rt.command_timeout,
            connector.connect(rt.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| RelayError::Timeout(rt.command_timeout, "TLS handshake"))?
        .map_err(|e| RelayError::Tls(e.to_string()))?;
        let (_, c) = tls.get_ref();
        self.tls = Some((
            c.protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .to_owned(),
            c.negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_owned(),
        ));
        self.io.stream = Stream::ClientTls(Box::new(tls));
        self.ehlo(&rt.helo_name).await
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), RelayError> {
        match self.step(Step::Ehlo, &format!("EHLO {name}\r\n")).await {
            Ok(r) => {
                self.extensions = Extensions::parse(&r);
                return Ok(());
            }
            // An old server that does not know EHLO refuses it (`500`, `502`): fall
            // back to HELO. Not after `421` (closing) or a reply outside the protocol.
            Err(RelayError::Step(StepFailure::Refused { reply, .. })) if reply.code != 421 => {}
            Err(e) => return Err(e),
        }
        self.step(Step::Helo, &format!("HELO {name}\r\n")).await?;
        self.extensions = Extensions::default();
        Ok(())
    }

    /// Send one command line (with CRLF), read the reply, and judge it against `step`:
    /// `Ok` only for the step's positive reply.
    pub async fn step(&mut self, step: Step, line: &str) -> Result<UpstreamReply, RelayError> {
        self.io.wbuf.extend_from_slice(line.as_bytes());
        self.flush(step.name()).await?;
        let r = self.read_reply(step).await?;
        Ok(step.judge(r)?)
    }

    async fn flush(&mut self, stage: &'static str) -> Result<(), RelayError> {
        timeout(self.command_timeout, self.io.flush())
            .await
            .map_err(|_| RelayError::Timeout(self.command_timeout, stage))?
            .map_err(|e| RelayError::Io {
                stage,
                detail: e.to_string(),
            })
    }

    /// Send raw bytes (message data; only through [`NextHopMessage`]).
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        timeout(self.command_timeout, self.io.write_all(bytes))
            .await
            .map_err(|_| RelayError::Timeout(self.command_timeout, "DATA transfer"))?
            .map_err(|e| RelayError::Io {
                stage: "DATA transfer",
                detail: e.to_string(),
            })
    }

    /// Send the rest of the message with the final dot (`last`, only through
    /// [`NextHopMessage::end`]), and read the next hop's verdict on it: `Ok` only for `250`. Anything the next hop sent before the final
    /// dot cannot be its answer to it, and is refused as unsolicited.
    pub(super) async fn end_data(&mut self, last: &[u8]) -> Result<UpstreamReply, RelayError> {
        self.refuse_early_reply().await?;
        self.send(last).await?;
        let r = self.read_reply(Step::EndOfData).await?;
        Ok(Step::EndOfData.judge(r)?)
    }

    /// Look, without waiting, for bytes from the next hop while it should be silent
    /// (it has said `354` and is reading the message).
    async fn refuse_early_reply(&mut self) -> Result<(), RelayError> {
        if self.io.rbuf.is_empty() {
            // A zero timeout still polls the read once: what has arrived is seen, nothing
            // is waited for.
            match timeout(Duration::ZERO, self.io.fill(1024)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => {
                    return Err(RelayError::Io {
                        stage: "DATA transfer",
                        detail: "connection closed".into(),
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(RelayError::Io {
                        stage: "DATA transfer",
                        detail: e.to_string(),
                    });
                }
            }
        }
        Err(RelayError::Unsolicited(format!(
            "the next hop replied before the end of the message: {:?}",
            excerpt(&self.io.rbuf)
        )))
    }

    /// Read one (possibly multi-line) reply to `step`. Bytes after it are an error: the
    /// gateway never pipelines to the next hop, so a second reply is one nobody asked
    /// for (and would otherwise be taken as the answer to the next command).
    async fn read_reply(&mut self, step: Step) -> Result<UpstreamReply, RelayError> {
        let t = self.command_timeout;
        let r = timeout(t, self.read_reply_inner(step.name()))
            .await
            .map_err(|_| RelayError::Timeout(t, step.name()))??;
        if !self.io.rbuf.is_empty() {
            return Err(RelayError::Unsolicited(format!(
                "more than one reply to {step}: {:?} after {}",
                excerpt(&self.io.rbuf),
                r.summary()
            )));
        }
        Ok(r)
    }

    async fn read_reply_inner(&mut self, stage: &'static str) -> Result<UpstreamReply, RelayError> {
        let mut parser = ReplyParser::default();
        loop {
            let line = match self.io.take_line(MAX_REPLY_LINE) {
                Some(Ok(l)) => l,
                Some(Err(LineError::TooLong)) => {
                    return Err(RelayError::Malformed {
                        stage,
                        source: ReplyError::LineTooLong,
                    });
                }
                None => {
                    let n = self.io.fill(1024).await.map_err(|e| RelayError::Io {
                        stage,
                        detail: e.to_string(),
                    })?;
                    if n == 0 {
                        return Err(RelayError::Io {
                            stage,
                            detail: "connection closed".into(),
                        });
                    }
                    continue;
                }
            };
            match parser.line(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(source) => return Err(RelayError::Malformed { stage, source }),
            }
        }
    }

    /// Politely end the session (best effort, short wait).
    pub async fn quit(mut self) {
        self.io.wbuf.extend_from_slice(b"QUIT\r\n");
        let _ = timeout(Duration::from_secs(2), async {
            let _ = self.io.flush().await;
            let _ = self.read_reply_inner("QUIT").await;
        })
        .await;
    }
}

/// The start of some unexpected bytes, printable, for logs.
fn excerpt(bytes: &[u8]) -> String {
    sanitize_text(&String::from_utf8_lossy(&bytes[..bytes.len().min(80)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_command_carries_the_parameters_the_next_hop_supports() {
        let params = MailParams {
            size: Some(1234),
            body_8bit: Some(true),
            smtputf8: true,
        };
        let all = Extensions {
            size: true,
            eight_bit: true,
            smtputf8: true,
            ..Extensions::default()
        };
        assert_eq!(
            all.mail_command("a@b", &params),
            "MAIL FROM:<a@b> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert_eq!(
            Extensions::default().mail_command("a@b", &params),
            "MAIL FROM:<a@b>\r\n"
        );
        let seven_bit = MailParams {
            body_8bit: Some(false),
            ..params
        };
        assert_eq!(
            all.mail_command("", &seven_bit),
            "MAIL FROM:<> SIZE=1234 SMTPUTF8\r\n"
        );
    }
}
