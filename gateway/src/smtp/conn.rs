//! The I/O driver of one SMTP session: reads commands, asks [`super::session`] what is
//! allowed, runs TLS handshakes, authentication and the relay, and writes replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::command::{self, Command, MAX_COMMAND_LINE, MailParams};
use super::data::{DataDecoder, DataEncoder, Progress};
use super::io::{DATA_CHUNK, LineError, LineIo};
use super::monitor;
use super::received::{self, TraceInfo};
use super::reply::{self, Reply};
use super::sasl::{self, Credentials};
use super::session::{Authenticated, Rules, SessionState, TlsInfo, Transaction};
use crate::auth::{Allowance, AuthVerdict, CertificateFacts, CertificateMapping};
use crate::config::{AllowanceAction, PolicyAction};
use crate::metrics::{AuthLabels, ListenerLabels, Metrics, OutcomeLabels, ReasonLabels};
use crate::net::Stream;
use crate::relay::{NextHopConnection, RelayError};
use crate::runtime::{ListenerRuntime, PolicyRuntime};
use crate::tls::verifier::{capture_refusal, handshake_failure_reason};

/// Errors (syntax, unknown commands, refused commands) before the session is dropped.
const MAX_ERRORS: u32 = 20;
/// Commands that do not move mail forward (NOOP, RSET, VRFY, HELP, EHLO) per session.
const MAX_JUNK: u32 = 100;
/// Failed AUTH attempts per session.
const MAX_AUTH_FAILURES: u32 = 3;

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh session id: time-based prefix + counter, unique within the process.
fn session_id() -> String {
    let n = SESSION_SEQ.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:X}{n:06X}")
}

/// What a session shares with the server.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// Metrics.
    pub metrics: Metrics,
    /// Cancelled when the server starts draining (SIGTERM): a session with no
    /// transaction open is closed with `421 4.3.2` once it has been idle for
    /// [`DRAIN_IDLE`]; one with a transaction open may finish it.
    pub draining: CancellationToken,
    /// Cancelled when the shutdown grace period is over: answer `421 4.3.2` and close.
    pub hard_stop: CancellationToken,
}

/// While draining, how long a session with no transaction open may wait for its next
/// command (time for a client to send the QUIT that follows a `250`) before it is
/// closed with `421 4.3.2`.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// How a command handler wants the session to go on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Result of waiting for input.
enum Input {
    Line(BytesMut),
    TooLong,
    Closed,
    Timeout,
    Stopped,
    Failed(std::io::Error),
}

/// One SMTP session.
pub struct Connection {
    io: LineIo,
    listener: Arc<ListenerRuntime>,
    policy: Arc<PolicyRuntime>,
    sender_group: String,
    ctx: SessionContext,
    peer: SocketAddr,
    id: String,
    st: SessionState,
    upstream: Option<NextHopConnection>,
    txn_seq: u32,
    errors: u32,
    junk: u32,
    auth_failures: u32,
    /// The LDAP query behind the current decision (logs).
    query: String,
    /// Commands before authentication, for a Monitor-mode log.
    before_auth: monitor::Recent,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Connection {
    /// A session for an accepted TCP connection.
    pub fn new(
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        listener: Arc<ListenerRuntime>,
        ctx: SessionContext,
    ) -> Self {
        let _ = tcp.set_nodelay(true);
        let (group, policy) = listener.policy_for(peer.ip());
        let (sender_group, policy) = (group.to_owned(), policy.clone());
        Self {
            io: LineIo::new(Stream::Plain(tcp)),
            listener,
            policy,
            sender_group,
            ctx,
            peer,
            id: session_id(),
            st: SessionState::default(),
            upstream: None,
            txn_seq: 0,
            errors: 0,
            junk: 0,
            auth_failures: 0,
            query: String::new(),
            before_auth: monitor::Recent::default(),
        }
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            policy: &self.policy.policy,
            starttls_available: self.policy.tls.is_some()
                && !self.listener.implicit_tls
                && self.policy.policy.tls != crate::config::TlsMode::Disabled,
            auth_available: self
                .listener
                .auth
                .as_ref()
                .is_some_and(|a| a.smtp_auth.is_some()),
            hostname: &self.listener.hostname,
        }
    }

