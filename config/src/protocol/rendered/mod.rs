//! The rendered configuration Secrets: the one encoder (controller) and the one decoder
//! (controller and gateways), over borrowed views of the Secrets' data.
//!
//! Format 2 (written): the head Secret (`postern-config`) holds [`MANIFEST_KEY`] (a
//! [`Manifest`]: the content hash and each part's digest) and part 0 under
//! [`PAYLOAD_KEY`]; part `i` is in the Secret `<head>-<i>` ([`part_secret_name`]), key
//! [`PAYLOAD_KEY`]. The parts are a gzip-compressed document in which each distinct PEM
//! block is stored once. A reader applies a configuration only when every part matches
//! the manifest's digest and the whole its annotated hash: never a mix of two
//! generations.
//!
//! Format 1 (read, for Secrets written by earlier controllers or by hand): the head
//! Secret holds the configuration YAML under [`CONFIG_KEY`].

mod blocks;
mod pack;
mod v1;

use std::collections::BTreeMap;

pub use pack::{
    Encoded, FORMAT, Limits, MAX_DOCUMENT_BYTES, MAX_PARTS, Manifest, PART_BYTES, Part, TooLarge,
    encode,
};

use super::{CONFIG_KEY, HASH_ANNOTATION};
use crate::{GatewayConfig, LoadError};

/// Key of the manifest in the head Secret.
pub const MANIFEST_KEY: &str = "manifest.json";
/// Key of a part in each Secret of the set.
pub const PAYLOAD_KEY: &str = "payload";

/// Name of the Secret holding part `index` of the set headed by `head`.
pub fn part_secret_name(head: &str, index: usize) -> String {
    if index == 0 {
        head.to_owned()
    } else {
        format!("{head}-{index}")
    }
}

/// A Secret as the decoder reads it: borrowed data and annotations.
#[derive(Clone, Debug, Default)]
pub struct SecretView<'a> {
    /// Its data, by key.
    pub data: BTreeMap<&'a str, &'a [u8]>,
    /// Its annotations.
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

impl<'a> SecretView<'a> {
    /// A view of `data` and `annotations`.
    pub fn new(
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        annotations: Option<&'a BTreeMap<String, String>>,
    ) -> Self {
        Self {
            data: data.into_iter().collect(),
            annotations,
        }
    }

    /// A view of a Secret's `data` map (whatever its byte type: `bytes` borrows from it)
    /// and annotations, as both the controller and the gateway hold them.
    pub fn of_map<V>(
        data: Option<&'a BTreeMap<String, V>>,
        bytes: fn(&V) -> &[u8],
        annotations: Option<&'a BTreeMap<String, String>>,
    ) -> Self {
        Self::new(
            data.into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), bytes(v))),
            annotations,
        )
    }

    /// The annotated content hash, if any.
    pub fn hash(&self) -> Option<&'a str> {
        self.annotations
            .and_then(|a| a.get(HASH_ANNOTATION))
            .map(String::as_str)
    }
}

/// What a head Secret says, before the other parts are read.
#[derive(Clone, Debug)]
pub enum Head<'a> {
    /// Format 1: the configuration inline.
    Inline(&'a [u8]),
    /// Format 2: the manifest and part 0.
    Parts {
        /// The manifest.
        manifest: Manifest,
        /// Part 0.
        first: &'a [u8],
    },
}

impl Head<'_> {
    /// How many Secrets the configuration takes (the head included).
    pub fn parts(&self) -> usize {
        match self {
            Head::Inline(_) => 1,
            Head::Parts { manifest, .. } => manifest.parts.len(),
        }
    }
}

/// Why rendered Secrets could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The head Secret has neither [`MANIFEST_KEY`] nor [`CONFIG_KEY`].
    #[error("secret has neither a {MANIFEST_KEY:?} nor a {CONFIG_KEY:?} key")]
    MissingKey,
    /// A key other than the format's is present (added by hand).
    #[error("secret {secret} has a key the format does not know: {key:?}")]
    ExtraKey {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// The inline configuration is not UTF-8.
    #[error("{CONFIG_KEY:?} is not UTF-8")]
    NotUtf8,
    /// The inline YAML is not a configuration.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The manifest does not parse.
    #[error("{MANIFEST_KEY:?} does not parse: {0}")]
    Manifest(serde_json::Error),
    /// The manifest names a format this version does not read.
    #[error("rendered format {found} is not supported (this version reads 1 and {FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// The manifest's part count is outside 1..=[`MAX_PARTS`].
    #[error("the manifest lists {found} parts (1 to {MAX_PARTS} are possible)")]
    PartCount {
        /// Parts listed.
        found: usize,
    },
    /// A part's Secret is missing, or has no [`PAYLOAD_KEY`].
    #[error("part {index} (secret {secret}) is missing")]
    PartMissing {
        /// The part.
        index: usize,
        /// Its Secret.
        secret: String,
    },
    /// A part's bytes do not match the manifest: edited by hand, or of another generation.
    #[error("part {index} (secret {secret}) has {actual}, the manifest says {expected}")]
    PartMismatch {
        /// The part.
        index: usize,
        /// Its Secret.
        secret: String,
        /// The manifest's digest.
        expected: String,
        /// The part's digest.
        actual: String,
    },
    /// The parts do not inflate.
    #[error("the parts do not decompress: {0}")]
    Decompress(std::io::Error),
    /// The document inflates beyond [`MAX_DOCUMENT_BYTES`].
    #[error("the document inflates beyond {limit} bytes")]
    DocumentTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The document does not parse as a configuration.
    #[error("the rendered document does not parse: {0}")]
    Document(serde_json::Error),
    /// A PEM field refers to a block the document does not hold.
    #[error("{field} refers to PEM block {digest}, which the document does not hold")]
    MissingBlock {
        /// The field.
        field: String,
        /// The block's digest.
        digest: String,
    },
    /// The document lists blocks for a PEM field the configuration does not have.
    #[error("the document has PEM blocks for {field}, which the configuration does not have")]
    StrayPemRef {
        /// The field.
        field: String,
    },
    /// The head Secret has no [`HASH_ANNOTATION`].
    #[error("secret has no {HASH_ANNOTATION} annotation")]
    MissingHash,
    /// The content does not match the annotated hash: it was edited by hand (drift).
    #[error("content hash {actual} does not match the annotated {annotated} (edited by hand?)")]
    HashMismatch {
        /// The annotation.
        annotated: String,
        /// The hash of the content.
        actual: String,
    },
}

