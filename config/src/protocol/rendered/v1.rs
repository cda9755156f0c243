//! Format 1 of the rendered Secret: the configuration YAML inline under
//! [`CONFIG_KEY`](super::CONFIG_KEY). Still read (Secrets written before format 2, and
//! by hand in tests and recovery); no longer written.

use super::DecodeError;
use crate::GatewayConfig;

/// The configuration of an inline head Secret (its hash is checked by the caller).
pub(super) fn decode(bytes: &[u8], origin: &str) -> Result<GatewayConfig, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    Ok(GatewayConfig::from_yaml(text, origin)?)
}
