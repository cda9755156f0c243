//! The rendered format: round trips, deduplication, parts, and every way a set of
//! Secrets can be wrong.

use std::collections::BTreeMap;

use super::*;

const SEED: &str = include_str!("../../../../fuzz/seeds/config_loader/certificate-only.yaml");

/// A configuration of `n` TLS listeners sharing the seed's key, chain and client CAs.
fn listeners(n: usize) -> GatewayConfig {
    let seed = GatewayConfig::from_yaml(SEED, "seed").unwrap();
    let (_, first) = seed.listeners.iter().next().unwrap();
    let mut config = seed.clone();
    config.listeners = (0..n)
        .map(|i| {
            let mut l = first.clone();
            l.port = 10_000 + u16::try_from(i).unwrap();
            (format!("l{i}"), l)
        })
        .collect();
    config
}

/// Owned Secret contents, as a test holds them.
struct Owned {
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
}

impl Owned {
    fn view(&self) -> SecretView<'_> {
        SecretView::new(
            self.data.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            Some(&self.annotations),
        )
    }
}

/// The Secrets of an encoded configuration: head first.
fn secrets(e: &Encoded) -> Vec<Owned> {
    let ann = BTreeMap::from([(HASH_ANNOTATION.to_owned(), e.manifest.hash.clone())]);
    e.parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut data = BTreeMap::from([(PAYLOAD_KEY.to_owned(), p.clone())]);
            if i == 0 {
                data.insert(
                    MANIFEST_KEY.to_owned(),
                    serde_json::to_vec(&e.manifest).unwrap(),
                );
            }
            Owned {
                data,
                annotations: ann.clone(),
            }
        })
        .collect()
}

fn decode_all(s: &[Owned]) -> Result<(GatewayConfig, String), DecodeError> {
    let others: Vec<Option<SecretView<'_>>> = s[1..].iter().map(|o| Some(o.view())).collect();
    decode(&s[0].view(), "postern-config", &others)
}

fn small_parts() -> Limits {
    Limits {
        part_bytes: 512,
        max_parts: MAX_PARTS,
    }
}

#[test]
fn format_2_round_trips_and_stores_each_block_once() {
    let config = listeners(50);
    let hash = config.hash();
    let e = encode(&config, &hash, &Limits::default());
    assert_eq!(e.parts.len(), 1);
    let (back, h) = decode_all(&secrets(&e)).unwrap();
    assert_eq!(back, config);
    assert_eq!(h, hash);
    // Fifty copies of the same chain, key and CA bundle: one copy of each block.
    let doc = blocks::Document::from_config(&config);
    let one = blocks::Document::from_config(&listeners(1));
    assert_eq!(doc.pem_blocks, one.pem_blocks);
    // And the inline form is far larger than the packed one.
    assert!(config.to_yaml().len() > 20 * e.compressed_bytes());
}

#[test]
fn encoding_is_deterministic() {
    let config = listeners(3);
    let a = encode(&config, &config.hash(), &Limits::default());
    let b = encode(&config, &config.hash(), &Limits::default());
    assert_eq!(a, b);
}

#[test]
fn parts_are_checked_one_by_one() {
    let config = listeners(5);
    let hash = config.hash();
    let e = encode(&config, &hash, &small_parts());
    assert!(e.parts.len() > 2, "{} parts", e.parts.len());
    let mut s = secrets(&e);
    assert_eq!(decode_all(&s).unwrap().1, hash);

    // A part missing.
    let others: Vec<Option<SecretView<'_>>> = s[1..]
        .iter()
        .enumerate()
        .map(|(i, o)| (i != 0).then(|| o.view()))
        .collect();
    assert!(matches!(
        decode(&s[0].view(), "postern-config", &others),
        Err(DecodeError::PartMissing { index: 1, secret, .. }) if secret == "postern-config-1"
    ));
    // A part of another generation (or edited).
    let other = listeners(6);
    let o = encode(&other, &other.hash(), &small_parts());
    s[2].data.insert(PAYLOAD_KEY.into(), o.parts[2].clone());
    assert!(matches!(
        decode_all(&s),
        Err(DecodeError::PartMismatch { index: 2, .. })
    ));
    // A key added to a part.
    let mut s = secrets(&e);
    s[1].data.insert("extra".into(), b"x".to_vec());
    assert!(matches!(decode_all(&s), Err(DecodeError::ExtraKey { key, .. }) if key == "extra"));
}