    fn profile_name(&self) -> &str {
        self.listener
            .auth
            .as_ref()
            .map(|a| a.profile.as_str())
            .unwrap_or("")
    }

    /// One structured decision log line with the session's context.
    fn decision(&self, decision: &str, outcome: &str, reason: &str) {
        let cert = self.st.cert.as_ref();
        info!(
            target: "postern::decision",
            session = %self.id,
            listener = %self.listener.name,
            client_ip = %self.peer.ip(),
            client_port = self.peer.port(),
            sender_group = %self.sender_group,
            policy = %self.policy.name,
            profile = %self.profile_name(),
            tls = %self.st.tls.as_ref().map(|t| t.version.as_str()).unwrap_or("none"),
            cert_subject = %cert.map(|c| c.subject.as_str()).unwrap_or(""),
            cert_serial = %cert.map(|c| c.serial_hex.as_str()).unwrap_or(""),
            cert_issuer = %cert.map(|c| c.issuer.as_str()).unwrap_or(""),
            user = %self.st.auth.as_ref().map(|a| a.user.as_str()).unwrap_or(""),
            auth_method = %self.st.auth.as_ref().map(|a| a.method).unwrap_or(""),
            query = %self.query,
            decision,
            outcome,
            reason,
        );
    }

    fn listener_labels(&self) -> ListenerLabels {
        ListenerLabels {
            listener: self.listener.name.clone(),
        }
    }

    fn count_message(&self, outcome: &str) {
        self.ctx
            .metrics
            .messages
            .get_or_create(&OutcomeLabels {
                listener: self.listener.name.clone(),
                outcome: outcome.into(),
            })
            .inc();
    }

    fn reply(&mut self, r: &Reply) {
        if r.code >= 400 {
            self.ctx
                .metrics
                .refusals
                .get_or_create(&ReasonLabels {
                    listener: self.listener.name.clone(),
                    outcome: r.code.to_string(),
                    reason: r.enhanced.as_deref().unwrap_or("").to_owned(),
                })
                .inc();
        }
        r.write_to(&mut self.io.wbuf);
    }

