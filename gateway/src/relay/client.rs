//! The SMTP client side: one connection to the next hop.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::NextHopRuntime;
use crate::config::TlsMode;
use crate::net::Stream;
use crate::smtp::io::{LineError, LineIo};
use crate::smtp::reply::{Reply, sanitize_text};

/// Longest reply line accepted from the next hop.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply (EHLO lists are the longest).
const MAX_REPLY_LINES: usize = 64;

/// A reply from the next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamReply {
    /// Reply code.
    pub code: u16,
    /// Enhanced status code, when the next hop sent one.
    pub enhanced: Option<String>,
    /// Text of every line, without code and enhanced code.
    pub lines: Vec<String>,
}

impl UpstreamReply {
    /// The first line's text.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }

    /// For logs: `250 2.0.0 Ok`.
    pub fn summary(&self) -> String {
        match &self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, self.text()),
            None => format!("{} {}", self.code, self.text()),
        }
    }

    /// The reply to give the client for this next-hop reply: `ok` on success, a
    /// permanent refusal passed through, `451 4.4.1` for a temporary one.
    pub fn to_client(&self, ok: Reply) -> Reply {
        match self.code {
            200..=399 => ok,
            500..=599 => Reply::custom(
                self.code,
                Some(self.enhanced.clone().unwrap_or_else(|| "5.0.0".into())),
                &format!("Next hop: {}", self.text()),
            ),
            _ => Reply::custom(
                451,
                Some("4.4.1".into()),
                &format!(
                    "Next hop temporarily refused: {} {}",
                    self.code,
                    self.text()
                ),
            ),
        }
    }
}

/// Why talking to the next hop failed (all map to `451 4.4.1` for the client).
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
    /// The next hop said something that is not SMTP.
    #[error("next hop protocol error: {0}")]
    Protocol(String),
    /// The next hop refused the session itself (greeting or EHLO).
    #[error("next hop refused the session: {}", .0.summary())]
    Refused(UpstreamReply),
    /// `tls: Required` but the next hop does not offer STARTTLS.
    #[error("next hop does not offer STARTTLS, which nextHop.tls Required demands")]
    TlsUnavailable,
    /// The TLS handshake failed.
    #[error("TLS handshake with next hop failed: {0}")]
    Tls(String),
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
}

impl Extensions {
    fn parse(reply: &UpstreamReply) -> Self {
        let mut e = Self::default();
        for line in reply.lines.iter().skip(1) {
            let kw = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match kw.as_str() {
                "SIZE" => e.size = true,
                "8BITMIME" => e.eight_bit = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "STARTTLS" => e.starttls = true,
                "PIPELINING" => e.pipelining = true,
                _ => {}
            }
        }
        e
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
    command_timeout: Duration,
}

impl NextHopConnection {
    /// Connect, read the greeting, EHLO (HELO as a fallback) and STARTTLS as configured.
    pub async fn connect(rt: &NextHopRuntime) -> Result<Self, RelayError> {
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
            command_timeout: rt.command_timeout,
        };
        let greeting = conn.read_reply("greeting").await?;
        if greeting.code != 220 {
            return Err(RelayError::Refused(greeting));
        }
        conn.ehlo(&rt.helo_name).await?;
        let want_tls = match rt.tls {
            TlsMode::Disabled => false,
            TlsMode::Preferred => conn.extensions.starttls,
            TlsMode::Required if conn.extensions.starttls => true,
            TlsMode::Required => return Err(RelayError::TlsUnavailable),
        };
        if want_tls {
            let r = conn.command("STARTTLS\r\n", "STARTTLS").await?;
            if r.code != 220 {
                if rt.tls == TlsMode::Required {
                    return Err(RelayError::Refused(r));
                }
            } else {
                let tcp = conn
                    .io
                    .stream
                    .take_plain()
                    .ok_or_else(|| RelayError::Protocol("stream not plain".into()))?;
                conn.io.discard_input();
                let connector = TlsConnector::from(rt.tls_config.clone());
                let tls = timeout(
                    rt.command_timeout,
                    connector.connect(rt.server_name.clone(), tcp),
                )
                .await
                .map_err(|_| RelayError::Timeout(rt.command_timeout, "TLS handshake"))?
                .map_err(|e| RelayError::Tls(e.to_string()))?;
                let (_, c) = tls.get_ref();
                conn.tls = Some((
                    c.protocol_version()
                        .and_then(|v| v.as_str())
                        .unwrap_or("TLS")
                        .to_owned(),
                    c.negotiated_cipher_suite()
                        .and_then(|s| s.suite().as_str())
                        .unwrap_or("unknown")
                        .to_owned(),
                ));
                conn.io.stream = Stream::ClientTls(Box::new(tls));
                conn.ehlo(&rt.helo_name).await?;
            }
        }
        Ok(conn)
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), RelayError> {
        let r = self.command(&format!("EHLO {name}\r\n"), "EHLO").await?;
        if r.code == 250 {
            self.extensions = Extensions::parse(&r);
            return Ok(());
        }
        if r.code == 421 {
            return Err(RelayError::Refused(r));
        }
        let r = self.command(&format!("HELO {name}\r\n"), "HELO").await?;
        if r.code != 250 {
            return Err(RelayError::Refused(r));
        }
        self.extensions = Extensions::default();
        Ok(())
    }

