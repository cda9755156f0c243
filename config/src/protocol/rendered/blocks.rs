//! PEM deduplication: every PEM field of a configuration is cut into its blocks, each
//! distinct block is stored once under its digest, and the field keeps the list of
//! digests. A thousand Listeners sharing one client CA bundle carry it once.
//!
//! The cut is exact: a field is the concatenation of its pieces, each piece ending just
//! after an `-----END …-----` line (text between blocks stays with the block after it),
//! so decoding gives back the very same text and the content hash does not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DecodeError;
use crate::GatewayConfig;

/// The document inside a rendered Secret (format 2): the configuration with its PEM
/// fields emptied, which blocks each field is made of, and the blocks by digest.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Document {
    /// The configuration; every PEM field listed in `pem_refs` is empty.
    pub config: GatewayConfig,
    /// Field path (as [`pem_fields`] names it) → digests of its blocks, in order.
    pub pem_refs: BTreeMap<String, Vec<String>>,
    /// Digest (`sha256:<hex>` of the block's bytes) → the block.
    pub pem_blocks: BTreeMap<String, String>,
}

/// Every PEM field of `config` that is present, with a stable path naming it.
fn pem_fields(config: &mut GatewayConfig) -> Vec<(String, &mut String)> {
    let mut out = Vec::new();
    for (name, l) in &mut config.listeners {
        if let Some(tls) = &mut l.tls {
            out.push((
                format!("listeners.{name}.tls.certificateChainPem"),
                &mut tls.certificate_chain_pem,
            ));
            out.push((
                format!("listeners.{name}.tls.privateKeyPem"),
                &mut tls.private_key_pem,
            ));
            if let Some(ca) = &mut tls.client_ca_pem {
                out.push((format!("listeners.{name}.tls.clientCaPem"), ca));
            }
        }
        if let Some(ca) = &mut l.next_hop.ca_pem {
            out.push((format!("listeners.{name}.nextHop.caPem"), ca));
        }
    }
    for (name, p) in &mut config.ldap_profiles {
        if let Some(ca) = &mut p.ca_pem {
            out.push((format!("ldapProfiles.{name}.caPem"), ca));
        }
    }
    out
}

/// The pieces of a PEM text, each ending after an `-----END` line (the last may be
/// trailing text); their concatenation is the text.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("-----END ") {
        let end = rest[at..].find('\n').map_or(rest.len(), |n| at + n + 1);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn digest(block: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(block.as_bytes())))
}

impl Document {
    /// Splits `config`'s PEM fields out into deduplicated blocks.
    pub(super) fn from_config(config: &GatewayConfig) -> Self {
        let mut config = config.clone();
        let mut pem_refs = BTreeMap::new();
        let mut pem_blocks = BTreeMap::new();
        for (path, field) in pem_fields(&mut config) {
            let refs = pieces(field)
                .into_iter()
                .map(|piece| {
                    let d = digest(piece);
                    pem_blocks
                        .entry(d.clone())
                        .or_insert_with(|| piece.to_owned());
                    d
                })
                .collect();
            field.clear();
            pem_refs.insert(path, refs);
        }
        Self {
            config,
            pem_refs,
            pem_blocks,
        }
    }

    /// Puts the blocks back into the configuration's PEM fields.
    pub(super) fn into_config(self) -> Result<GatewayConfig, DecodeError> {
        let Self {
            mut config,
            mut pem_refs,
            pem_blocks,
        } = self;
        for (path, field) in pem_fields(&mut config) {
            let Some(refs) = pem_refs.remove(&path) else {
                continue;
            };
            let mut text = String::new();
            for d in &refs {
                let block = pem_blocks.get(d).ok_or_else(|| DecodeError::MissingBlock {
                    field: path.clone(),
                    digest: d.clone(),
                })?;
                text.push_str(block);
            }
            *field = text;
        }
        match pem_refs.into_keys().next() {
            Some(field) => Err(DecodeError::StrayPemRef { field }),
            None => Ok(config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_text() {
        for text in [
            "",
            "junk",
            "-----BEGIN A-----\nx\n-----END A-----\n",
            "-----BEGIN A-----\nx\n-----END A-----",
            "subject=CN=a\n-----BEGIN A-----\nx\n-----END A-----\n\n-----BEGIN B-----\ny\n-----END B-----\ntrailing",
        ] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(
            pieces(
                "-----BEGIN A-----\nx\n-----END A-----\n-----BEGIN B-----\ny\n-----END B-----\n"
            )
            .len(),
            2
        );
    }
}
