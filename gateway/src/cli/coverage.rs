//! `postern-gateway crl coverage`: "are we checking revocation for every CA we trust?" in
//! one command. It asks a running gateway's admin endpoint (`GET /revocation`) and prints
//! one line per CA of every Listener's client CA bundle: what checks it, from which
//! sources, how much, and how long until its CRL is stale; then a verdict. Exit 0 when
//! every CA is covered and none is stale, 1 when one is not, 2 when the gateway cannot be
//! asked. In a cluster: `kubectl exec deploy/postern-gateway -- postern-gateway crl coverage`.

use std::io::Write;
use std::time::Duration;

use crate::crl::CaCoverage;

/// Arguments of `crl coverage`.
#[derive(Debug, clap::Args)]
pub struct CoverageArgs {
    /// The gateway's admin address (its `--admin-address`).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub admin: String,
    /// Print the endpoint's JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command; returns its exit code.
pub async fn run(args: &CoverageArgs, out: &mut impl Write, err: &mut impl Write) -> u8 {
    let url = format!("{}/revocation", args.admin.trim_end_matches('/'));
    let view = match fetch(&url).await {
        Ok(v) => v,
        Err(e) => {
            let _ = writeln!(err, "postern-gateway crl coverage: {url}: {e}");
            return 2;
        }
    };
    let written = if args.json {
        serde_json::to_string_pretty(&view)
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        write!(out, "{}", table(&view))
    };
    if let Err(e) = written {
        let _ = writeln!(err, "postern-gateway crl coverage: {e}");
        return 2;
    }
    u8::from(view.iter().any(|c| !c.covered || c.stale))
}

/// What went wrong asking the gateway.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// The request failed or was answered with an error status.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// The HTTP client's TLS settings could not be made.
    #[error("{0}")]
    Tls(rustls::Error),
    /// The answer was not the coverage view.
    #[error("the answer is not the coverage view: {0}")]
    Json(#[from] serde_json::Error),
}

async fn fetch(url: &str) -> Result<Vec<CaCoverage>, FetchError> {
    // The admin endpoint is plain HTTP; TLS is configured only because the client needs a
    // crypto provider (the gateway's own) to be built at all.
    let tls = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
        .with_safe_default_protocol_versions()
        .map_err(FetchError::Tls)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let body = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

/// The view as a table, one CA per line, and the verdict.
fn table(view: &[CaCoverage]) -> String {
    let rows: Vec<[String; 8]> = view
        .iter()
        .map(|c| {
            [
                c.listener.clone(),
                c.ca.clone(),
                c.mechanism.as_str().to_owned(),
                if c.sources.is_empty() {
                    "-".to_owned()
                } else {
                    c.sources.join(",")
                },
                c.entries.to_string(),
                c.der_bytes.to_string(),
                c.next_update.clone().unwrap_or_else(|| "-".into()),
                match (c.stale, c.seconds_until_stale) {
                    (true, _) => "STALE".to_owned(),
                    (false, Some(s)) => human(s),
                    (false, None) => "-".to_owned(),
                },
            ]
        })
        .collect();
    let header = [
        "LISTENER",
        "CA",
        "MECHANISM",
        "SOURCES",
        "ENTRIES",
        "DER BYTES",
        "NEXT UPDATE",
        "STALE IN",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push_str(l.trim_end());
        text.push('\n');
    };
    line(&header);
    for r in &rows {
        line(&r.each_ref().map(String::as_str));
    }
    text.push_str(&verdict(view));
    text
}

fn verdict(view: &[CaCoverage]) -> String {
    let uncovered: Vec<&str> = view
        .iter()
        .filter(|c| !c.covered)
        .map(|c| c.ca.as_str())
        .collect();
    let stale: Vec<&str> = view
        .iter()
        .filter(|c| c.stale)
        .map(|c| c.ca.as_str())
        .collect();
    if view.is_empty() {
        return "no Listener has a client CA bundle: no client certificate is verified\n".into();
    }
    let mut text = format!(
        "{} of {} trusted CAs covered",
        view.len() - uncovered.len(),
        view.len()
    );
    if !uncovered.is_empty() {
        text.push_str(&format!(
            "; NOT covered (no revocation check): {}",
            uncovered.join("; ")
        ));
    }
    if !stale.is_empty() {
        text.push_str(&format!(
            "; STALE (certificates refused until a fresh CRL): {}",
            stale.join("; ")
        ));
    }
    text.push('\n');
    text
}

/// Seconds as `2d 3h`, `3h 12m`, `12m 5s` or `5s`.
fn human(s: i64) -> String {
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::protocol::RevocationMechanism;

    fn ca(name: &str, mechanism: RevocationMechanism, stale: bool) -> CaCoverage {
        CaCoverage {
            listener: "submission".into(),
            ca: name.into(),
            covered: mechanism != RevocationMechanism::None,
            mechanism,
            sources: if mechanism == RevocationMechanism::Crl {
                vec!["dod".into()]
            } else {
                Vec::new()
            },
            entries: 12,
            der_bytes: 3_400,
            index_bytes: 200,
            next_update: Some("2030-01-01T00:00:00Z".into()),
            seconds_until_stale: Some(3 * 3_600 + 12 * 60),
            stale,
            last_fetch_time: None,
        }
    }

    #[test]
    fn the_table_names_every_ca_and_the_verdict_the_gaps() {
        let view = [
            ca("CN=Root", RevocationMechanism::Crl, false),
            ca("CN=Issuing 2", RevocationMechanism::None, false),
            ca("CN=Issuing 3", RevocationMechanism::Crl, true),
        ];
        let t = table(&view);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("LISTENER    CA"), "{t}");
        assert!(
            lines[1].contains("CN=Root")
                && lines[1].contains("dod")
                && lines[1].ends_with("3h 12m"),
            "{t}"
        );
        assert!(lines[3].ends_with("STALE"), "{t}");
        assert_eq!(
            lines[4],
            "2 of 3 trusted CAs covered; NOT covered (no revocation check): CN=Issuing 2; \
             STALE (certificates refused until a fresh CRL): CN=Issuing 3"
        );
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(65), "1m 5s");
        assert_eq!(human(3 * 3_600 + 60), "3h 1m");
        assert_eq!(human(2 * 86_400 + 3 * 3_600), "2d 3h");
    }
}
