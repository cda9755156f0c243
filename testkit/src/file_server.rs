//! A small HTTP/1.1 (and HTTPS) file server on a free loopback port, for serving CRLs to
//! the gateway in the tests and the benchmark. Files can be replaced, the server can answer with an error status
//! or slowly, and every request is recorded (with its conditional-GET headers). It honours
//! `If-None-Match` / `If-Modified-Since` with `304 Not Modified`. Runs on its own thread and
//! runtime; dropping it closes the port.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One request the server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRequest {
    /// Request path.
    pub path: String,
    /// `If-None-Match` header.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` header.
    pub if_modified_since: Option<String>,
    /// Status answered.
    pub status: u16,
}

#[derive(Debug)]
struct File {
    bytes: Arc<Vec<u8>>,
    etag: String,
    last_modified: String,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, File>,
    version: u64,
    fail_with: Option<u16>,
    delay: Duration,
    requests: Vec<SeenRequest>,
}

/// The running server.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Plain HTTP.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// HTTPS with this certificate chain and key (PEM); the name to use is `127.0.0.1`.
    pub fn start_tls(cert_chain_pem: &str, key_pem: &str) -> Self {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate PEM");
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .expect("server key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
        Self::spawn(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    fn spawn(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let std_listener = StdListener::bind("127.0.0.1:0").expect("bind loopback");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let is_tls = tls.is_some();
        let st = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((sock, _)) = accepted else { continue };
                            let st = Arc::clone(&st);
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                match tls {
                                    Some(acceptor) => {
                                        if let Ok(s) = acceptor.accept(sock).await {
                                            serve(s, st).await;
                                        }
                                    }
                                    None => serve(sock, st).await,
                                }
                            });
                        }
                    }
                }
            });
        });
        Self {
            addr,
            tls: is_tls,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Serve `bytes` at `path` (a new ETag and Last-Modified each time).
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        let mut st = self.state.lock().expect("state");
        st.version += 1;
        let etag = format!("\"v{}-{}\"", st.version, bytes.len());
        // Last-Modified has one-second resolution; use a synthetic, strictly increasing one.
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + st.version as i64)
            .expect("time");
        let last_modified = http_date(t);
        st.files.insert(
            path.to_owned(),
            File {
                bytes: Arc::new(bytes),
                etag,
                last_modified,
            },
        );
    }

    /// Stop serving `path` (404).
    pub fn remove(&self, path: &str) {
        self.state.lock().expect("state").files.remove(path);
    }

    /// Answer every request with this status (`None`: serve normally).
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.lock().expect("state").fail_with = status;
    }

    /// Wait this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("state").delay = delay;
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.lock().expect("state").requests.clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A URL on a loopback port where nothing listens (connection refused).
pub fn dead_url(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", crate::ports::free_port())
}

fn http_date(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).expect("http date")
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let if_none_match = headers.get("if-none-match").cloned();
    let if_modified_since = headers.get("if-modified-since").cloned();

    let (delay, response) = {
        let mut st = state.lock().expect("state");
        let (status, body, extra) = if let Some(code) = st.fail_with {
            (
                code,
                Arc::new(b"failing on purpose\n".to_vec()),
                String::new(),
            )
        } else if method != "GET" {
            (405, Arc::new(Vec::new()), String::new())
        } else {
            match st.files.get(&path) {
                None => (404, Arc::new(b"not found\n".to_vec()), String::new()),
                Some(f) => {
                    let validators =
                        format!("ETag: {}\r\nLast-Modified: {}\r\n", f.etag, f.last_modified);
                    let fresh = match (&if_none_match, &if_modified_since) {
                        (Some(inm), _) => inm.split(',').any(|t| t.trim() == f.etag),
                        (None, Some(ims)) => *ims == f.last_modified,
                        (None, None) => false,
                    };
                    if fresh {
                        (304, Arc::new(Vec::new()), validators)
                    } else {
                        (200, Arc::clone(&f.bytes), validators)
                    }
                }
            }
        };
        st.requests.push(SeenRequest {
            path: path.clone(),
            if_none_match,
            if_modified_since,
            status,
        });
        (st.delay, (status, body, extra))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (status, body, extra) = response;
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let content_length = if status == 304 { 0 } else { body.len() };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/pkix-crl\r\nContent-Length: {content_length}\r\n{extra}Connection: close\r\n\r\n"
    );
    if sock.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    if status != 304 {
        let _ = sock.write_all(&body).await;
    }
    let _ = sock.flush().await;
    let _ = sock.shutdown().await;
}
