//! The listening side: one accept loop per bound address, the connection caps (per
//! listener and per client, see [`slots`]), installing a new [`Runtime`] (binding new
//! ports, closing removed ones; a Listener whose address cannot be bound is refused on
//! its own, keeping its previous version where there is one) and the graceful shutdown.

mod proxy;
mod slots;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::CertificateFactsCache;
use crate::metrics::{ListenerLabels, Metrics, OutcomeLabels};
use crate::runtime::{ListenerRuntime, Runtime};
use crate::smtp::{Connection, SessionContext};
use crate::wire::{io, reply};
use postern_config::protocol::{ListenerRefusal, ListenerRefusalReason, ListenerServing};

pub use slots::ClientKey;
use slots::{Refusal, Slot, Slots};

/// Why a runtime could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The server is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

struct Bound {
    stop: CancellationToken,
}

/// The SMTP server: the runtime in force and the accept loops.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    current: watch::Sender<Option<Arc<Runtime>>>,
    bound: Mutex<HashMap<SocketAddr, Bound>>,
    slots: Mutex<HashMap<SocketAddr, Arc<Slots>>>,
    metrics: Metrics,
    draining: CancellationToken,
    hard_stop: CancellationToken,
    tracker: TaskTracker,
    cert_facts: Arc<CertificateFactsCache>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no runtime yet.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: watch::channel(None).0,
                bound: Mutex::new(HashMap::new()),
                slots: Mutex::new(HashMap::new()),
                cert_facts: Arc::new(CertificateFactsCache::new(
                    metrics.certificate_facts_cached.clone(),
                )),
                metrics,
                draining: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// The runtime in force.
    pub fn current(&self) -> Option<Arc<Runtime>> {
        self.inner.current.borrow().clone()
    }

    /// Subscribe to runtime changes.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Runtime>>> {
        self.inner.current.subscribe()
    }

    /// Whether a runtime is in force and the server is not draining.
    pub fn ready(&self) -> bool {
        self.current().is_some() && !self.inner.draining.is_cancelled()
    }

    /// Whether shutdown has begun.
    pub fn draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// Bind what `runtime` needs, then make it the one in force: new sessions use it,
    /// sessions in progress keep theirs. A Listener whose address cannot be bound is
    /// refused on its own: its previous version keeps serving where there is one (still
    /// bound, its address not taken by another Listener), else it is not served. Returns
    /// every refused Listener (also kept in the installed runtime's `refused`).
    pub fn install(&self, mut runtime: Runtime) -> Result<Vec<ListenerRefusal>, InstallError> {
        if self.inner.draining.is_cancelled() {
            return Err(InstallError::ShuttingDown);
        }
        let mut bound = self.inner.bound.lock().expect("bound lock");
        let previous = self.current();
        let mut refused = std::mem::take(&mut runtime.refused);
        let mut new_sockets: Vec<(SocketAddr, TcpListener)> = Vec::new();
        let names: Vec<String> = runtime.listeners.keys().cloned().collect();
        for name in names {
            let addr = runtime.listeners[&name].address;
            if bound.contains_key(&addr) || new_sockets.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            match bind(addr) {
                Ok(socket) => new_sockets.push((addr, socket)),
                Err(e) => {
                    runtime.listeners.remove(&name);
                    refused.push(ListenerRefusal {
                        listener: name,
                        address: addr.to_string(),
                        reason: ListenerRefusalReason::PortUnavailable,
                        message: e.to_string(),
                        serving: ListenerServing::NotServed,
                    });
                }
            }
        }
        for r in &mut refused {
            let Some(old) = previous.as_ref().and_then(|p| p.listeners.get(&r.listener)) else {
                continue;
            };
            let taken = runtime.listeners.values().any(|l| l.address == old.address);
            if bound.contains_key(&old.address) && !taken {
                r.serving = ListenerServing::PreviousVersion {
                    address: old.address.to_string(),
                };
                runtime.listeners.insert(r.listener.clone(), old.clone());
            }
        }
        refused.sort_by(|a, b| a.listener.cmp(&b.listener));
        runtime.refused = refused.clone();
        let wanted: HashSet<SocketAddr> = runtime.listeners.values().map(|l| l.address).collect();
        self.inner.current.send_replace(Some(Arc::new(runtime)));
        for (addr, socket) in new_sockets {
            let stop = CancellationToken::new();
            bound.insert(addr, Bound { stop: stop.clone() });
            let server = self.clone();
            tokio::spawn(async move { server.accept_loop(addr, socket, stop).await });
            info!(address = %addr, "listening");
        }
        bound.retain(|addr, b| {
            let keep = wanted.contains(addr);
            if !keep {
                b.stop.cancel();
                info!(address = %addr, "listener removed: no longer accepting");
            }
            keep
        });
        Ok(refused)
    }

    fn listener_at(&self, addr: SocketAddr) -> Option<Arc<ListenerRuntime>> {
        let current = self.inner.current.borrow();
        current
            .as_ref()?
            .listeners
            .values()
            .find(|l| l.address == addr)
            .cloned()
    }

    fn slots(&self, addr: SocketAddr) -> Arc<Slots> {
        self.inner
            .slots
            .lock()
            .expect("slots lock")
            .entry(addr)
            .or_default()
            .clone()
    }

    async fn accept_loop(self, addr: SocketAddr, socket: TcpListener, stop: CancellationToken) {
        let slots = self.slots(addr);
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.inner.draining.cancelled() => break,
                r = socket.accept() => r,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(address = %addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A dual-stack listener (`::`) sees IPv4 clients as IPv4-mapped addresses:
            // logs, tables and caps see them as the IPv4 addresses they are.
            let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
            let Some(listener) = self.listener_at(addr) else {
                continue;
            };
            let trusted = listener
                .proxy_protocol
                .as_ref()
                .is_some_and(|pp| pp.trusts(peer.ip()));
            if trusted {
                // The header is read in the session's own task: a slow proxy must not
                // hold up the accept loop. Slots are taken once the client is known,
                // and the session then runs in that same task.
                let (server, slots) = (self.clone(), slots.clone());
                self.inner.tracker.spawn(async move {
                    server.proxied(tcp, peer, listener, &slots).await;
                });
                continue;
            }
            if let Some(session) = self.admit(tcp, peer, None, None, listener, &slots) {
                self.inner.tracker.spawn(session);
            }
        }
    }

    /// A connection from a trusted proxy: read its PROXY header, then serve the client it
    /// names (or, for `LOCAL`/`UNKNOWN`, the proxy itself). No valid header: refused.
    async fn proxied(
        &self,
        mut tcp: tokio::net::TcpStream,
        proxy: SocketAddr,
        listener: Arc<ListenerRuntime>,
        slots: &Arc<Slots>,
    ) {
        // What follows the header on an implicit-TLS listener is a ClientHello and stays
        // in the socket for the TLS stack; otherwise it is SMTP and goes to the session.
        let mut input = (!listener.implicit_tls).then(|| BytesMut::with_capacity(io::SMALL));
        let after = input
            .as_mut()
            .map_or(proxy::After::InSocket, proxy::After::Buffer);
        match proxy::read_header(&mut tcp, after).await {
            Ok(header) => {
                let client = header.addresses.map_or(proxy, |a| a.source);
                debug!(listener = %listener.name, proxy = %proxy, client = %client, version = header.version.as_str(), "PROXY header read");
                if let Some(session) = self.admit(tcp, client, Some(proxy), input, listener, slots)
                {
                    session.await;
                }
            }
            Err(e) => {
                self.count(&listener, "proxy_refused");
                let reason = format!("trusted proxy sent no valid PROXY header: {e}");
                connection_rejected(&listener.name, proxy, Some(proxy), None, &reason, None);
                say_and_close(tcp, reply::proxy_protocol_refused()).await;
            }
        }
    }

    /// Take the connection's slots (as `peer`, the client) and return its session, for
    /// the caller to run in a task of the tracker; `None` when there was no slot (the
    /// connection has been turned away). `proxy` is the trusted proxy it came through,
    /// `input` what its client sent after the PROXY header (read with it).
    fn admit(
        &self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        proxy: Option<SocketAddr>,
        input: Option<BytesMut>,
        listener: Arc<ListenerRuntime>,
        slots: &Arc<Slots>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let labels = ListenerLabels {
            listener: listener.name.clone(),
        };
        let slot = match slots.try_acquire(
            peer.ip(),
            listener.max_connections,
            listener.max_connections_per_client,
        ) {
            Ok(slot) => slot,
            Err(refusal) => {
                self.refuse(&listener, peer, proxy, refusal, tcp);
                return None;
            }
        };
        let gauge = self
            .inner
            .metrics
            .connections_active
            .get_or_create(&labels)
            .clone();
        gauge.inc();
        let guard = ActiveGuard { _slot: slot, gauge };
        let ctx = SessionContext {
            metrics: self.inner.metrics.clone(),
            draining: self.inner.draining.clone(),
            hard_stop: self.inner.hard_stop.clone(),
            cert_facts: Arc::clone(&self.inner.cert_facts),
        };
        // Boxed: a session's future is large (its buffers and TLS state live in it), and
        // a task that holds it inline copies all of it when it starts and again when it
        // ends (tokio stores a finished task's output in the same slot); a box is copied
        // once. A proxied connection's task, which awaits it after the header, stays
        // small the same way.
        Some(Box::pin(async move {
            let _guard = guard;
            let connection = Connection::new(tcp, peer, listener, ctx).via_proxy(proxy);
            match input {
                Some(input) => connection.with_input(input).run().await,
                None => connection.run().await,
            }
        }))
    }

    fn count(&self, listener: &ListenerRuntime, outcome: &str) {
        self.inner
            .metrics
            .connections
            .get_or_create(&OutcomeLabels {
                listener: listener.name.clone(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Turn away a connection that got no slot, cheaply: one decision line, one metric,
    /// `421 4.7.0` and close, without a session (no TLS, no policy lookup).
    fn refuse(
        &self,
        listener: &ListenerRuntime,
        peer: SocketAddr,
        proxy: Option<SocketAddr>,
        refusal: Refusal,
        tcp: tokio::net::TcpStream,
    ) {
        let (outcome, reason, limit) = match refusal {
            Refusal::ClientLimit => (
                "over_client_limit",
                "client at maxConnectionsPerClient",
                listener.max_connections_per_client,
            ),
            Refusal::ListenerFull => (
                "over_capacity",
                "listener at maxConnections",
                listener.max_connections,
            ),
        };
        self.count(listener, outcome);
        let client = ClientKey::of(peer.ip());
        connection_rejected(
            &listener.name,
            peer,
            proxy,
            Some(&client),
            reason,
            Some(limit),
        );
        tokio::spawn(say_and_close(tcp, reply::too_many_connections()));
    }

    /// Graceful shutdown: stop accepting; sessions with no transaction open are closed
    /// with `421 4.3.2` once idle for [`crate::smtp::conn::DRAIN_IDLE`], those with one
    /// may finish it for up to `grace`; then the rest get `421 4.3.2` too.
    pub async fn shutdown(&self, grace: Duration) {
        info!(
            grace_seconds = grace.as_secs_f64(),
            "shutting down: no longer accepting connections"
        );
        self.inner.draining.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            info!(
                sessions = self.inner.tracker.len(),
                "grace period over: closing remaining sessions with 421 4.3.2"
            );
            self.inner.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), self.inner.tracker.wait()).await;
        }
        info!("all sessions closed");
    }
}