    /// Send one command line (with CRLF) and read the reply.
    pub async fn command(
        &mut self,
        line: &str,
        stage: &'static str,
    ) -> Result<UpstreamReply, RelayError> {
        self.io.wbuf.extend_from_slice(line.as_bytes());
        self.flush(stage).await?;
        self.read_reply(stage).await
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

    /// Send raw bytes (message data).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        timeout(self.command_timeout, self.io.write_all(bytes))
            .await
            .map_err(|_| RelayError::Timeout(self.command_timeout, "DATA transfer"))?
            .map_err(|e| RelayError::Io {
                stage: "DATA transfer",
                detail: e.to_string(),
            })
    }

    /// Read one (possibly multi-line) reply.
    pub async fn read_reply(&mut self, stage: &'static str) -> Result<UpstreamReply, RelayError> {
        let t = self.command_timeout;
        timeout(t, self.read_reply_inner(stage))
            .await
            .map_err(|_| RelayError::Timeout(t, stage))?
    }

    async fn read_reply_inner(&mut self, stage: &'static str) -> Result<UpstreamReply, RelayError> {
        let mut code = None;
        let mut enhanced = None;
        let mut lines = Vec::new();
        loop {
            let line = match self.io.take_line(MAX_REPLY_LINE) {
                Some(Ok(l)) => l,
                Some(Err(LineError::TooLong)) => {
                    return Err(RelayError::Protocol("reply line too long".into()));
                }
                Some(Err(e)) => {
                    return Err(RelayError::Io {
                        stage,
                        detail: format!("{e:?}"),
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
            let text = String::from_utf8_lossy(&line);
            let (c, more, rest) = parse_reply_line(&text).ok_or_else(|| {
                RelayError::Protocol(format!("malformed reply line {:?}", sanitize_text(&text)))
            })?;
            if *code.get_or_insert(c) != c {
                return Err(RelayError::Protocol(
                    "reply code changed within a multi-line reply".into(),
                ));
            }
            let rest = match split_enhanced(rest, c) {
                Some((e, r)) => {
                    enhanced.get_or_insert_with(|| e.to_owned());
                    r
                }
                None => rest,
            };
            lines.push(rest.to_owned());
            if lines.len() > MAX_REPLY_LINES {
                return Err(RelayError::Protocol("reply has too many lines".into()));
            }
            if !more {
                return Ok(UpstreamReply {
                    code: c,
                    enhanced,
                    lines,
                });
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

/// `250-text` → (250, true, "text"); `250 text` → (250, false, "text").
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line[..3].parse().ok()?;
    if !(200..=599).contains(&code) {
        return None;
    }
    match b.get(3) {
        None => Some((code, false, "")),
        Some(b' ') => Some((code, false, &line[4..])),
        Some(b'-') => Some((code, true, &line[4..])),
        _ => None,
    }
}

/// Split a leading enhanced status code whose class matches the reply code.
fn split_enhanced(text: &str, code: u16) -> Option<(&str, &str)> {
    let (first, rest) = match text.find(' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let parts: Vec<&str> = first.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == (code / 100).to_string();
    ok.then_some((first, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-PIPELINING"),
            Some((250, true, "PIPELINING"))
        );
        assert_eq!(parse_reply_line("250 ok"), Some((250, false, "ok")));
        assert_eq!(parse_reply_line("354"), Some((354, false, "")));
        assert_eq!(parse_reply_line("25x ok"), None);
        assert_eq!(parse_reply_line("hello"), None);
        assert_eq!(
            split_enhanced("5.1.1 no such user", 550),
            Some(("5.1.1", "no such user"))
        );
        assert_eq!(split_enhanced("4.1.1 x", 550), None);
        assert_eq!(split_enhanced("Ok", 250), None);
    }

    #[test]
    fn client_replies() {
        let up = |code, enh: Option<&str>, text: &str| UpstreamReply {
            code,
            enhanced: enh.map(str::to_owned),
            lines: vec![text.to_owned()],
        };
        let ok = Reply::new(250, "2.1.5", "Ok");
        assert_eq!(up(250, None, "x").to_client(ok.clone()), ok);
        let r = up(550, Some("5.1.1"), "no such user").to_client(ok.clone());
        assert_eq!(r.summary(), "550 5.1.1 Next hop: no such user");
        let r = up(450, Some("4.2.0"), "greylisted").to_client(ok);
        assert_eq!((r.code, r.enhanced.as_deref()), (451, Some("4.4.1")));
    }
}
