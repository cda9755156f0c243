//! The one raw HTTP GET the tests and the benchmark send to admin and metrics endpoints
//! (`/readyz`, `/metrics`, `/config`, `/crl/{name}`): no client library, so what is
//! tested is the server's answer to a plain request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// `GET path` on `addr`: (status code, body). HTTP/1.0, so the answer is never chunked
/// and the server closes the connection after it.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    // Generous: a CRL status can wait behind a large CRL being indexed.
    http_get_within(addr, path, Duration::from_secs(10))
}

/// [`http_get`], waiting at most `timeout` for the answer (a stopped process gives none).
pub fn http_get_within(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    // One write: a server may answer after the first segment and close.
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    parse_response(&text)
}

/// Status code and body of a raw HTTP response.
fn parse_response(text: &str) -> Result<(u16, String)> {
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let (code, body) =
            parse_response("HTTP/1.0 503 Service Unavailable\r\nA: b\r\n\r\nnot ready\n").unwrap();
        assert_eq!((code, body.as_str()), (503, "not ready\n"));
        assert_eq!(parse_response("HTTP/1.1 200 OK\r\n\r\n").unwrap().1, "");
        assert!(parse_response("garbage").is_err());
    }

    #[test]
    fn gets_from_a_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "the request ends with an empty line");
                req.extend_from_slice(&buf[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello").unwrap();
            req
        });
        assert_eq!(http_get(addr, "/x").unwrap(), (200, "hello".to_owned()));
        assert!(t.join().unwrap().starts_with("GET /x HTTP/1.0\r\n"));
    }
}
