//! `openssl ocsp` as a real OCSP responder on a free loopback port, answering from an
//! OpenSSL CA database (`index.txt` format); stopped when dropped. Used by the OCSP
//! end-to-end tests and by the benchmark's OCSP section.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ports::free_port;

/// A running `openssl ocsp -index ... -port ...`.
#[derive(Debug)]
pub struct OcspResponder(Child, u16);

impl OcspResponder {
    /// Answer in `dir` from the database `index` for the CA `ca` (certificate file),
    /// signing with `signer` (`<signer>.crt` and `<signer>.key`). Its answers say
    /// `nextUpdate` five minutes ahead. Fails when openssl is missing or the responder
    /// does not answer a real request within 10 s.
    ///
    /// A free port can still be refused to `openssl ocsp` (it binds without
    /// `SO_REUSEADDR`, so a port with connections in TIME_WAIT — common right after a
    /// load run on loopback — is "in use" for it): when the responder exits at once, it
    /// is started again on another port.
    pub fn start(dir: &Path, index: &str, ca: &str, signer: &str) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exits = Vec::new();
        loop {
            let port = free_port();
            let mut child = Command::new("openssl")
                .args([
                    "ocsp",
                    "-index",
                    index,
                    "-port",
                    &port.to_string(),
                    "-CA",
                    ca,
                    "-rsigner",
                    &format!("{signer}.crt"),
                    "-rkey",
                    &format!("{signer}.key"),
                    "-nmin",
                    "5",
                ])
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting `openssl ocsp` (openssl is required)")?;
            // A bare TCP probe would wedge `openssl ocsp` (it serves one connection at a
            // time and waits on an empty one): probe with a real OCSP request instead.
            let url = format!("http://127.0.0.1:{port}/");
            loop {
                if answers(dir, ca, &url) {
                    return Ok(Self(child, port));
                }
                if let Some(status) = child.try_wait()? {
                    exits.push(format!("port {port}: {status}"));
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "openssl ocsp on port {port} did not answer within 10 s (earlier attempts: {exits:?})"
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if Instant::now() >= deadline || exits.len() >= 5 {
                bail!("openssl ocsp exited at once, every time: {exits:?}");
            }
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.1)
    }
}

/// Whether a responder at `url` answers a real OCSP request.
fn answers(dir: &Path, ca: &str, url: &str) -> bool {
    Command::new("openssl")
        .args([
            "ocsp",
            "-issuer",
            ca,
            "-serial",
            "1",
            "-url",
            url,
            "-timeout",
            "2",
            "-noverify",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
