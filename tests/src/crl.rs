//! CAs, client certificates and CRLs made at test time (rcgen), including a fast writer for
//! very large CRLs (a million entries in well under a second) for the benchmark.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority (root or intermediate) with its key.
pub struct TestCa {
    /// Parameters (kept to issue with).
    pub params: CertificateParams,
    /// The CA key.
    pub key: KeyPair,
    /// The CA certificate.
    pub cert: rcgen::Certificate,
    /// Serial number of the CA certificate (DER INTEGER content, as in the certificate).
    pub serial: Vec<u8>,
}

/// A client (end-entity) certificate with its key.
pub struct TestCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (PKCS#8).
    pub key_pem: String,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// Serial number (DER INTEGER content, as in the certificate).
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("subject", &self.params.distinguished_name)
            .field("serial", &hex_string(&self.serial))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("serial", &hex_string(&self.serial))
            .finish_non_exhaustive()
    }
}

/// The serial number of a certificate as its DER INTEGER content (what the revocation
/// check is asked about).
pub fn raw_serial(der: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("certificate");
    c.raw_serial().to_vec()
}

/// Upper-case hex, as `{sn}` and `crl inspect --serial` take it.
pub fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn ca_params(cn: &str, serial: &[u8]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Postern Test PKI");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    params
}

impl TestCa {
    /// A self-signed root.
    pub fn root(cn: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let serial = vec![0x10, 0x01];
        let params = ca_params(cn, &serial);
        let cert = params.self_signed(&key).expect("root");
        Self {
            params,
            key,
            cert,
            serial,
        }
    }

    /// An intermediate CA issued by `parent` with `serial`.
    pub fn intermediate(cn: &str, parent: &TestCa, serial: &[u8]) -> Self {
        let key = KeyPair::generate().expect("key");
        let params = ca_params(cn, serial);
        let cert = params
            .signed_by(&key, &parent.issuer())
            .expect("intermediate");
        let serial = raw_serial(cert.der());
        Self {
            params,
            key,
            cert,
            serial,
        }
    }

    /// A TLS server certificate for `name` (a DNS name or IP address), issued by this CA:
    /// (chain PEM, key PEM).
    pub fn server(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
        let cert = params.signed_by(&key, &self.issuer()).expect("server cert");
        (cert.pem(), key.serialize_pem())
    }

    /// The same CA name with another key (a CRL signed by it must be refused).
    pub fn impostor(&self) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = self.params.self_signed(&key).expect("impostor");
        Self {
            params: self.params.clone(),
            key,
            cert,
            serial: self.serial.clone(),
        }
    }

    /// The issuer handle for rcgen.
    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// CA certificate PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// CA certificate DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// Raw DER of the subject Name.
    pub fn subject_der(&self) -> Vec<u8> {
        let (_, c) = x509_parser::parse_x509_certificate(self.cert.der()).expect("own cert");
        c.subject().as_raw().to_vec()
    }

    /// The key id that certificates issued by this CA carry as Authority Key Identifier.
    pub fn key_id(&self) -> Vec<u8> {
        self.params.key_identifier(&self.key)
    }

    /// A TLS client certificate for `cn` with `serial`.
    pub fn client(&self, cn: &str, serial: &[u8]) -> TestCert {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(30);
        let cert = params.signed_by(&key, &self.issuer()).expect("client cert");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: raw_serial(cert.der()),
        }
    }

    /// A CRL (DER) listing `revoked` serials, numbered `number`, with thisUpdate and
    /// nextUpdate at the given offsets from now.
    pub fn crl(
        &self,
        number: u64,
        revoked: &[&[u8]],
        this_update_offset: Duration,
        next_update_offset: Duration,
    ) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now + this_update_offset,
            next_update: now + next_update_offset,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::hours(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer())
            .expect("crl")
            .der()
            .to_vec()
    }

    /// A current CRL (thisUpdate a minute ago, nextUpdate in an hour).
    pub fn current_crl(&self, number: u64, revoked: &[&[u8]]) -> Vec<u8> {
        self.crl(number, revoked, Duration::minutes(-1), Duration::hours(1))
    }

    /// A CRL with `count` entries of `serial_len`-byte serials (distinct, derived from the
    /// index), every `reason_every`-th with a reasonCode extension (0: none), written
    /// directly as DER and signed: fast enough for a million entries.
    pub fn big_crl(
        &self,
        number: u64,
        count: usize,
        serial_len: usize,
        reason_every: usize,
    ) -> Vec<u8> {
        assert!((8..=20).contains(&serial_len), "serial_len must be 8..=20");
        let now = OffsetDateTime::now_utc();
        let alg = ECDSA_SHA256;
        let date = utc_time(now - Duration::hours(1));
        let mut list = Vec::with_capacity(count * (serial_len + 36));
        for i in 0..count {
            let serial = big_serial(i as u64, serial_len);
            let mut entry_len = 2 + serial_len + date.len();
            let with_reason = reason_every != 0 && i % reason_every == 0;
            if with_reason {
                entry_len += REASON_EXT.len();
            }
            list.push(0x30);
            push_len(&mut list, entry_len);
            list.push(0x02);
            list.push(serial_len as u8);
            list.extend_from_slice(&serial[..serial_len]);
            list.extend_from_slice(&date);
            if with_reason {
                list.extend_from_slice(&REASON_EXT);
            }
        }
        let mut tbs_body = vec![0x02, 0x01, 0x01];
        tbs_body.extend_from_slice(&alg);
        tbs_body.extend(self.subject_der());
        tbs_body.extend(utc_time(now - Duration::minutes(1)));
        tbs_body.extend(utc_time(now + Duration::hours(24)));
        tbs_body.push(0x30);
        push_len(&mut tbs_body, list.len());
        tbs_body.extend_from_slice(&list);
        drop(list);
        // crlExtensions: authorityKeyIdentifier + cRLNumber
        let kid = self.key_id();
        let aki = der(0x30, &der(0x80, &kid));
        let mut exts = ext(&[0x55, 0x1d, 35], &aki);
        exts.extend(ext(&[0x55, 0x1d, 20], &der(0x02, &int_bytes(number))));
        tbs_body.extend(der(0xa0, &der(0x30, &exts)));
        let tbs = der(0x30, &tbs_body);
        drop(tbs_body);
        let sig = self.key.sign(&tbs).expect("sign");
        let mut bits = vec![0u8];
        bits.extend(sig);
        let mut body = tbs;
        body.extend_from_slice(&alg);
        body.extend(der(0x03, &bits));
        der(0x30, &body)
    }
}