    /// Refuse a command: reply, count an error, and close after too many.
    fn refuse(&mut self, r: &Reply) -> Flow {
        self.reply(r);
        if r.closes() {
            return Flow::Close;
        }
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            self.decision("session", "closed", "too many errors");
            self.reply(&Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    /// Run the session to its end.
    pub async fn run(mut self) {
        let started = Instant::now();
        let flow = self.open().await;
        if flow == Flow::Continue {
            self.command_loop().await;
        }
        let _ = timeout(Duration::from_secs(5), self.io.flush()).await;
        if let Some(up) = self.upstream.take() {
            up.quit().await;
        }
        let _ = timeout(
            Duration::from_secs(2),
            tokio::io::AsyncWriteExt::shutdown(&mut self.io.stream),
        )
        .await;
        debug!(session = %self.id, duration_ms = started.elapsed().as_millis() as u64, "session closed");
    }

    async fn open(&mut self) -> Flow {
        // On an SMTPS listener even the refusal must be spoken over TLS.
        let reject = self.policy.policy.action == PolicyAction::Reject;
        if reject && self.listener.implicit_tls && !self.handshake().await {
            return Flow::Close;
        }
        if reject {
            self.decision("connect", "rejected", "mail flow policy action Reject");
            self.ctx
                .metrics
                .connections
                .get_or_create(&OutcomeLabels {
                    listener: self.listener.name.clone(),
                    outcome: "policy_reject".into(),
                })
                .inc();
            self.reply(&reply::policy_reject());
            return Flow::Close;
        }
        self.ctx
            .metrics
            .connections
            .get_or_create(&OutcomeLabels {
                listener: self.listener.name.clone(),
                outcome: "accepted".into(),
            })
            .inc();
        self.decision("connect", "accepted", "host access table");
        if self.listener.implicit_tls && !self.handshake().await {
            return Flow::Close;
        }
        let greeting = Reply::plain(220, format!("{} ESMTP Postern", self.listener.hostname));
        self.reply(&greeting);
        Flow::Continue
    }

    /// Wait for the next line (flushing pending replies first).
    /// `between_transactions`: no transaction is open, so a drain may close the session
    /// (`Input::Stopped`) once it has been idle for [`DRAIN_IDLE`].
    async fn next_line(&mut self, limit: usize, between_transactions: bool) -> Input {
        // One deadline for the whole line, not per read: a client trickling a byte at a
        // time (slowloris) must not hold its connection slot past the command timeout.
        let deadline = tokio::time::Instant::now() + self.listener.command_timeout;
        loop {
            if let Some(r) = self.io.take_line(limit) {
                return match r {
                    Ok(line) => Input::Line(line),
                    Err(LineError::TooLong) => Input::TooLong,
                    Err(LineError::Eof) => Input::Closed,
                    Err(LineError::Io(e)) => Input::Failed(e),
                };
            }
            if let Err(e) = self.io.flush().await {
                return Input::Failed(e);
            }
            let drain_closes = between_transactions && self.ctx.draining.is_cancelled();
            let until = if drain_closes {
                deadline.min(tokio::time::Instant::now() + DRAIN_IDLE)
            } else {
                deadline
            };
            tokio::select! {
                _ = self.ctx.hard_stop.cancelled() => return Input::Stopped,
                // The drain began while waiting: wait again with the drain's deadline.
                _ = self.ctx.draining.cancelled(), if between_transactions && !drain_closes => {}
                r = tokio::time::timeout_at(until, self.io.fill(1024)) => match r {
                    Err(_) if drain_closes => return Input::Stopped,
                    Err(_) => return Input::Timeout,
                    Ok(Ok(0)) => return Input::Closed,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Input::Failed(e),
                },
            }
        }
    }

    async fn command_loop(&mut self) {
        loop {
            let between_transactions = self.st.txn.is_none();
            let line = match self.next_line(MAX_COMMAND_LINE, between_transactions).await {
                Input::Line(l) => l,
                Input::TooLong => {
                    if self.refuse(&Reply::new(500, "5.5.2", "Line too long")) == Flow::Close {
                        return;
                    }
                    continue;
                }
                Input::Closed => {
                    if self.st.txn.is_some() {
                        self.decision(
                            "session",
                            "aborted",
                            "client closed the connection during a transaction",
                        );
                    }
                    return;
                }
                Input::Timeout => {
                    self.decision("session", "closed", "idle timeout");
                    self.reply(&reply::idle_timeout());
                    return;
                }
                Input::Stopped => {
                    let why = if self.ctx.hard_stop.is_cancelled() {
                        "shutdown grace period over"
                    } else {
                        "shutting down: no transaction in progress"
                    };
                    self.decision("session", "closed", why);
                    self.reply(&reply::shutting_down());
                    return;
                }
                Input::Failed(e) => {
                    debug!(session = %self.id, error = %e, "read failed");
                    return;
                }
            };
            let parsed = command::parse(&line);
            if self.st.monitor {
                self.monitor_log(&monitor::shown(&line), false);
            } else if self.st.auth.is_none() {
                // Kept until the session authenticates: if AUTH puts it in Monitor mode,
                // the commands that led there are logged too ("the session in full").
                self.before_auth.push(&line);
            }
            let flow = match parsed {
                Err(e) => self.refuse(&e.reply()),
                Ok(cmd) => self.dispatch(cmd).await,
            };
            if self.st.monitor && !self.before_auth.is_empty() {
                for shown in self.before_auth.take() {
                    self.monitor_log(&shown, true);
                }
            } else if self.st.auth.is_some() {
                self.before_auth.clear();
            }
            if flow == Flow::Close {
                return;
            }
        }
    }

    /// One `postern::monitor` line: a command of a session in Monitor mode, as the client
    /// sent it (AUTH credentials masked). `before_auth` marks the commands that came
    /// before the AUTH that decided Monitor.
    fn monitor_log(&self, command: &str, before_auth: bool) {
        info!(
            target: "postern::monitor",
            session = %self.id,
            listener = %self.listener.name,
            user = %self.st.auth.as_ref().map(|a| a.user.as_str()).unwrap_or(""),
            client_ip = %self.peer.ip(),
            command = %command,
            before_auth,
            "monitored session command"
        );
    }

    fn junk(&mut self) -> Flow {
        self.junk += 1;
        if self.junk > MAX_JUNK {
            self.decision("session", "closed", "too many non-mail commands");
            self.reply(&Reply::new(
                421,
                "4.7.0",
                "Too many commands, closing connection",
            ));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn dispatch(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Ehlo(name) => {
                self.abort_transaction().await;
                self.st.helo = Some(name);
                self.st.esmtp = true;
                let r = self.st.ehlo_reply(&self.rules());
                self.reply(&r);
                self.junk()
            }
            Command::Helo(name) => {
                self.abort_transaction().await;
                self.st.helo = Some(name);
                self.st.esmtp = false;
                let r = Reply::plain(250, self.listener.hostname.clone());
                self.reply(&r);
                self.junk()
            }
            Command::StartTls => self.starttls().await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to } => self.rcpt(to).await,
            Command::Data => self.data().await,
            Command::Rset => {
                self.abort_transaction().await;
                self.reply(&Reply::new(250, "2.0.0", "Ok"));
                self.junk()
            }
            Command::Noop => {
                self.reply(&Reply::new(250, "2.0.0", "Ok"));
                self.junk()
            }
            Command::Vrfy => {
                self.reply(&Reply::new(
                    252,
                    "2.5.2",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                self.junk()
            }
            Command::Help => {
                self.reply(&Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
                ));
                self.junk()
            }
            Command::Quit => {
                self.reply(&Reply::new(221, "2.0.0", "Bye"));
                Flow::Close
            }
        }
    }

    // --- TLS ---------------------------------------------------------------------------

    async fn starttls(&mut self) -> Flow {
        if let Err(r) = self.st.check_starttls(&self.rules()) {
            return self.refuse(&r);
        }
        self.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        if self.io.flush().await.is_err() {
            return Flow::Close;
        }
        let discarded = self.io.discard_input();
        if discarded > 0 {
            self.decision(
                "starttls",
                "discarded",
                &format!("{discarded} bytes of plaintext pipelined after STARTTLS"),
            );
        }
        self.abort_transaction().await;
        self.st.reset_for_tls();
        if self.handshake().await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// Run the server handshake on the plain stream; false closes the session.
    async fn handshake(&mut self) -> bool {
        let Some(config) = self.policy.tls.clone() else {
            self.decision(
                "tls",
                "failed",
                "no TLS configuration for this listener and policy",
            );
            return false;
        };
        let Some(tcp) = self.io.stream.take_plain() else {
            return false;
        };
        let acceptor = TlsAcceptor::from(config);
        let t = self.listener.command_timeout;
        let handshake = capture_refusal(timeout(t, acceptor.accept(tcp)));
        let (result, refusal) = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => return false,
            r = handshake => r,
        };
        let labels = |outcome: &str, reason: &str| ReasonLabels {
            listener: self.listener.name.clone(),
            outcome: outcome.into(),
            reason: reason.into(),
        };
        let tls = match result {
            Err(_) => {
                self.ctx
                    .metrics
                    .tls_handshakes
                    .get_or_create(&labels("failed", "timeout"))
                    .inc();
                self.decision("tls", "failed", "handshake timeout");
                return false;
            }
            Ok(Err(e)) => {
                let reason = handshake_failure_reason(&e);
                self.ctx
                    .metrics
                    .tls_handshakes
                    .get_or_create(&labels("failed", reason))
                    .inc();
                // Name the refused certificate and why (the error only carries the alert).
                let detail = match refusal {
                    Some(r) => {
                        self.st.cert = CertificateFacts::from_der(&r.end_entity).ok();
                        r.failure.detail
                    }
                    None => e.to_string(),
                };
                self.decision("tls", "failed", &format!("{reason}: {detail}"));
                return false;
            }
            Ok(Ok(tls)) => tls,
        };
        let (_, conn) = tls.get_ref();
        let info = TlsInfo {
            version: conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .replace('_', "."),
            cipher: conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_owned(),
        };
        let chain: Option<Vec<CertificateDer<'static>>> = conn
            .peer_certificates()
            .filter(|c| !c.is_empty())
            .map(|c| c.to_vec());
        self.io.stream = Stream::ServerTls(Box::new(tls));
        self.st.tls = Some(info);
        self.ctx
            .metrics
            .tls_handshakes
            .get_or_create(&labels(
                "ok",
                if chain.is_some() {
                    "client_certificate"
                } else {
                    "no_client_certificate"
                },
            ))
            .inc();
        self.decision(
            "tls",
            "established",
            &format!(
                "cipher {}",
                self.st
                    .tls
                    .as_ref()
                    .map(|t| t.cipher.as_str())
                    .unwrap_or("")
            ),
        );
        if let Some(chain) = chain {
            self.client_certificate(&chain).await;
        }
        true
    }

    fn cert_metric(&self, outcome: &str, reason: &str) {
        self.ctx
            .metrics
            .client_certificates
            .get_or_create(&ReasonLabels {
                listener: self.listener.name.clone(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// A client certificate was presented: check it (lenient mode) and map it to a user.
    async fn client_certificate(&mut self, chain: &[CertificateDer<'static>]) {
        let Some(verifier) = self.policy.verifier.clone() else {
            return;
        };
        if !verifier.enforcing()
            && let Err(f) = verifier.verify_chain(&chain[0], &chain[1..], UnixTime::now())
        {
            self.cert_metric("invalid_ignored", f.reason);
            self.decision(
                "certificate",
                "ignored",
                &format!("invalid certificate ignored ({}): {}", f.reason, f.detail),
            );
            return;
        }
        match CertificateFacts::from_der(&chain[0]) {
            Ok(facts) => self.st.cert = Some(facts),
            Err(e) => {
                self.cert_metric("invalid_ignored", "unreadable");
                self.decision("certificate", "ignored", &e.to_string());
                return;
            }
        }
        self.decision(
            "certificate",
            "valid",
            "chain, validity and revocation verified",
        );
        self.map_certificate().await;
    }

    async fn map_certificate(&mut self) {
        let Some(mapper) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.certificate.clone())
        else {
            self.cert_metric("valid_unmapped", "no_certificate_profile");
            return;
        };
        let Some(facts) = self.st.cert.clone() else {
            return;
        };
        let auth_metric = |s: &Self, outcome: &str| {
            s.ctx
                .metrics
                .auth
                .get_or_create(&AuthLabels {
                    listener: s.listener.name.clone(),
                    profile: s.profile_name().to_owned(),
                    method: "certificate".into(),
                    outcome: outcome.into(),
                })
                .inc();
        };
        self.st.cert_mapping_failed = false;
        self.query = self
            .listener
            .auth
            .as_ref()
            .map(|a| a.certificate_query.clone())
            .unwrap_or_default();
        match mapper.map(&facts).await {
            Ok(CertificateMapping::Mapped { user_id, dn }) => {
                self.st.auth = Some(Authenticated {
                    user: user_id,
                    method: "certificate",
                });
                self.cert_metric("mapped", "found");
                auth_metric(self, "success");
                self.decision(
                    "certificate_auth",
                    "authenticated",
                    &format!(
                        "certificate mapped to one entry{}",
                        dn.map(|d| format!(" ({d})")).unwrap_or_default()
                    ),
                );
            }
            Ok(CertificateMapping::NotFound) => {
                self.cert_metric("not_found", "no_entry");
                auth_metric(self, "not_found");
                self.decision(
                    "certificate_auth",
                    "not_authenticated",
                    "no user found for the certificate",
                );
            }
            Ok(CertificateMapping::Ambiguous { count }) => {
                self.cert_metric("ambiguous", "several_entries");
                auth_metric(self, "ambiguous");
                self.decision(
                    "certificate_auth",
                    "not_authenticated",
                    &format!("{count} users match the certificate"),
                );
            }
            Err(e) => {
                self.st.cert_mapping_failed = true;
                self.cert_metric("error", "directory");
                auth_metric(self, "temp_fail");
                self.decision("certificate_auth", "temp_fail", &e.to_string());
            }
        }
    }

    // --- AUTH --------------------------------------------------------------------------

    async fn auth(&mut self, mechanism: String, initial: Option<String>) -> Flow {
        if let Err(r) = self.st.check_auth(&self.rules()) {
            self.decision("auth", "refused", &r.summary());
            return self.refuse(&r);
        }
        let Some(smtp) = self
            .listener
            .auth
            .as_ref()
            .and_then(|a| a.smtp_auth.clone())
        else {
            return self.refuse(&Reply::new(503, "5.5.1", "Authentication not enabled"));
        };
        let method: &'static str = match mechanism.as_str() {
            "PLAIN" => "PLAIN",
            "LOGIN" => "LOGIN",
            _ => {
                return self.refuse(&Reply::new(
                    504,
                    "5.5.4",
                    "Unrecognized authentication type",
                ));
            }
        };
        self.query = smtp.query.clone();
        let creds = if method == "PLAIN" {
            self.sasl_plain(initial).await
        } else {
            self.sasl_login(initial).await
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(Some(r)) => return self.refuse(&r),
            Err(None) => return Flow::Close,
        };
        let labels = |outcome: &str| AuthLabels {
            listener: self.listener.name.clone(),
            profile: smtp.profile.clone(),
            method: method.into(),
            outcome: outcome.into(),
        };
        let verdict = tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => {
                self.reply(&reply::shutting_down());
                return Flow::Close;
            }
            v = smtp.authenticator.authenticate(&user, &password) => v,
        };
        let shown_user = received::sanitize(&user, 128);
        match verdict {
            Err(e) => {
                self.ctx
                    .metrics
                    .auth
                    .get_or_create(&labels("temp_fail"))
                    .inc();
                self.decision(
                    "auth",
                    "temp_fail",
                    &format!(
                        "user {shown_user} via {method} (profile {}): {e}",
                        smtp.profile
                    ),
                );
                self.reply(&reply::temporary_auth_failure());
                Flow::Continue
            }
            Ok(AuthVerdict::InvalidCredentials { reason }) => {
                self.ctx
                    .metrics
                    .auth
                    .get_or_create(&labels("invalid"))
                    .inc();
                self.decision(
                    "auth",
                    "invalid",
                    &format!(
                        "user {shown_user} via {method} (profile {}): {reason}",
                        smtp.profile
                    ),
                );
                self.auth_failures += 1;
                self.reply(&reply::invalid_credentials());
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.reply(&Reply::new(
                        421,
                        "4.7.0",
                        "Too many failed authentication attempts",
                    ));
                    return Flow::Close;
                }
                Flow::Continue
            }
            Ok(AuthVerdict::Authenticated { user_id, allowance }) => {
                let action = smtp.allowance.as_ref().map(|a| a.action);
                match (allowance, action) {
                    (Allowance::Denied, Some(AllowanceAction::Reject)) => {
                        let resp = smtp
                            .allowance
                            .as_ref()
                            .map(|a| a.response.clone())
                            .unwrap_or_default();
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("not_allowed"))
                            .inc();
                        self.decision("auth", "not_allowed", &format!("user {shown_user} via {method} (profile {}): allowance query did not match, action Reject", smtp.profile));
                        let r = Reply::custom(resp.code, Some(resp.enhanced_code), &resp.text);
                        self.reply(&r);
                        Flow::Continue
                    }
                    (Allowance::Denied, _) => {
                        self.st.auth = Some(Authenticated {
                            user: user_id,
                            method,
                        });
                        self.st.monitor = true;
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("monitored"))
                            .inc();
                        self.decision("auth", "authenticated_monitored", &format!("via {method} (profile {}): allowance query did not match, action Monitor: every command of this session is logged", smtp.profile));
                        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                        Flow::Continue
                    }
                    (Allowance::Allowed | Allowance::NotChecked, _) => {
                        self.st.auth = Some(Authenticated {
                            user: user_id,
                            method,
                        });
                        self.ctx
                            .metrics
                            .auth
                            .get_or_create(&labels("success"))
                            .inc();
                        self.decision(
                            "auth",
                            "authenticated",
                            &format!("via {method} (profile {})", smtp.profile),
                        );
                        self.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                        Flow::Continue
                    }
                }
            }
        }
    }

    /// Read one SASL response line. `Err(None)`: the connection is gone.
    async fn sasl_line(&mut self, challenge: &'static str) -> Result<Vec<u8>, Option<Reply>> {
        self.reply(&Reply::plain(334, challenge));
        match self.next_line(MAX_COMMAND_LINE, false).await {
            Input::Line(l) => sasl::decode_response(&l).map_err(|e| Some(e.reply())),
            Input::TooLong => Err(Some(Reply::new(
                500,
                "5.5.6",
                "Authentication exchange line is too long",
            ))),
            Input::Timeout => {
                self.reply(&reply::idle_timeout());
                Err(None)
            }
            Input::Stopped => {
                self.reply(&reply::shutting_down());
                Err(None)
            }
            Input::Closed | Input::Failed(_) => Err(None),
        }
    }

    async fn sasl_plain(
        &mut self,
        initial: Option<String>,
    ) -> Result<(String, String), Option<Reply>> {
        let raw = match initial {
            Some(i) => sasl::decode_response(i.as_bytes()).map_err(|e| Some(e.reply()))?,
            None => self.sasl_line("").await?,
        };
        let Credentials { user, password } =
            sasl::parse_plain(&raw).map_err(|e| Some(e.reply()))?;
        Ok((user, password))
    }

    async fn sasl_login(
        &mut self,
        initial: Option<String>,
    ) -> Result<(String, String), Option<Reply>> {
        let user = match initial {
            Some(i) => sasl::decode_response(i.as_bytes()).map_err(|e| Some(e.reply()))?,
            None => self.sasl_line("VXNlcm5hbWU6").await?,
        };
        let password = self.sasl_line("UGFzc3dvcmQ6").await?;
        let user = sasl::credential(&user).map_err(|e| Some(e.reply()))?;
        let password = sasl::credential(&password).map_err(|e| Some(e.reply()))?;
        Ok((user, password))
    }

    // --- Transactions --------------------------------------------------------------------

    /// Forget the open transaction, and reset it at the next hop too.
    async fn abort_transaction(&mut self) {
        if self.st.txn.take().is_some()
            && let Some(up) = self.upstream.as_mut()
        {
            match up.command("RSET\r\n", "RSET").await {
                Ok(r) if r.code == 250 => {}
                _ => self.upstream = None,
            }
        }
    }

    fn relay_failed(&mut self, stage: &str, e: &RelayError) -> Reply {
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

    async fn mail(&mut self, from: String, params: MailParams) -> Flow {
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

    async fn rcpt(&mut self, to: String) -> Flow {
        if let Err(r) = self.st.check_rcpt(&self.rules()) {
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

    async fn data(&mut self) -> Flow {
        if let Err(r) = self.st.check_data() {
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
    async fn receive_and_relay(&mut self) -> Flow {
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
