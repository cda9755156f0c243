//! Reading the controller's rendered Secrets the way a gateway does (through
//! `postern_config::protocol`), and hand-editing them, for the end-to-end tests.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine;
use postern_config::GatewayConfig;
use postern_config::protocol::{self, Limits, MANIFEST_KEY, PAYLOAD_KEY, SecretView};
use serde_json::Value;

use crate::kube::KubeCluster;

/// A Secret's data (decoded) and annotations, from its JSON.
struct Owned {
    data: BTreeMap<String, Vec<u8>>,
    annotations: BTreeMap<String, String>,
}

impl Owned {
    fn from_json(secret: &Value) -> Result<Self> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let data = secret["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| Ok((k.clone(), b64.decode(v.as_str().context("data value")?)?)))
            .collect::<Result<_>>()?;
        let annotations =
            serde_json::from_value(secret["metadata"]["annotations"].clone()).unwrap_or_default();
        Ok(Self { data, annotations })
    }

    fn view(&self) -> SecretView<'_> {
        SecretView::new(
            self.data.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            Some(&self.annotations),
        )
    }
}

/// The configuration published in `namespace` (head `postern-config` and its parts) and
/// its hash; `None` while there is no head Secret. Fails if the set does not decode.
pub fn published(
    cluster: &KubeCluster,
    namespace: &str,
) -> Result<Option<(GatewayConfig, String)>> {
    let head_name = protocol::RENDERED_SECRET;
    let Some(head) = cluster.get_json(namespace, "secret", head_name)? else {
        return Ok(None);
    };
    let head = Owned::from_json(&head)?;
    let count = protocol::read_head(&head.view(), head_name).map_or(1, |h| h.parts());
    let mut parts = Vec::new();
    for i in 1..count {
        let name = protocol::part_secret_name(head_name, i);
        parts.push(match cluster.get_json(namespace, "secret", &name)? {
            Some(s) => Some(Owned::from_json(&s)?),
            None => None,
        });
    }
    let others: Vec<Option<SecretView<'_>>> =
        parts.iter().map(|p| p.as_ref().map(Owned::view)).collect();
    Ok(Some(protocol::decode(&head.view(), head_name, &others)?))
}

/// The configuration of a head Secret (its JSON) that needs no further part, and its
/// hash: what a gateway would run.
pub fn decode_single(secret: &Value) -> Result<(GatewayConfig, String)> {
    let head = Owned::from_json(secret)?;
    Ok(protocol::decode(
        &head.view(),
        protocol::RENDERED_SECRET,
        &[],
    )?)
}

/// A merge patch that puts `config` into the head Secret as the controller would (one
/// part), but leaves its hash annotation alone: a consistent hand edit that only the
/// content hash exposes.
pub fn hand_edit_patch(config: &GatewayConfig) -> Value {
    let encoded = protocol::encode(config, &config.hash(), &Limits::default());
    assert_eq!(encoded.parts.len(), 1, "a hand edit fits one Secret");
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({"data": {
        MANIFEST_KEY: b64.encode(serde_json::to_vec(&encoded.manifest).unwrap()),
        PAYLOAD_KEY: b64.encode(&encoded.parts[0]),
    }})
}