#[test]
fn the_head_is_checked() {
    let config = listeners(2);
    let e = encode(&config, &config.hash(), &Limits::default());
    // Annotation not matching the content.
    let mut s = secrets(&e);
    s[0].annotations
        .insert(HASH_ANNOTATION.into(), "sha256:00".into());
    assert!(matches!(
        decode_all(&s),
        Err(DecodeError::HashMismatch { .. })
    ));
    // No annotation.
    let mut s = secrets(&e);
    s[0].annotations.clear();
    assert!(matches!(decode_all(&s), Err(DecodeError::MissingHash)));
    // Payload edited without the manifest.
    let mut s = secrets(&e);
    s[0].data.insert(PAYLOAD_KEY.into(), b"garbage".to_vec());
    assert!(matches!(
        decode_all(&s),
        Err(DecodeError::PartMismatch { index: 0, .. })
    ));
    // A manifest of an unknown format, or of too many parts.
    for (manifest, want) in [
        (
            Manifest {
                format: 3,
                ..e.manifest.clone()
            },
            "format 3",
        ),
        (
            Manifest {
                parts: vec![e.manifest.parts[0].clone(); MAX_PARTS + 1],
                ..e.manifest.clone()
            },
            "9 parts",
        ),
    ] {
        let mut s = secrets(&e);
        s[0].data
            .insert(MANIFEST_KEY.into(), serde_json::to_vec(&manifest).unwrap());
        let err = decode_all(&s).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    // Consistent digests over a document that is not one.
    let mut s = secrets(&e);
    let junk = b"not gzip".to_vec();
    let manifest = Manifest {
        parts: vec![Part {
            digest: pack::digest(&junk),
            bytes: junk.len() as u64,
        }],
        ..e.manifest.clone()
    };
    s[0].data.insert(PAYLOAD_KEY.into(), junk);
    s[0].data
        .insert(MANIFEST_KEY.into(), serde_json::to_vec(&manifest).unwrap());
    assert!(matches!(decode_all(&s), Err(DecodeError::Decompress(_))));
}

#[test]
fn format_1_is_still_read() {
    let config = listeners(1);
    let inline = |hash: &str| Owned {
        data: BTreeMap::from([(CONFIG_KEY.to_owned(), config.to_yaml().into_bytes())]),
        annotations: BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash.to_owned())]),
    };
    let (decoded, hash) = decode_all(&[inline(&config.hash())]).unwrap();
    assert_eq!(decoded, config);
    assert_eq!(hash, config.hash());
    assert!(matches!(
        decode_all(&[inline("sha256:00")]),
        Err(DecodeError::HashMismatch { .. })
    ));
    let mut s = inline(&config.hash());
    s.data.clear();
    assert!(matches!(decode_all(&[s]), Err(DecodeError::MissingKey)));
    let mut s = inline(&config.hash());
    s.data.insert("extra".into(), vec![]);
    assert!(matches!(
        decode_all(&[s]),
        Err(DecodeError::ExtraKey { .. })
    ));
}

/// Incompressible PEM-armoured text of `bytes` bytes, different for each `seed`.
fn noise(seed: u8, bytes: usize) -> String {
    use sha2::{Digest, Sha256};
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    let mut block = Sha256::digest([seed]);
    while out.len() < bytes {
        block = Sha256::digest(block);
        out.push_str(&hex::encode(block));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[test]
fn the_production_limit_is_eight_secrets_of_900_kib() {
    // Distinct client CA bundles of 1 MiB each (the most one Secret can hold): eight fit
    // once compressed, not twenty.
    let mut config = listeners(20);
    for (i, l) in config.listeners.values_mut().enumerate() {
        l.tls.as_mut().unwrap().client_ca_pem = Some(noise(i as u8, 1 << 20));
    }
    let e = encode(&config, &config.hash(), &Limits::default());
    let err = e.check(&Limits::default()).unwrap_err();
    assert_eq!(err.limit_bytes, 8 * 900 * 1024);
    assert!(err.compressed_bytes > err.limit_bytes);
    assert!(
        err.to_string()
            .contains("over the limit of 7372800 bytes (8 Secrets × 921600 bytes)"),
        "{err}"
    );
    // The same configuration in three listeners fits, in several Secrets.
    config.listeners = config.listeners.into_iter().take(3).collect();
    let e = encode(&config, &config.hash(), &Limits::default());
    e.check(&Limits::default()).unwrap();
    assert!(e.parts.len() > 1);
    assert!(e.parts.iter().all(|p| p.len() <= PART_BYTES));
    assert_eq!(decode_all(&secrets(&e)).unwrap().0, config);
    // A lowered limit is honoured; it is never raised past the production one.
    assert!(e.check(&Limits::with_max_parts(1)).is_err());
    assert_eq!(Limits::with_max_parts(100), Limits::default());
}
