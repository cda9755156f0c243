//! Asking a responder over HTTP, with a cache of verified answers and coalescing of
//! concurrent identical lookups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::metrics::OcspMetrics;
use super::request::{self, CertId};
use super::response::{self, Issuer, OcspAnswer, OcspError};

/// Most answers kept; when full, expired ones are dropped, then the cache starts over.
const CAPACITY: usize = 65_536;

/// One question: which certificate, which responder, and the issuing CA that must
/// have authorised the answer.
#[derive(Clone, Debug)]
pub struct OcspQuery {
    /// The responder URL (configured, or the certificate's AIA).
    pub url: String,
    /// The certificate asked about.
    pub id: CertId,
    /// The issuing CA's subject Name (DER).
    pub issuer_subject: Vec<u8>,
    /// The issuing CA's SubjectPublicKeyInfo (DER).
    pub issuer_spki: Vec<u8>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Longest an answer is reused.
    pub cache_max_age: Duration,
}

type Key = (String, CertId);
type Lookup = Shared<BoxFuture<'static, Result<OcspAnswer, OcspError>>>;

/// The gateway's OCSP client (one per process, shared by every listener).
#[derive(Debug)]
pub struct OcspClient {
    http: reqwest::Client,
    metrics: OcspMetrics,
    cache: Mutex<HashMap<Key, (OcspAnswer, i64)>>,
    inflight: Mutex<HashMap<Key, Lookup>>,
}

