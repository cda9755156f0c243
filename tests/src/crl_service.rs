//! How the CRL fetch tests run the CRL service in-process (the same `CrlService` the
//! gateway builds): a listener trusting given CAs, sources added to it, short fetch
//! timings, and waiting for a source's status to reach a state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{CrlSource, GatewayConfig, Listener};
use postern_gateway::crl::{CrlService, CrlStore, FetchSettings, ServiceSettings, SourceStatus};

/// A listener whose client CA bundle is `ca_pem` (never started: the service only reads
/// its trust anchors).
pub fn listener(ca_pem: &str) -> Listener {
    serde_json::from_value(serde_json::json!({
        "address": "127.0.0.1", "port": 2525, "hostname": "mx.test",
        "tls": {"certificateChainPem": "unused", "privateKeyPem": "unused", "clientCaPem": ca_pem},
        "defaultPolicy": "p", "nextHop": {"host": "127.0.0.1"}
    }))
    .expect("listener")
}

/// A configuration with one listener `submission` trusting `ca_pems`, and `sources`.
pub fn config(ca_pems: &[String], sources: Vec<(&str, CrlSource)>) -> GatewayConfig {
    let mut c = GatewayConfig::default();
    c.listeners
        .insert("submission".into(), listener(&ca_pems.concat()));
    for (name, s) in sources {
        c.crl_sources.insert(name.into(), s);
    }
    c
}

/// Short timeouts and retries, and the disk cache in `cache`, if given.
pub fn settings(cache: Option<&std::path::Path>) -> ServiceSettings {
    ServiceSettings {
        fetch: FetchSettings {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(3),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_millis(500),
            ..FetchSettings::default()
        },
        cache_dir: cache.map(ToOwned::to_owned),
    }
}

/// A store and the service fetching into it, with [`settings`].
pub fn service(cache: Option<&std::path::Path>) -> (Arc<CrlStore>, CrlService) {
    let store = Arc::new(CrlStore::new());
    let svc = CrlService::new(Arc::clone(&store), settings(cache)).expect("service");
    (store, svc)
}

/// Wait up to 15 s until the status of source `name` satisfies `f` (`what` for the
/// failure message).
pub async fn wait_for(
    store: &CrlStore,
    name: &str,
    what: &str,
    f: impl Fn(&SourceStatus) -> bool,
) -> SourceStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = store.source_status(name)
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {:#?}",
            store.source_status(name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
