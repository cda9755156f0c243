//! Running in a cluster: the rendered configuration comes from the namespace's Secret
//! through the API, and the gateway reports what it runs (the protocol is
//! [`postern_config::protocol`]).

pub(crate) mod source;

use std::sync::Arc;

pub use source::{
    ClusterError, ClusterOptions, ConfigSink, RevocationFacts, RevocationFactsFn,
    report_api_resource, run,
};

use crate::crl::{CrlStore, SourceStatus};
use crate::reload::Reloader;
use postern_config::GatewayConfig;

impl ConfigSink for Arc<Reloader> {
    async fn apply(&self, config: GatewayConfig) -> Result<(), String> {
        let reloader = self.clone();
        // Building TLS configurations and binding listeners blocks briefly.
        tokio::task::spawn_blocking(move || {
            let origin = format!(
                "secret {}",
                config
                    .source
                    .as_ref()
                    .and_then(|s| s.namespace.as_deref())
                    .unwrap_or("(cluster)")
            );
            Reloader::apply(&reloader, &config, &origin).map(|_| ())
        })
        .await
        .map_err(|e| format!("reload task failed: {e}"))?
    }

    fn in_force(&self) -> tokio::sync::watch::Receiver<Option<Arc<crate::runtime::Runtime>>> {
        self.server().subscribe()
    }
}

/// What a CRL store says, in the report's shape: per source, and per Listener's CA.
pub fn revocation_facts_of(store: Arc<CrlStore>) -> RevocationFactsFn {
    Arc::new(move || RevocationFacts {
        crl_sources: store.status().iter().map(SourceStatus::facts).collect(),
        revocation: (!store.first_fetches_pending())
            .then(|| crate::crl::coverage::report(store.coverage())),
    })
}

/// No revocation facts (a gateway without a CRL store).
pub fn no_revocation_facts() -> RevocationFactsFn {
    Arc::new(RevocationFacts::default)
}
