//! The rendered configuration Secret: decoding it and checking its content hash.

use std::collections::BTreeMap;

use super::{CONFIG_KEY, HASH_ANNOTATION};
use crate::{GatewayConfig, LoadError};

/// Why a rendered Secret could not be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The Secret has no [`CONFIG_KEY`].
    #[error("secret has no {CONFIG_KEY:?} key")]
    MissingKey,
    /// The value is not UTF-8.
    #[error("{CONFIG_KEY:?} is not UTF-8")]
    NotUtf8,
    /// The YAML is not a configuration.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Secret has no [`HASH_ANNOTATION`].
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

/// Decodes a rendered Secret's data and annotations into its configuration and hash,
/// checking the content against the annotated hash (a hand edit does not run).
pub fn decode_rendered(
    data: &BTreeMap<String, Vec<u8>>,
    annotations: &BTreeMap<String, String>,
    origin: &str,
) -> Result<(GatewayConfig, String), DecodeError> {
    let bytes = data.get(CONFIG_KEY).ok_or(DecodeError::MissingKey)?;
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    let config = GatewayConfig::from_yaml(text, origin)?;
    let annotated = annotations
        .get(HASH_ANNOTATION)
        .ok_or(DecodeError::MissingHash)?;
    let actual = config.hash();
    if &actual != annotated {
        return Err(DecodeError::HashMismatch {
            annotated: annotated.clone(),
            actual,
        });
    }
    Ok((config, actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(
        config: &GatewayConfig,
        hash: &str,
    ) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
        (
            BTreeMap::from([(CONFIG_KEY.to_owned(), config.to_yaml().into_bytes())]),
            BTreeMap::from([(HASH_ANNOTATION.to_owned(), hash.to_owned())]),
        )
    }

    #[test]
    fn decodes_a_rendered_secret_and_checks_its_hash() {
        let config = GatewayConfig::default();
        let (data, ann) = rendered(&config, &config.hash());
        let (decoded, hash) = decode_rendered(&data, &ann, "t").unwrap();
        assert_eq!(decoded, config);
        assert_eq!(hash, config.hash());

        let (data, ann) = rendered(&config, "sha256:00");
        assert!(matches!(
            decode_rendered(&data, &ann, "t"),
            Err(DecodeError::HashMismatch { .. })
        ));
        assert!(matches!(
            decode_rendered(&BTreeMap::new(), &ann, "t"),
            Err(DecodeError::MissingKey)
        ));
        let (data, _) = rendered(&config, "x");
        assert!(matches!(
            decode_rendered(&data, &BTreeMap::new(), "t"),
            Err(DecodeError::MissingHash)
        ));
    }
}