/// The serial of entry `i` in [`TestCa::big_crl`]: positive, `len` bytes, spread out.
pub fn big_serial(i: u64, len: usize) -> [u8; 20] {
    let mut s = [0u8; 20];
    // splitmix64 of the index: distinct and random-looking; the first byte stays positive
    // and non-zero so the DER INTEGER is minimal.
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for chunk in s[..len].chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let b = z.to_be_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    // Keep the index itself in the last four bytes so serials never collide.
    s[len - 4..len].copy_from_slice(&(i as u32).to_be_bytes());
    s[0] = (s[0] & 0x7f) | 0x01;
    s
}

const ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// crlEntryExtensions with reasonCode keyCompromise.
const REASON_EXT: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, 0x01,
];

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

fn ext(oid: &[u8], value: &[u8]) -> Vec<u8> {
    let mut e = der(0x06, oid);
    e.extend(der(0x04, value));
    der(0x30, &e)
}

fn int_bytes(n: u64) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count().min(7);
    let mut v = b[skip..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    v
}

fn utc_time(t: OffsetDateTime) -> Vec<u8> {
    let s = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    der(0x17, s.as_bytes())
}

/// PEM of a DER CRL.
pub fn crl_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN X509 CRL-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END X509 CRL-----\n");
    out
}

/// A `postern-gateway` process for the CRL tests and benchmarks: started with a
/// configuration file and an admin port on loopback, ready once `/readyz` answers 200,
/// killed on drop. Its JSON log is kept for assertions.
#[derive(Debug)]
pub struct GatewayProcess {
    child: std::process::Child,
    /// Admin port on 127.0.0.1.
    pub admin_port: u16,
    dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Start the workspace's `postern-gateway` with `config` and extra arguments, and wait
    /// for it to be ready.
    pub fn start(
        config: &postern_config::GatewayConfig,
        args: &[&str],
        log_level: &str,
    ) -> anyhow::Result<Self> {
        let mut gw = Self::spawn(config, args, log_level)?;
        gw.wait_ready(std::time::Duration::from_secs(60))?;
        Ok(gw)
    }

    /// [`GatewayProcess::start`] without waiting for readiness.
    pub fn spawn(
        config: &postern_config::GatewayConfig,
        args: &[&str],
        log_level: &str,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let bin = crate::kube::workspace_bin("postern-gateway")?;
        let dir = tempfile::Builder::new()
            .prefix("postern-crl-gw-")
            .tempdir()?;
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, config.to_yaml())?;
        let admin_port = free_port();
        let child = std::process::Command::new(bin)
            .arg("--config")
            .arg(&path)
            .arg("--admin-address")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(["--log-format", "json"])
            .args(args)
            .env("POSTERN_LOG", log_level)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("gateway.log"))?)
            .spawn()
            .context("starting postern-gateway")?;
        Ok(Self {
            child,
            admin_port,
            dir,
        })
    }

    /// Wait until `/readyz` answers 200 (or the process exits, or `within` passes).
    pub fn wait_ready(&mut self, within: std::time::Duration) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("postern-gateway exited ({status}):\n{}", self.log());
            }
            if self.get("/readyz").is_ok_and(|(code, _)| code == 200) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "postern-gateway not ready within {within:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// GET a path of the admin endpoint: (status, body).
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        Ok((code, body))
    }

    /// The status of CRL source `name` (`GET /crl/{name}`), if it exists.
    pub fn crl_status(&self, name: &str) -> Option<serde_json::Value> {
        match self.get(&format!("/crl/{name}")) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Wait until `pred` holds for the status of CRL source `name`.
    pub fn wait_crl(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(s) = self.crl_status(name)
                && pred(&s)
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}\n{}",
                self.crl_status(name),
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time used so far by all threads of the process (from the scheduler's
    /// per-thread accounting, nanosecond resolution).
    pub fn cpu_time(&self) -> std::time::Duration {
        let mut ns = 0u64;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for t in tasks.flatten() {
                if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                    ns += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        std::time::Duration::from_nanos(ns)
    }

    /// The gateway's log (JSON lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Replace the configuration file (the gateway reloads it).
    pub fn write_config(&self, config: &postern_config::GatewayConfig) {
        let path = self.dir.path().join("gateway.yaml");
        let tmp = self.dir.path().join("gateway.yaml.tmp");
        std::fs::write(&tmp, config.to_yaml()).expect("write config");
        std::fs::rename(&tmp, &path).expect("replace config");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free loopback port")
}
