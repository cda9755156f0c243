//! The two crypto providers rustls can use, operation by operation, through the same
//! rustls interfaces a session calls them by: the server's signature (RSA-2048 PSS and
//! ECDSA P-256), the verification of the client's, one X25519 exchange, AES-256-GCM
//! record encryption and SHA-384 (the TLS 1.3 transcript hash of the suite in use).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustls::crypto::CryptoProvider;
use rustls::crypto::cipher::{AeadKey, Iv, OutboundChunks, OutboundPlainMessage};
use rustls::{CipherSuite, ContentType, NamedGroup, ProtocolVersion, SignatureScheme};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::pki::Pki;

/// The operations measured, in the report's order.
const OPERATIONS: [&str; 7] = [
    "RSA-2048 sign (PSS-SHA256)",
    "RSA-2048 verify (PSS-SHA256)",
    "ECDSA P-256 sign",
    "ECDSA P-256 verify",
    "X25519 key exchange (server's half)",
    "AES-256-GCM, one 16 KiB record",
    "SHA-384 over 16 KiB",
];

/// Microseconds per operation of `provider`, in [`OPERATIONS`]' order.
fn measure(provider: &CryptoProvider, rsa: &Pki, ecdsa: &Pki, time: Duration) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for (pki, scheme) in [
        (rsa, SignatureScheme::RSA_PSS_SHA256),
        (ecdsa, SignatureScheme::ECDSA_NISTP256_SHA256),
    ] {
        let der = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
            .context("the bench server key")?;
        let key = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| anyhow!("loading the key: {e}"))?;
        let signer = key
            .choose_scheme(&[scheme])
            .ok_or_else(|| anyhow!("no signer for {scheme:?}"))?;
        let message = [7u8; 64];
        out.push(per_op(time, || {
            signer.sign(&message).map(drop).map_err(|e| anyhow!("{e}"))
        })?);
        let signature = signer.sign(&message).map_err(|e| anyhow!("{e}"))?;
        let public = rcgen::KeyPair::from_pem(&pki.server_key_pem)?
            .public_key_raw()
            .to_vec();
        let verifier = provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == scheme)
            .and_then(|(_, algs)| algs.first())
            .ok_or_else(|| anyhow!("no verifier for {scheme:?}"))?;
        out.push(per_op(time, || {
            verifier
                .verify_signature(&public, &message, &signature)
                .map_err(|e| anyhow!("{e:?}"))
        })?);
    }
    let x25519 = provider
        .kx_groups
        .iter()
        .find(|g| g.name() == NamedGroup::X25519)
        .ok_or_else(|| anyhow!("no X25519"))?;
    let peer = x25519.start().map_err(|e| anyhow!("{e}"))?;
    let peer_public = peer.pub_key().to_vec();
    out.push(per_op(time, || {
        let ours = x25519.start().map_err(|e| anyhow!("{e}"))?;
        ours.complete(&peer_public)
            .map(drop)
            .map_err(|e| anyhow!("{e}"))
    })?);
    let suite = provider
        .cipher_suites
        .iter()
        .find(|s| s.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384)
        .and_then(|s| s.tls13())
        .ok_or_else(|| anyhow!("no TLS13_AES_256_GCM_SHA384"))?;
    let mut encrypter = suite
        .aead_alg
        .encrypter(AeadKey::from([3u8; 32]), Iv::new([5u8; 12]));
    let record = vec![0u8; 16 * 1024];
    // AWS-LC's TLS 1.3 AEAD insists on sequence numbers counted from 0, as a session's.
    let mut seq = 0;
    out.push(per_op(time, || {
        let message = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(&record),
        };
        let sealed = encrypter.encrypt(message, seq).map(drop);
        seq += 1;
        sealed.map_err(|e| anyhow!("{e}"))
    })?);
    let mut hash = suite.common.hash_provider.start();
    out.push(per_op(time, || {
        hash.update(&record);
        Ok(())
    })?);
    Ok(out)
}

/// Microseconds per call of `op`, run for about `time` after a warm-up.
fn per_op(time: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let warm = Instant::now();
    while warm.elapsed() < time / 10 {
        op()?;
    }
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < time {
        for _ in 0..16 {
            op()?;
        }
        n += 16;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// The report section: ring and aws-lc-rs, `rounds` alternating rounds of `time` per
/// operation; the median of each.
pub(crate) fn report(rsa: &Pki, ecdsa: &Pki, rounds: u32, time: Duration) -> Result<String> {
    let providers: [(&str, Arc<CryptoProvider>); 2] = [
        ("ring", Arc::new(rustls::crypto::ring::default_provider())),
        (
            "aws-lc-rs",
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        ),
    ];
    let mut results: Vec<Vec<Vec<f64>>> = vec![Vec::new(); providers.len()];
    for round in 0..rounds.max(1) {
        for (i, (name, provider)) in providers.iter().enumerate() {
            eprintln!("  crypto round {}: {name}", round + 1);
            results[i].push(measure(provider, rsa, ecdsa, time)?);
        }
    }
    let median = |runs: &[Vec<f64>], op: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[op]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut s = String::from("## The crypto providers, operation by operation\n\n");
    let _ = writeln!(
        s,
        "rustls' `ring` and `aws-lc-rs` providers through the interfaces a session calls them by \
         (the key provider's signer, the provider's signature verification algorithms, its X25519 group, \
         the TLS 1.3 AES-256-GCM record encrypter and the suite's hash), one thread, {rounds} alternating rounds; \
         the median microseconds per operation.\n"
    );
    let _ = writeln!(
        s,
        "| operation | ring µs | aws-lc-rs µs | ring / aws-lc-rs |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|");
    for (op, name) in OPERATIONS.iter().enumerate() {
        let (r, a) = (median(&results[0], op), median(&results[1], op));
        let _ = writeln!(s, "| {name} | {r:.2} | {a:.2} | {:.2}× |", r / a);
    }
    s.push('\n');
    Ok(s)
}
