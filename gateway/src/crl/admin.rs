//! Admin HTTP routes: `GET /crl` (every source's status, JSON), `GET /crl/{source}`, and
//! `GET /revocation` (revocation coverage of every trusted CA of every listener).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use super::store::CrlStore;

/// The routes, to merge into the admin router.
pub fn routes(store: Arc<CrlStore>) -> Router {
    Router::new()
        .route("/crl", get(all))
        .route("/crl/{source}", get(one))
        .route("/revocation", get(coverage))
        .with_state(store)
}

async fn all(State(store): State<Arc<CrlStore>>) -> Response {
    Json(store.status()).into_response()
}

async fn coverage(State(store): State<Arc<CrlStore>>) -> Response {
    Json(store.coverage()).into_response()
}

async fn one(State(store): State<Arc<CrlStore>>, Path(source): Path<String>) -> Response {
    match store.source_status(&source) {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no CRL source named {source:?}\n"),
        )
            .into_response(),
    }
}
