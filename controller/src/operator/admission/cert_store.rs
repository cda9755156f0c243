//! Where the webhook's certificate is kept and published: a Secret in the controller's
//! namespace (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`), shared by every replica, and the
//! `caBundle` of each webhook of the ValidatingWebhookConfiguration.
//!
//! Every replica runs [`ensure`] at start and then every minute: it reads the Secret,
//! renews what `cert::plan` says is due, writes it back with the version it read (a
//! replica that loses the race reads the winner's), and patches `caBundle` where it
//! differs. Nothing here needs leadership: the writes are idempotent and optimistic.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use time::OffsetDateTime;

use super::cert::{self, CertError, Material, Plan};

const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// Where the certificate goes.
#[derive(Clone, Debug)]
pub(crate) struct CertTarget {
    /// Namespace of the Secret (the controller's).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose `caBundle`s are kept current (`None`:
    /// none, e.g. when something else publishes the bundle).
    pub configuration: Option<String>,
    /// Host names and IP addresses the serving certificate names.
    pub hosts: Vec<String>,
}

/// Why the certificate could not be kept current.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The API refused a read or a write.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// The material could not be made.
    #[error(transparent)]
    Cert(#[from] CertError),
}

fn api(what: &'static str) -> impl FnOnce(kube::Error) -> StoreError {
    move |source| StoreError::Api { what, source }
}

fn material(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    Some(Material {
        ca_bundle: text(CA_CRT)?,
        ca_key: text(CA_KEY)?,
        cert: text(TLS_CRT)?,
        key: text(TLS_KEY)?,
    })
}

fn secret_data(m: &Material) -> BTreeMap<String, ByteString> {
    [
        (CA_CRT, &m.ca_bundle),
        (CA_KEY, &m.ca_key),
        (TLS_CRT, &m.cert),
        (TLS_KEY, &m.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect()
}

/// Reads, renews where due, writes and publishes; returns the material in force.
pub(crate) async fn ensure(client: &Client, target: &CertTarget) -> Result<Material, StoreError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    // Two rounds: a replica that loses a write race takes the winner's material.
    let mut round = 0;
    let material = loop {
        round += 1;
        let current = secrets
            .get_opt(&target.secret)
            .await
            .map_err(api("reading the webhook certificate Secret"))?;
        let stored = current.as_ref().and_then(material);
        let now = OffsetDateTime::now_utc();
        let plan = cert::plan(now, stored.as_ref(), &target.hosts);
        let why = match &plan {
            Plan::Keep => break stored.expect("kept material exists"),
            Plan::NewLeaf(why) | Plan::NewCa(why) => *why,
        };
        let renewed = cert::renew(now, stored.as_ref(), &target.hosts, &plan)?;
        let written = match current {
            Some(mut s) => {
                s.data = Some(secret_data(&renewed));
                s.string_data = None;
                secrets
                    .replace(&target.secret, &PostParams::default(), &s)
                    .await
            }
            None => {
                let s = Secret {
                    metadata: ObjectMeta {
                        name: Some(target.secret.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/part-of".to_owned(),
                            "postern".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(secret_data(&renewed)),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &s).await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %target.secret, reason = why, "webhook certificate renewed");
                break renewed;
            }
            Err(kube::Error::Api(e)) if (e.code == 409) && round < 2 => continue,
            Err(e) => return Err(api("writing the webhook certificate Secret")(e)),
        }
    };
    if let Some(name) = &target.configuration {
        publish_ca_bundle(client, name, &material.ca_bundle).await?;
    }
    Ok(material)
}

/// Sets `caBundle` on every webhook of `name` that does not have it yet.
async fn publish_ca_bundle(client: &Client, name: &str, bundle: &str) -> Result<(), StoreError> {
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let Some(config) = configs
        .get_opt(name)
        .await
        .map_err(api("reading the ValidatingWebhookConfiguration"))?
    else {
        tracing::warn!(configuration = %name, "the ValidatingWebhookConfiguration does not exist; nothing to publish the CA bundle in");
        return Ok(());
    };
    let bytes = bundle.as_bytes();
    let stale: Vec<serde_json::Value> = config
        .webhooks
        .iter()
        .flatten()
        .filter(|w| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bytes))
        .map(|w| {
            serde_json::json!({"name": w.name, "clientConfig": {
                "caBundle": base64::engine::general_purpose::STANDARD.encode(bytes)}})
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    // Strategic merge: webhooks merge by name, so only caBundle changes.
    let patch = serde_json::json!({"webhooks": stale});
    configs
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(api(
            "patching caBundle of the ValidatingWebhookConfiguration",
        ))?;
    tracing::info!(configuration = %name, webhooks = stale.len(), "webhook CA bundle published");
    Ok(())
}