/// Send one reply to a connection turned away before its session and close it, within
/// 5 s (a peer that does not read cannot hold the task).
async fn say_and_close(mut tcp: tokio::net::TcpStream, reply: reply::Reply) {
    let mut out = Vec::new();
    reply.write_to(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tcp.write_all(&out).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// Gives back the connection's slots and the active-connections gauge when a session
/// ends, however it ends (return, error, panic, cancellation).
struct ActiveGuard {
    _slot: Slot,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Whether `addr` could be bound now (a refused Listener's address freed?). The probe
/// socket is closed at once.
pub(crate) fn can_bind(addr: SocketAddr) -> bool {
    std::net::TcpListener::bind(addr).is_ok()
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The decision line of a connection turned away before it has a session (a trusted
/// proxy's missing PROXY header, a connection limit). It carries every field a session's
/// decision lines carry, empty where only a session has a value: DESIGN.md makes every
/// decision line name the listener, client, policy, profile, certificate and query, and a
/// log pipeline finds the same keys on every line. `client` is the client's counting key,
/// `limit` the limit that was reached.
fn connection_rejected(
    listener: &str,
    peer: SocketAddr,
    proxy: Option<SocketAddr>,
    client: Option<&ClientKey>,
    reason: &str,
    limit: Option<u32>,
) {
    let proxy_ip = proxy.map(|p| p.ip().to_string()).unwrap_or_default();
    info!(
        target: "postern::decision",
        session = %"",
        listener = %listener,
        client_ip = %peer.ip(),
        client_port = peer.port(),
        proxy_ip = %proxy_ip,
        sender_group = %"",
        policy = %"",
        profile = %"",
        tls = %"none",
        cert_subject = %"",
        cert_serial = %"",
        cert_issuer = %"",
        user = %"",
        auth_method = %"",
        query = %"",
        client = client.map(tracing::field::display),
        decision = "connect",
        outcome = "rejected",
        reason,
        limit,
    );
}
