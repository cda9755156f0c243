//! Fetching one CRL URL over HTTP or HTTPS: conditional GET (ETag / Last-Modified),
//! timeouts and a size cap. Retries and the primary → secondary order are the
//! scheduler's job ([`super::schedule`]). A body is only read once it has a share of the
//! load budget ([`super::budget`]), which it keeps until it is loaded.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

use super::budget::{DEFAULT_LOAD_BUDGET, LoadBudget, Share};

/// Limits and timings of CRL fetching.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole request, body included.
    pub timeout: Duration,
    /// Largest accepted body (a DoD CRL is tens of MB).
    pub max_bytes: u64,
    /// First retry delay after every URL of a source failed; doubles per failure.
    pub retry_initial: Duration,
    /// Longest retry delay (never longer than the source's interval).
    pub retry_max: Duration,
    /// Extra trust anchors (PEM) for `https://` CRL URLs, besides the system's roots
    /// (which honour `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub extra_roots_pem: Option<String>,
    /// Bytes of CRL files loaded at once, all sources together ([`super::budget`]).
    pub load_budget: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            max_bytes: 256 * 1024 * 1024,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(15 * 60),
            extra_roots_pem: None,
            load_budget: DEFAULT_LOAD_BUDGET,
        }
    }
}

/// HTTP cache validators of a response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Validators {
    /// `ETag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Last-Modified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Self {
        let get = |name| {
            h.get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            etag: get(ETAG),
            last_modified: get(LAST_MODIFIED),
        }
    }

    /// Whether there is anything to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// What a URL answered.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// `304 Not Modified`: the copy in force is current.
    NotModified,
    /// A body, to be read.
    Body {
        /// The file, as it arrives.
        body: Body,
        /// Its validators, for the next conditional request.
        validators: Validators,
        /// Its share of the load budget, to hold until it is loaded.
        share: Share,
    },
}

/// Why a URL gave no CRL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The HTTP client could not be set up (bad extra trust anchors).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// Connection refused, DNS failure, TLS failure, reset.
    #[error("{0}")]
    Network(String),
    /// No complete answer in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A status other than 200 or 304.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body exceeds the size cap (the source's `maxSize`, capped by
    /// `--crl-max-bytes`).
    #[error("{} is larger than the limit of {limit} bytes (maxSize of the source; --crl-max-bytes caps every source)", size.map_or_else(|| "the response".to_owned(), |n| format!("the response of {n} bytes")))]
    TooLarge {
        /// The cap.
        limit: u64,
        /// The announced size (`Content-Length`), when known.
        size: Option<u64>,
    },
    /// The body could not be kept to be read (a `format: Zip` archive is written to the
    /// disk cache or a temporary file first): a local disk problem, not the server's.
    #[error("cannot keep the downloaded file to read it: {0}")]
    Spool(String),
}

impl FetchError {
    /// A short stable code, used as a metric label and in status.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Client(_) => "client",
            FetchError::Network(_) => "network",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Spool(_) => "spool",
        }
    }
}

/// An HTTP(S) client for CRL URLs.
#[derive(Clone, Debug)]
pub(crate) struct HttpFetcher {
    client: reqwest::Client,
    max_bytes: u64,
}