/// Reads the head Secret: which format, and for format 2 its manifest. Refuses keys the
/// format does not have.
pub fn read_head<'a>(head: &SecretView<'a>, name: &str) -> Result<Head<'a>, DecodeError> {
    let extra = |allowed: &[&str]| {
        head.data
            .keys()
            .find(|k| !allowed.contains(k))
            .map(|k| DecodeError::ExtraKey {
                secret: name.to_owned(),
                key: (*k).to_owned(),
            })
    };
    if let Some(manifest) = head.data.get(MANIFEST_KEY) {
        if let Some(e) = extra(&[MANIFEST_KEY, PAYLOAD_KEY]) {
            return Err(e);
        }
        let manifest: Manifest = serde_json::from_slice(manifest).map_err(DecodeError::Manifest)?;
        if manifest.format != FORMAT {
            return Err(DecodeError::Format {
                found: manifest.format,
            });
        }
        if manifest.parts.is_empty() || manifest.parts.len() > MAX_PARTS {
            return Err(DecodeError::PartCount {
                found: manifest.parts.len(),
            });
        }
        let first = head
            .data
            .get(PAYLOAD_KEY)
            .copied()
            .ok_or(DecodeError::PartMissing {
                index: 0,
                secret: name.to_owned(),
            })?;
        return Ok(Head::Parts { manifest, first });
    }
    let inline = head
        .data
        .get(CONFIG_KEY)
        .copied()
        .ok_or(DecodeError::MissingKey)?;
    if let Some(e) = extra(&[CONFIG_KEY]) {
        return Err(e);
    }
    Ok(Head::Inline(inline))
}

/// Checks part `index` (a Secret named `secret`, `None` when it does not exist) against
/// the manifest. Returns its bytes.
pub fn check_part<'a>(
    manifest: &Manifest,
    index: usize,
    secret: &str,
    view: Option<&SecretView<'a>>,
) -> Result<&'a [u8], DecodeError> {
    let missing = || DecodeError::PartMissing {
        index,
        secret: secret.to_owned(),
    };
    let view = view.ok_or_else(missing)?;
    let bytes = view.data.get(PAYLOAD_KEY).copied().ok_or_else(missing)?;
    let allowed = |k: &str| k == PAYLOAD_KEY || (index == 0 && k == MANIFEST_KEY);
    if let Some(key) = view.data.keys().find(|k| !allowed(k)) {
        return Err(DecodeError::ExtraKey {
            secret: secret.to_owned(),
            key: (*key).to_owned(),
        });
    }
    let expected = &manifest.parts.get(index).ok_or_else(missing)?.digest;
    let actual = pack::digest(bytes);
    if &actual != expected {
        return Err(DecodeError::PartMismatch {
            index,
            secret: secret.to_owned(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Decodes a rendered configuration: the head Secret `name` and, for format 2, the
/// Secrets of parts 1… (`others[i - 1]` is part `i`, `None` when it does not exist).
/// Checks every part against the manifest and the whole against the annotated hash (a
/// hand edit or a mix of generations does not run). Returns the configuration and hash.
pub fn decode(
    head: &SecretView<'_>,
    name: &str,
    others: &[Option<SecretView<'_>>],
) -> Result<(GatewayConfig, String), DecodeError> {
    let annotated = head.hash().ok_or(DecodeError::MissingHash)?;
    let origin = format!("secret {name}");
    let config = match read_head(head, name)? {
        Head::Inline(bytes) => v1::decode(bytes, &origin)?,
        Head::Parts { manifest, .. } => {
            let mut parts = vec![check_part(&manifest, 0, name, Some(head))?];
            for index in 1..manifest.parts.len() {
                let secret = part_secret_name(name, index);
                let view = others.get(index - 1).and_then(Option::as_ref);
                parts.push(check_part(&manifest, index, &secret, view)?);
            }
            pack::unpack(&parts)?
        }
    };
    let actual = config.hash();
    if actual != annotated {
        return Err(DecodeError::HashMismatch {
            annotated: annotated.to_owned(),
            actual,
        });
    }
    Ok((config, actual))
}

#[cfg(test)]
mod tests;
