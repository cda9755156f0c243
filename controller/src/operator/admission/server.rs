//! The webhook's HTTPS endpoint: `POST /validate` takes an `AdmissionReview` of one of
//! the five kinds, builds the namespace's snapshot (the live objects from the
//! controller's stores, the incoming object in place of its stored version, and the
//! Secrets and ConfigMaps they reference, read once), and answers with `review`'s verdict.
//! The serving certificate is swapped in place when `cert_store` renews it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::{Api, Client};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::cert::Material;
use super::cert_store::{self, CertTarget};
use super::metrics::{AdmissionMetrics, Decision};
use super::review::{Verdict, review};
use crate::compile::{ConfigMapData, Kind, ObjectKey, SecretData, Snapshot};
use crate::operator::http::Health;
use crate::operator::objects::StoredObject;
use crate::operator::watch::Stores;

/// How often every replica re-reads the certificate Secret (renewal, another replica's
/// renewal, a deleted Secret).
const CERT_CHECK: Duration = Duration::from_secs(60);

/// The webhook's settings.
#[derive(Clone, Debug)]
pub(crate) struct WebhookOptions {
    /// Where to serve HTTPS.
    pub address: SocketAddr,
    /// The certificate's Secret, the configuration to publish its CA in, its host names.
    pub cert: CertTarget,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// The address could not be bound.
    #[error("cannot bind the webhook address {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The first certificate could not be made or read.
    #[error("webhook certificate: {0}")]
    Cert(#[from] cert_store::StoreError),
    /// rustls refused the certificate or the protocol settings.
    #[error("webhook TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The certificate in force, swapped on renewal.
#[derive(Debug)]
struct Certificates(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("not poisoned").clone())
    }
}

fn certified_key(m: &Material) -> Result<Arc<CertifiedKey>, rustls::Error> {
    let bad = |what: &str| rustls::Error::General(format!("the stored {what} does not parse"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(m.key.as_bytes()).map_err(|_| bad("key"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

#[derive(Clone)]
struct AppState {
    client: Client,
    stores: Stores,
    health: Arc<Health>,
    metrics: Arc<AdmissionMetrics>,
}

/// Makes or loads the certificate, then serves until `shutdown`, keeping the
/// certificate current. Returns the bound address once serving.
pub(crate) async fn start(
    client: Client,
    stores: Stores,
    health: Arc<Health>,
    metrics: Arc<AdmissionMetrics>,
    opts: WebhookOptions,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let material = cert_store::ensure(&client, &opts.cert).await?;
    let certs = Arc::new(Certificates(RwLock::new(certified_key(&material)?)));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(certs.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(opts.address)
        .await
        .map_err(|source| ServeError::Bind {
            address: opts.address,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ServeError::Bind {
        address: opts.address,
        source,
    })?;
    let app = Router::new()
        .route("/validate", post(validate))
        .with_state(AppState {
            client: client.clone(),
            stores,
            health,
            metrics,
        });
    tracing::info!(%address, secret = %opts.cert.secret, "admission webhook serving");
    let task = tokio::spawn(async move {
        let mut check = tokio::time::interval(CERT_CHECK);
        check.tick().await;
        let mut in_force = material;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = check.tick() => match cert_store::ensure(&client, &opts.cert).await {
                    Ok(m) if m != in_force => match certified_key(&m) {
                        Ok(k) => {
                            *certs.0.write().expect("not poisoned") = k;
                            tracing::info!("webhook serving certificate reloaded");
                            in_force = m;
                        }
                        Err(e) => tracing::warn!(error = %e, "the renewed webhook certificate cannot be used"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot check the webhook certificate; serving the current one"),
                },
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(tcp).await else { return };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    });
    Ok((address, task))
}

async fn validate(
    State(s): State<AppState>,
    Json(body): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match body.try_into() {
        Ok(r) => r,
        Err(e) => {
            s.metrics.count(Decision::Invalid);
            return Json(AdmissionResponse::invalid(e).into_review());
        }
    };
    let response = AdmissionResponse::from(&request);
    let (Some(object), Some(kind), Some(namespace)) = (
        request.object.as_ref(),
        Kind::from_name(&request.kind.kind),
        request.namespace.as_deref(),
    ) else {
        s.metrics.count(Decision::Allowed);
        return Json(response.into_review());
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        s.metrics.count(Decision::Allowed);
        return Json(response.into_review());
    }
    let key = ObjectKey::new(kind, request.name.clone());
    if !s.health.synced.load(Ordering::Relaxed) {
        s.metrics.count(Decision::Allowed);
        let mut response = response;
        response.warnings = Some(vec![format!(
            "{key}: not checked against namespace {namespace}: the controller is still reading it; its status will tell"
        )]);
        return Json(response.into_review());
    }
    let verdict = match snapshot(&s, namespace, &key, kind, object).await {
        Ok(snapshot) => review(&snapshot, &key),
        Err(e) => {
            // The referenced Secrets could not be read: judge without them, and say so.
            tracing::warn!(namespace, object = %key, error = %e, "admission: cannot read referenced Secrets/ConfigMaps");
            let mut v = Verdict {
                refusals: Vec::new(),
                warnings: vec![format!(
                    "{key}: referenced Secrets and ConfigMaps could not be read ({e}); not checked against them"
                )],
            };
            let snapshot = objects_snapshot(&s.stores, namespace, &key, kind, object);
            let judged = review(&snapshot, &key);
            v.refusals = judged.refusals;
            v.warnings.extend(judged.warnings);
            v
        }
    };
    let decision = match (verdict.allowed(), verdict.warnings.is_empty()) {
        (false, _) => Decision::Refused,
        (true, false) => Decision::AllowedWithWarnings,
        (true, true) => Decision::Allowed,
    };
    s.metrics.count(decision);
    tracing::info!(namespace, object = %key, operation = ?request.operation, dry_run = request.dry_run,
        decision = decision.as_str(), errors = verdict.refusals.len(), warnings = verdict.warnings.len(),
        "admission review");
    let mut response = if verdict.allowed() {
        response
    } else {
        response.deny(verdict.message())
    };
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    Json(response.into_review())
}

/// The namespace's live objects with `object` in place of the stored `key`.
fn objects_snapshot(
    stores: &Stores,
    namespace: &str,
    key: &ObjectKey,
    kind: Kind,
    object: &DynamicObject,
) -> Snapshot {
    let mut snapshot = Snapshot {
        namespace: Some(namespace.to_owned()),
        ..Default::default()
    };
    for (k, o) in stores.objects(namespace) {
        if &k != key {
            o.add_to_snapshot(&mut snapshot);
        }
    }
    StoredObject::read(kind, object.clone()).add_to_snapshot(&mut snapshot);
    snapshot
}

/// [`objects_snapshot`] plus the Secrets and ConfigMaps referenced, read once.
async fn snapshot(
    s: &AppState,
    namespace: &str,
    key: &ObjectKey,
    kind: Kind,
    object: &DynamicObject,
) -> Result<Snapshot, kube::Error> {
    let mut snapshot = objects_snapshot(&s.stores, namespace, key, kind, object);
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), namespace);
    for name in snapshot.referenced_secrets() {
        if let Some(secret) = secrets.get_opt(&name).await? {
            snapshot.secrets.insert(name, SecretData::from(&secret));
        }
    }
    let maps: Api<ConfigMap> = Api::namespaced(s.client.clone(), namespace);
    for name in snapshot.referenced_config_maps() {
        if let Some(map) = maps.get_opt(&name).await? {
            snapshot.config_maps.insert(name, ConfigMapData::from(&map));
        }
    }
    Ok(snapshot)
}