impl OcspClient {
    /// A client counting into `metrics`. HTTPS responders are checked against the
    /// system's roots (OCSP is normally plain HTTP: the answers are signed).
    pub fn new(metrics: OcspMetrics) -> Result<Arc<Self>, OcspError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| OcspError::Network(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!(
                "postern-gateway/",
                env!("CARGO_PKG_VERSION"),
                " (OCSP)"
            ))
            .no_proxy()
            .build()
            .map_err(|e| OcspError::Network(e.to_string()))?;
        Ok(Arc::new(Self {
            http,
            metrics,
            cache: Mutex::default(),
            inflight: Mutex::default(),
        }))
    }

    /// The cached answer for `q`, if it is still current at `now` (Unix seconds).
    pub fn cached(&self, q: &OcspQuery, now: i64) -> Option<OcspAnswer> {
        let cache = self.cache.lock().ok()?;
        let (answer, until) = cache.get(&(q.url.clone(), q.id.clone()))?;
        (now < *until).then(|| {
            self.metrics.cache_hit(&q.url);
            answer.clone()
        })
    }

    /// Answer `q` from the cache or the responder, waiting for the answer on this
    /// thread without holding up the async runtime: on the gateway's multi-threaded
    /// runtime the worker hands its other tasks over first (`block_in_place`); elsewhere
    /// the lookup runs on a thread of its own.
    pub fn lookup_blocking(self: &Arc<Self>, q: OcspQuery) -> Result<OcspAnswer, OcspError> {
        if let Some(a) = self.cached(&q, now()) {
            return Ok(a);
        }
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(self.lookup(q)))
            }
            _ => {
                let me = self.clone();
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| OcspError::Network(e.to_string()))?
                        .block_on(me.lookup(q))
                })
                .join()
                .unwrap_or_else(|_| Err(OcspError::Network("lookup thread panicked".into())))
            }
        }
    }

    /// Answer `q` from the cache or the responder; concurrent lookups of the same
    /// certificate at the same responder share one request.
    pub async fn lookup(self: &Arc<Self>, q: OcspQuery) -> Result<OcspAnswer, OcspError> {
        if let Some(a) = self.cached(&q, now()) {
            return Ok(a);
        }
        let key = (q.url.clone(), q.id.clone());
        let shared = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let me = self.clone();
                    async move { me.ask(q).await }.boxed().shared()
                })
                .clone()
        };
        let out = shared.await;
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        out
    }

    /// One request to the responder; a verified answer is cached.
    async fn ask(&self, q: OcspQuery) -> Result<OcspAnswer, OcspError> {
        let started = Instant::now();
        let out = self.post_and_verify(&q).await;
        let result = match &out {
            Ok(a) => a.status.label(),
            Err(e) => e.code(),
        };
        self.metrics
            .requested(&q.url, result, started.elapsed().as_secs_f64());
        if let Ok(a) = &out {
            let cap = now().saturating_add(q.cache_max_age.as_secs() as i64);
            let until = a.next_update.map_or(cap, |n| n.min(cap));
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CAPACITY {
                let t = now();
                cache.retain(|_, (_, u)| *u > t);
                if cache.len() >= CAPACITY {
                    cache.clear();
                }
            }
            cache.insert((q.url.clone(), q.id.clone()), (a.clone(), until));
        }
        out
    }

    async fn post_and_verify(&self, q: &OcspQuery) -> Result<OcspAnswer, OcspError> {
        let nonce: [u8; 16] = rand_nonce();
        let body = request::encode(&q.id, Some(&nonce));
        let ms = q.timeout.as_millis() as u64;
        let send = async {
            let resp = self
                .http
                .post(&q.url)
                .header("content-type", "application/ocsp-request")
                .header("accept", "application/ocsp-response")
                .body(body)
                .send()
                .await
                .map_err(|e| OcspError::Network(chain(&e)))?;
            if resp.status() != reqwest::StatusCode::OK {
                return Err(OcspError::HttpStatus(resp.status().as_u16()));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| OcspError::Network(chain(&e)))?;
            Ok(bytes)
        };
        let bytes = tokio::time::timeout(q.timeout, send)
            .await
            .map_err(|_| OcspError::Timeout(ms))??;
        let issuer = Issuer {
            subject_der: &q.issuer_subject,
            spki_der: &q.issuer_spki,
        };
        response::verify(&bytes, &q.id, issuer, Some(&nonce), now())
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// 16 random bytes (RFC 8954 asks for at least 1, at most 32).
fn rand_nonce() -> [u8; 16] {
    use ring::rand::SecureRandom;
    let mut n = [0u8; 16];
    // The system RNG does not fail on supported platforms; a zero nonce would still be
    // a valid (if weaker) request.
    let _ = ring::rand::SystemRandom::new().fill(&mut n);
    n
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsp::CertStatus;
    use crate::ocsp::fixture::{self, good, issuer_of, response};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP server answering every request with `body` after `delay`; counts requests.
    async fn responder(body: Vec<u8>, delay: Duration) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (body, seen) = (body.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0; 8192];
                    let _ = s.read(&mut buf).await;
                    seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/ocsp-response\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&[head.as_bytes(), &body].concat()).await;
                });
            }
        });
        (url, count)
    }

    fn query(url: &str, ca: &fixture::TestCa, max_age: Duration) -> OcspQuery {
        let (subject, spki, id) = issuer_of(ca, &[0x42]);
        OcspQuery {
            url: url.to_owned(),
            id,
            issuer_subject: subject,
            issuer_spki: spki,
            timeout: Duration::from_secs(2),
            cache_max_age: max_age,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_share_one_request_and_the_answer_is_cached() {
        let ca = fixture::ca("CA");
        let (_, _, id) = issuer_of(&ca, &[0x42]);
        let t = now();
        let body = response(&id, &good(), t - 10, Some(t + 3600), ca.key(), &[], None);
        let (url, count) = responder(body, Duration::from_millis(300)).await;
        let client = OcspClient::new(OcspMetrics::default()).unwrap();
        let q = query(&url, &ca, Duration::from_secs(60));
        let lookups: Vec<_> = (0..8)
            .map(|_| {
                let (c, q) = (client.clone(), q.clone());
                tokio::spawn(async move { c.lookup(q).await })
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap().unwrap().status, CertStatus::Good);
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(client.metrics.requests(&url, "good"), 1);
        // Cached: no second request, and from a blocking caller too.
        let c = client.clone();
        let q2 = q.clone();
        let a = tokio::task::spawn_blocking(move || c.lookup_blocking(q2))
            .await
            .unwrap();
        assert_eq!(a.unwrap().status, CertStatus::Good);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // The cache keeps it for cacheMaxAge at most (nextUpdate is an hour away).
        assert!(client.cached(&q, t + 30).is_some());
        assert!(client.cached(&q, t + 120).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn next_update_bounds_the_cache_and_failures_are_not_cached() {
        let ca = fixture::ca("CA");
        let (_, _, id) = issuer_of(&ca, &[0x42]);
        let t = now();
        let body = response(&id, &good(), t - 10, Some(t + 20), ca.key(), &[], None);
        let (url, _) = responder(body, Duration::ZERO).await;
        let client = OcspClient::new(OcspMetrics::default()).unwrap();
        let q = query(&url, &ca, Duration::from_secs(3600));
        client.lookup(q.clone()).await.unwrap();
        assert!(client.cached(&q, t + 10).is_some());
        assert!(client.cached(&q, t + 30).is_none());

        let (slow, count) = responder(Vec::new(), Duration::from_secs(5)).await;
        let mut q = query(&slow, &ca, Duration::from_secs(3600));
        q.timeout = Duration::from_millis(200);
        assert_eq!(client.lookup(q.clone()).await, Err(OcspError::Timeout(200)));
        assert!(client.cached(&q, t).is_none());
        assert_eq!(client.metrics.requests(&slow, "timeout"), 1);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }
}
