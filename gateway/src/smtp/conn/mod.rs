//! The I/O driver of one SMTP session: reads commands, asks [`super::session`] what is
//! allowed, runs TLS handshakes, authentication and the relay, and writes replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::command::{self, Command, MAX_COMMAND_LINE};
use super::monitor;
use super::session::{Rules, SessionState};
use crate::auth::CertificateFactsCache;
use crate::metrics::{
    ListenerLabels, MessageLabels, MessageOutcome, Metrics, OutcomeLabels, ReasonLabels,
};
use crate::net::Stream;
use crate::relay::NextHopConnection;
use crate::runtime::{ListenerRuntime, PolicyRuntime};
use crate::wire::io::{LineError, LineIo};
use crate::wire::reply::{self, Reply};
use postern_config::{AllowanceAction, PolicyAction};

mod auth;
mod body;
mod external;
mod mail;
mod outcome;
pub(crate) mod sender;
mod tls;

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
    /// Client certificates already read.
    pub cert_facts: Arc<CertificateFactsCache>,
}

/// While draining, how long a session with no transaction open may wait for its next
/// command (time for a client to send the QUIT that follows a `250`) before it is
/// closed with `421 4.3.2`.
pub(crate) const DRAIN_IDLE: Duration = Duration::from_secs(1);

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
    /// Until the client has said EHLO/HELO (after the greeting, and again after a STARTTLS
    /// handshake): when it must have, at the latest (`timeouts.greeting`).
    greeting_deadline: Option<tokio::time::Instant>,
    txn_seq: u32,
    errors: u32,
    junk: u32,
    auth_failures: u32,
    /// The LDAP query behind the current decision (logs).
    query: String,
    /// Commands before authentication, for a Monitor-mode log.
    before_auth: monitor::Recent,
    /// The trusted proxy the connection came through (PROXY protocol); `peer` is then
    /// the client its header named.
    proxy: Option<SocketAddr>,
    /// Whether the first line must be checked for a PROXY header: the listener takes them,
    /// but not from this peer (outside `proxyProtocol.trustedCidrs`).
    sniff_proxy: bool,
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
            greeting_deadline: None,
            txn_seq: 0,
            errors: 0,
            junk: 0,
            auth_failures: 0,
            query: String::new(),
            before_auth: monitor::Recent::default(),
            proxy: None,
            sniff_proxy: false,
        }
    }

    /// The connection came through this trusted proxy (`None`: directly). Without one, on
    /// a listener with PROXY protocol, a header sent as the first line is refused.
    pub fn via_proxy(mut self, proxy: Option<SocketAddr>) -> Self {
        self.sniff_proxy = proxy.is_none() && self.listener.proxy_protocol.is_some();
        self.proxy = proxy;
        self
    }

    /// Bytes already read off the connection (those a trusted proxy's client sent right
    /// after the PROXY header) become the start of the session's input.
    pub(crate) fn with_input(mut self, input: bytes::BytesMut) -> Self {
        self.io.rbuf = input;
        self
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            policy: &self.policy.policy,
            starttls_available: self.policy.tls.is_some()
                && !self.listener.implicit_tls
                && self.policy.policy.tls != postern_config::TlsMode::Disabled,
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
            proxy_ip = %MaybeIp(self.proxy.map(|p| p.ip())),
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

    fn count_message(&self, outcome: MessageOutcome) {
        self.ctx
            .metrics
            .messages
            .get_or_create(&MessageLabels {
                listener: self.listener.name.clone(),
                outcome,
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
        self.expect_greeting();
        Flow::Continue
    }

    /// Start the `timeouts.greeting` deadline: the client must say EHLO/HELO by then. A
    /// client that connects and says nothing (or anything else) gives its connection slot
    /// back after this much, not after the longer command timeout.
    fn expect_greeting(&mut self) {
        self.greeting_deadline = Some(tokio::time::Instant::now() + self.listener.greeting_timeout);
    }

    /// Wait for the next line (flushing pending replies first).
    /// `between_transactions`: no transaction is open, so a drain may close the session
    /// (`Input::Stopped`) once it has been idle for [`DRAIN_IDLE`].
    async fn next_line(&mut self, limit: usize, between_transactions: bool) -> Input {
        // One deadline for the whole line, not per read: a client trickling a byte at a
        // time (slowloris) must not hold its connection slot past the command timeout.
        // Before EHLO/HELO the greeting deadline, fixed at the greeting, may come sooner.
        let mut deadline = tokio::time::Instant::now() + self.listener.command_timeout;
        if let Some(greeting) = self.greeting_deadline {
            deadline = deadline.min(greeting);
        }
        loop {
            if let Some(r) = self.io.take_line(limit) {
                return match r {
                    Ok(line) => Input::Line(line),
                    Err(LineError::TooLong) => Input::TooLong,
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
                    let greeting_over = self
                        .greeting_deadline
                        .is_some_and(|d| d <= tokio::time::Instant::now());
                    let why = if greeting_over {
                        format!(
                            "no EHLO/HELO within timeouts.greeting ({:?})",
                            self.listener.greeting_timeout
                        )
                    } else {
                        "idle timeout".to_owned()
                    };
                    self.decision("session", "closed", &why);
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
            if std::mem::take(&mut self.sniff_proxy)
                && crate::proxy_header::sniff(&line, &self.io.rbuf)
            {
                self.decision(
                    "connect",
                    "rejected",
                    "PROXY header from a peer outside proxyProtocol.trustedCidrs",
                );
                self.ctx
                    .metrics
                    .connections
                    .get_or_create(&OutcomeLabels {
                        listener: self.listener.name.clone(),
                        outcome: "proxy_refused".into(),
                    })
                    .inc();
                self.reply(&reply::proxy_protocol_refused());
                return;
            }
            let parsed = command::parse(&line);
            if self.st.monitor {
                self.monitor_log(&monitor::shown(&line), false);
            } else if self.st.auth.is_none() && self.may_monitor() {
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

    /// Whether SMTP AUTH on this listener can put a session in Monitor mode (only then are
    /// the commands before AUTH worth keeping).
    fn may_monitor(&self) -> bool {
        self.listener
            .auth
            .as_ref()
            .and_then(|a| a.smtp_auth.as_ref())
            .and_then(|s| s.allowance.as_ref())
            .is_some_and(|a| a.action == AllowanceAction::Monitor)
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
                self.greeting_deadline = None;
                self.abort_transaction().await;
                self.st.helo = Some(name);
                self.st.esmtp = true;
                let r = self.st.ehlo_reply(&self.rules());
                self.reply(&r);
                self.junk()
            }
            Command::Helo(name) => {
                self.greeting_deadline = None;
                self.abort_transaction().await;
                self.st.helo = Some(name);
                self.st.esmtp = false;
                let r = Reply::plain(250, self.listener.hostname.clone());
                self.reply(&r);
                self.junk()
            }
            Command::StartTls => {
                let was_tls = self.st.tls.is_some();
                let flow = self.starttls().await;
                if !was_tls && self.st.tls.is_some() {
                    // TLS starts the session over (RFC 3207): EHLO again, within the
                    // greeting deadline.
                    self.expect_greeting();
                }
                flow
            }
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
}

/// A log field that is an address or empty, written without building a string first.
struct MaybeIp(Option<std::net::IpAddr>);

impl std::fmt::Display for MaybeIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => Ok(()),
        }
    }
}