impl HttpFetcher {
    /// A client trusting the system's roots plus `settings.extra_roots_pem` for HTTPS.
    pub(crate) fn new(settings: &FetchSettings) -> Result<Self, FetchError> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are not fatal: plain HTTP (the usual transport for
        // CRLs, which are signed anyway) does not need them.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(pem) = &settings.extra_roots_pem {
            let certs = postern_config::pem::certificates(pem)
                .map_err(|e| FetchError::Client(format!("extra CRL trust anchors: {e}")))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| FetchError::Client(format!("extra CRL trust anchor: {e}")))?;
            }
        }
        let provider = crate::crypto::provider();
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .user_agent(concat!(
                "postern-gateway/",
                env!("CARGO_PKG_VERSION"),
                " (CRL fetch)"
            ))
            .no_proxy()
            .build()
            .map_err(|e| FetchError::Client(chain(&e)))?;
        Ok(Self {
            client,
            max_bytes: settings.max_bytes,
        })
    }

    /// GET `url`, conditionally when `validators` are given; bodies over `max_size` (or
    /// over the gateway-wide cap, whichever is smaller) are refused while streaming, so an
    /// oversize file never sits in memory. The body is read once `budget` grants a share
    /// for its size.
    pub(crate) async fn get(
        &self,
        url: &str,
        validators: Option<&Validators>,
        max_size: u64,
        budget: &LoadBudget,
    ) -> Result<Fetched, FetchError> {
        let limit = self.max_bytes.min(max_size);
        let mut req = self.client.get(url);
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req.send().await.map_err(classify)?;
        match resp.status() {
            StatusCode::NOT_MODIFIED if validators.is_some() => return Ok(Fetched::NotModified),
            StatusCode::OK => {}
            other => return Err(FetchError::Status(other.as_u16())),
        }
        if let Some(n) = resp.content_length().filter(|n| *n > limit) {
            return Err(FetchError::TooLarge {
                limit,
                size: Some(n),
            });
        }
        let validators = Validators::from_headers(resp.headers());
        let share = budget.take(resp.content_length()).await;
        Ok(Fetched::Body {
            body: Body {
                resp,
                limit,
                read: 0,
            },
            validators,
            share,
        })
    }
}

/// A response body being read, refused as soon as it passes the size cap, so an oversize
/// file never sits in memory.
#[derive(Debug)]
pub(crate) struct Body {
    resp: reqwest::Response,
    limit: u64,
    read: u64,
}

impl Body {
    /// The next chunk (`None` at the end).
    pub(crate) async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, FetchError> {
        let Some(chunk) = self.resp.chunk().await.map_err(classify)? else {
            return Ok(None);
        };
        self.read += chunk.len() as u64;
        if self.read > self.limit {
            return Err(FetchError::TooLarge {
                limit: self.limit,
                size: None,
            });
        }
        Ok(Some(chunk))
    }

    /// The whole body.
    pub(crate) async fn bytes(mut self) -> Result<Vec<u8>, FetchError> {
        let cap = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(
            self.resp
                .content_length()
                .map_or(64 * 1024, |n| usize::try_from(n).unwrap_or(cap)),
        );
        while let Some(chunk) = self.chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

fn classify(e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(chain(&e))
    } else {
        FetchError::Network(chain(&e))
    }
}

/// An error and its causes on one line (reqwest's own message hides the useful part).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering one request with a chunked body of `total` bytes (no
    /// `Content-Length`, so the cap can only be enforced while reading).
    async fn chunked_server(total: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            let mut sent = 0;
            while sent < total {
                let n = 64.min(total - sent);
                let _ = s.write_all(format!("{n:x}\r\n").as_bytes()).await;
                let _ = s.write_all(&vec![0x30; n]).await;
                let _ = s.write_all(b"\r\n").await;
                sent += n;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/a.crl")
    }

    #[tokio::test]
    async fn a_body_is_refused_as_soon_as_it_passes_the_cap() {
        let fetcher = HttpFetcher::new(&FetchSettings {
            max_bytes: 1000,
            ..FetchSettings::default()
        })
        .unwrap();
        let budget = LoadBudget::new(1 << 20);
        let url = chunked_server(64 * 100).await;
        let Ok(Fetched::Body { mut body, .. }) = fetcher.get(&url, None, u64::MAX, &budget).await
        else {
            panic!("no body");
        };
        let mut read = 0;
        let e = loop {
            match body.chunk().await {
                Ok(Some(c)) => read += c.len(),
                Ok(None) => panic!("{read} bytes read past the cap"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            e,
            FetchError::TooLarge {
                limit: 1000,
                size: None
            }
        );
        assert!(read <= 1000, "{read}");

        // The source's maxSize, when smaller, is the cap; under it the body is whole.
        let url = chunked_server(640).await;
        let Ok(Fetched::Body { body, .. }) = fetcher.get(&url, None, 639, &budget).await else {
            panic!("no body");
        };
        assert_eq!(
            body.bytes().await.unwrap_err(),
            FetchError::TooLarge {
                limit: 639,
                size: None
            }
        );
        let url = chunked_server(640).await;
        let Ok(Fetched::Body { body, .. }) = fetcher.get(&url, None, 640, &budget).await else {
            panic!("no body");
        };
        assert_eq!(body.bytes().await.unwrap().len(), 640);
    }
}
