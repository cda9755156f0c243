//! `GET /prestop?seconds=N` on the admin port: the Pod's preStop hook. It answers after N
//! seconds, so the kubelet sends SIGTERM only once the endpoints controller and kube-proxy
//! (or a load balancer) have stopped sending new connections to this Pod; until then the
//! gateway keeps accepting and serving. The distroless image has no shell (no `sleep`), and
//! the hook's own `sleep` action needs Kubernetes 1.30.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tracing::info;

/// The longest wait a hook may ask for: the endpoint is unauthenticated, so a caller must
/// not be able to hold a connection open for long.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
struct Params {
    seconds: Option<u64>,
}

/// The `/prestop` route, to merge into the admin endpoint.
pub fn routes() -> Router {
    Router::new().route("/prestop", get(prestop))
}

async fn prestop(Query(p): Query<Params>) -> Response {
    let Some(seconds) = p.seconds else {
        return (
            StatusCode::BAD_REQUEST,
            "/prestop needs ?seconds=N (how long to wait before SIGTERM)\n",
        )
            .into_response();
    };
    let wait = Duration::from_secs(seconds);
    if wait > MAX_WAIT {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "/prestop?seconds={seconds}: at most {} seconds\n",
                MAX_WAIT.as_secs()
            ),
        )
            .into_response();
    }
    info!(
        wait_seconds = seconds,
        "preStop: still serving while the Service stops routing to this Pod; SIGTERM follows"
    );
    let started = Instant::now();
    tokio::time::sleep(wait).await;
    info!(
        waited_ms = started.elapsed().as_millis() as u64,
        "preStop: done"
    );
    (StatusCode::OK, "ok\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_after_the_wait_and_refuses_bad_requests() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, routes()).await });
        // The kubelet's request, as plain HTTP/1.1; the status code of the answer.
        let get = |q: &str| {
            let request =
                format!("GET /prestop{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(request.as_bytes()).await.unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).await.unwrap();
                answer.split(' ').nth(1).unwrap_or_default().to_owned()
            }
        };
        let started = Instant::now();
        assert_eq!(get("?seconds=1").await, "200");
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(get("?seconds=0").await, "200");
        assert_eq!(get("").await, "400");
        assert_eq!(get("?seconds=121").await, "400");
        assert_eq!(get("?seconds=soon").await, "400");
    }
}
