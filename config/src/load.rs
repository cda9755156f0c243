//! Reading, writing and hashing a configuration document.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::model::{API_VERSION, GatewayConfig};

/// Why a configuration file could not be loaded (before validation).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not a configuration document (syntax, unknown field, wrong type).
    #[error("cannot parse {origin}: {}{source}", field_prefix(.field))]
    Parse {
        /// File name or other origin of the text.
        origin: String,
        /// The field the error is about, as `listeners.smtp.tls` (empty for a syntax error
        /// or one about the whole document).
        field: String,
        /// The parser's error, with line and column (boxed: it is large).
        source: Box<serde_saphyr::Error>,
    },
    /// The document declares an `apiVersion` this gateway does not understand.
    #[error(
        "{origin}: unsupported apiVersion {found:?} (this gateway understands {API_VERSION:?})"
    )]
    ApiVersion {
        /// File name or other origin of the text.
        origin: String,
        /// The declared version.
        found: String,
    },
}

/// `field: ` before the parser's message, when the error is about a field.
fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl GatewayConfig {
    /// Parse a YAML (or JSON) document. Does not validate beyond the shape.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, LoadError> {
        // YAML 1.2 booleans (`off`, `yes` are strings), and no excerpt of the text in the
        // error: a configuration holds secrets.
        let options = serde_saphyr::options! { strict_booleans: true, with_snippet: false };
        let mut field = String::new();
        let config: GatewayConfig =
            serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
                let mut track = serde_path_to_error::Track::new();
                GatewayConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
                    .inspect_err(|_| field = track.path().to_string())
            })
            .map_err(|source| LoadError::Parse {
                origin: origin.to_owned(),
                field: if field == "." { String::new() } else { field },
                source: Box::new(source),
            })?;
        if config.api_version != API_VERSION {
            return Err(LoadError::ApiVersion {
                origin: origin.to_owned(),
                found: config.api_version,
            });
        }
        Ok(config)
    }

    /// Read and parse a file. Does not validate beyond the shape.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The canonical YAML rendering (stable: maps are ordered by key).
    pub fn to_yaml(&self) -> String {
        // Long strings stay on one line (not folded).
        let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
        serde_saphyr::to_string_with_options(self, options)
            .expect("the configuration model always serialises")
    }

    /// Content hash, `sha256:<hex>`, over the canonical JSON form. Two configurations with
    /// the same hash behave the same.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("the configuration model always serialises");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;

    #[test]
    fn hash_is_stable_and_content_sensitive() {
        let a = GatewayConfig::default();
        let mut b = GatewayConfig::default();
        assert_eq!(a.hash(), b.hash());
        b.source = Some(Source {
            namespace: Some("mail".into()),
        });
        assert_ne!(a.hash(), b.hash());
        let round = GatewayConfig::from_yaml(&b.to_yaml(), "test").unwrap();
        assert_eq!(round, b);
        assert_eq!(round.hash(), b.hash());
    }

    #[test]
    fn refuses_unknown_fields_and_versions() {
        let e =
            GatewayConfig::from_yaml("apiVersion: postern.dev/gateway/v1\nlistenerz: {}\n", "x")
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `listenerz`"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        // The error names the field it is about, not only the line.
        let e = GatewayConfig::from_yaml(
            "apiVersion: postern.dev/gateway/v1\nlisteners:\n  a:\n    tls: {bogus: 1}\n",
            "x",
        )
        .unwrap_err();
        assert!(
            matches!(&e, LoadError::Parse { field, .. } if field.starts_with("listeners.a.tls")),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("cannot parse x: listeners.a.tls"),
            "{e}"
        );
        let e = GatewayConfig::from_yaml("apiVersion: v0\n", "x").unwrap_err();
        assert!(matches!(e, LoadError::ApiVersion { .. }), "{e}");
    }
}
