//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/crl` and `/config` (the applied
//! configuration's hash and generation, which the controller compares with the desired
//! hash).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::reload::{LastAttempt, Reloader};
use crate::server::Server;

/// What else readiness waits for, besides a configuration in force: the names of the
/// things not ready yet (e.g. CRL sources whose first fetch has not ended,
/// [`crate::crl::CrlStore::startup_pending`]).
pub type ReadinessGate = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A gate that never waits.
pub fn no_gate() -> ReadinessGate {
    Arc::new(Vec::new)
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    server: Server,
    reloader: Arc<Reloader>,
    gate: ReadinessGate,
}

/// `/config` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// Hash of the configuration in force (absent before the first one).
    pub hash: Option<String>,
    /// Its generation (0 before the first one).
    pub generation: u64,
    /// Listener names in force.
    pub listeners: Vec<String>,
    /// Listeners of the configuration in force that do not run as configured.
    pub refused_listeners: Vec<postern_config::protocol::ListenerRefusal>,
    /// Whether the gateway accepts connections.
    pub ready: bool,
    /// The last reload attempt (refused ones say why).
    pub last_attempt: LastAttempt,
}

/// Serve the admin endpoint on `addr` until `stop` is cancelled; `extra` adds routes of
/// other subsystems (e.g. `/crl`), `gate` what `/readyz` waits for besides a
/// configuration.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    server: Server,
    reloader: Arc<Reloader>,
    extra: Router,
    gate: ReadinessGate,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let state = AdminState {
        registry,
        server,
        reloader,
        gate,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/config", get(config))
        .with_state(state)
        .merge(extra);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// Bind the admin address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if s.server.ready() {
        // A gateway whose CRL sources have not answered yet would refuse every client
        // certificate they may be for (crl_missing): keep traffic away until each has a
        // CRL in force or has reported a failed first fetch.
        let waiting = (s.gate)();
        if waiting.is_empty() {
            (StatusCode::OK, "ready\n").into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "waiting for the first fetch of CRL source(s) {}\n",
                    waiting.join(", ")
                ),
            )
                .into_response()
        }
    } else if s.server.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration applied yet\n",
        )
            .into_response()
    }
}

async fn config(State(s): State<AdminState>) -> Json<ConfigStatus> {
    let rt = s.server.current();
    Json(ConfigStatus {
        hash: rt.as_ref().map(|r| r.hash.clone()),
        generation: rt.as_ref().map(|r| r.generation).unwrap_or(0),
        listeners: rt
            .as_ref()
            .map(|r| r.listeners.keys().cloned().collect())
            .unwrap_or_default(),
        refused_listeners: rt.as_ref().map(|r| r.refused.clone()).unwrap_or_default(),
        ready: s.server.ready(),
        last_attempt: s.reloader.last_attempt(),
    })
}
