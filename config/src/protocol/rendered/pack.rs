//! Packing the document into Secrets: gzip, then cut into parts of at most
//! [`Limits::part_bytes`], each in one Secret (the first in the head Secret, beside the
//! [`Manifest`] listing every part's digest). Deterministic: the same configuration
//! always gives the same bytes, so "up to date" is a byte comparison.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DecodeError;
use super::blocks::Document;
use crate::GatewayConfig;

/// The format of the rendered Secrets this version writes.
pub const FORMAT: u32 = 2;
/// Bytes of payload per Secret: a Secret holds at most 1 MiB of data; the rest is left
/// for the manifest.
pub const PART_BYTES: usize = 900 * 1024;
/// Secrets per namespace at most (the head and `-1` … `-7`): gateways may read exactly
/// these names (the chart's Role lists them).
pub const MAX_PARTS: usize = 8;

/// The document is never inflated beyond this (a hand-made Secret cannot exhaust a
/// gateway's memory); a real one is far smaller, its PEM blocks being stored once.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

/// How much one namespace's rendered configuration may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Payload bytes per Secret, at most [`PART_BYTES`].
    pub part_bytes: usize,
    /// Secrets, at most [`MAX_PARTS`].
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            part_bytes: PART_BYTES,
            max_parts: MAX_PARTS,
        }
    }
}

impl Limits {
    /// The production limits, lowered to `max_parts` Secrets (never raised: the gateways'
    /// permissions name [`MAX_PARTS`] Secrets).
    pub fn with_max_parts(max_parts: usize) -> Self {
        Self {
            max_parts: max_parts.clamp(1, MAX_PARTS),
            ..Self::default()
        }
    }

    /// Compressed bytes that fit.
    pub fn max_bytes(&self) -> usize {
        self.part_bytes * self.max_parts
    }
}

/// What the head Secret says about the set (key [`super::MANIFEST_KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// Content hash of the configuration (as annotated).
    pub hash: String,
    /// Bytes of the document before compression.
    pub uncompressed_bytes: u64,
    /// The parts in order: part 0 in the head Secret, part `i` in `<head>-<i>`.
    pub parts: Vec<Part>,
}

/// One part of the compressed document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Part {
    /// `sha256:<hex>` of the part's bytes.
    pub digest: String,
    /// Its length.
    pub bytes: u64,
}

/// A configuration packed for publishing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The manifest.
    pub manifest: Manifest,
    /// Each part's bytes, in order.
    pub parts: Vec<Vec<u8>>,
}

impl Encoded {
    /// Compressed bytes in all.
    pub fn compressed_bytes(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Whether it fits `limits`.
    pub fn check(&self, limits: &Limits) -> Result<(), TooLarge> {
        let compressed = self.compressed_bytes();
        if compressed > limits.max_bytes() {
            return Err(TooLarge {
                compressed_bytes: compressed,
                uncompressed_bytes: self.manifest.uncompressed_bytes,
                limit_bytes: limits.max_bytes(),
                max_parts: limits.max_parts,
            });
        }
        Ok(())
    }
}

/// A configuration that does not fit the Secrets it may use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the rendered configuration is {compressed_bytes} bytes compressed ({uncompressed_bytes} uncompressed), over the limit of {limit_bytes} bytes ({max_parts} Secrets × {} bytes)",
    limit_bytes / max_parts
)]
pub struct TooLarge {
    /// Its compressed size.
    pub compressed_bytes: usize,
    /// Its size before compression.
    pub uncompressed_bytes: u64,
    /// What fits.
    pub limit_bytes: usize,
    /// In how many Secrets.
    pub max_parts: usize,
}

pub(super) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Packs `config` (whose hash is `hash`) into parts of `limits.part_bytes`. Does not
/// check the number of parts: [`Encoded::check`] does, so a caller can say by how much
/// a configuration is too large.
pub fn encode(config: &GatewayConfig, hash: &str, limits: &Limits) -> Encoded {
    let json = serde_json::to_vec(&Document::from_config(config))
        .expect("the configuration model always serialises");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&json).expect("writing to memory");
    let compressed = gz.finish().expect("writing to memory");
    let parts: Vec<Vec<u8>> = compressed
        .chunks(limits.part_bytes.max(1))
        .map(<[u8]>::to_vec)
        .collect();
    Encoded {
        manifest: Manifest {
            format: FORMAT,
            hash: hash.to_owned(),
            uncompressed_bytes: json.len() as u64,
            parts: parts
                .iter()
                .map(|p| Part {
                    digest: digest(p),
                    bytes: p.len() as u64,
                })
                .collect(),
        },
        parts,
    }
}

/// Reads the configuration back from its parts (already checked against the manifest),
/// without joining them first.
pub(super) fn unpack(parts: &[&[u8]]) -> Result<GatewayConfig, DecodeError> {
    let joined = parts
        .iter()
        .fold(Box::new(std::io::empty()) as Box<dyn Read>, |r, p| {
            Box::new(r.chain(*p))
        });
    let mut json = Vec::new();
    GzDecoder::new(joined)
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(DecodeError::Decompress)?;
    if json.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(DecodeError::DocumentTooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let document: Document = serde_json::from_slice(&json).map_err(DecodeError::Document)?;
    document.into_config()
}
