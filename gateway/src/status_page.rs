//! The read-only status page on the admin port (`GET /`): the configuration in force
//! (hash, generation, Listeners and their policies), each CRL with its freshness as a bar
//! towards `nextUpdate`, the LDAP servers' states, the last refusals of the decision log,
//! and links to `/metrics`, `/config` and `/crl`.
//!
//! Server-rendered HTML, every value escaped, no script and no external asset. It shows
//! nothing the admin port does not already show elsewhere, and no secret: no key, no
//! bind password, no user list, no user name (refusals carry only the fields
//! [`crate::log::recent`] keeps).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use postern_config::{GatewayConfig, PolicyAction};

use crate::crl::CrlStore;
use crate::crl::SourceStatus;
use crate::ldap::LdapDirectories;
use crate::log::recent::RecentDecisions;
use crate::reload::Reloader;

/// What the page reads.
#[derive(Clone)]
pub struct StatusSources {
    /// The configuration in force and the last reload attempt.
    pub reloader: Arc<Reloader>,
    /// The CRL sources.
    pub crl: Arc<CrlStore>,
    /// The LDAP directories in use.
    pub ldap: LdapDirectories,
    /// The last refusals.
    pub recent: RecentDecisions,
}

/// The `/` route.
pub fn routes(sources: StatusSources) -> Router {
    Router::new().route("/", get(page)).with_state(sources)
}

impl std::fmt::Debug for StatusSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSources").finish_non_exhaustive()
    }
}

async fn page(State(s): State<StatusSources>) -> Html<String> {
    Html(render(&s))
}

/// HTML-escapes `text`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}.bar{width:14em;height:1em;background:#eee;border:1px solid #999}\
.fill{height:100%;background:#3a3}.low{background:#e90}.gone{background:#c33}.bad{color:#c33;font-weight:bold}code{font-size:.95em}";

/// The page.
pub fn render(s: &StatusSources) -> String {
    let mut h = String::new();
    let rt = s.reloader.server().current();
    let config = s.reloader.config_in_force();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Postern gateway status</title><style>{STYLE}</style></head><body>\
         <h1>Postern gateway</h1><p><a href=\"/metrics\">/metrics</a> · <a href=\"/config\">/config</a> · <a href=\"/crl\">/crl</a> · <a href=\"/readyz\">/readyz</a></p>"
    );
    h.push_str("<h2>Configuration in force</h2>");
    match &rt {
        Some(rt) => {
            let _ = write!(
                h,
                "<p>hash <code>{}</code>, generation {}</p>",
                escape(&rt.hash),
                rt.generation
            );
            for r in &rt.refused {
                let _ = write!(
                    h,
                    "<p class=\"bad\">Listener {} refused: {}</p>",
                    escape(&r.listener),
                    escape(&r.describe())
                );
            }
        }
        None => h.push_str("<p class=\"bad\">no configuration applied yet</p>"),
    }
    let last = s.reloader.last_attempt();
    if let Some(error) = &last.error {
        let _ = write!(
            h,
            "<p class=\"bad\">last attempt refused: {}</p>",
            escape(error)
        );
    }
    if let Some(config) = &config {
        listeners(&mut h, config);
    }
    crls(&mut h, &s.crl.status());
    ldap(&mut h, &s.ldap);
    refusals(&mut h, &s.recent);
    h.push_str("</body></html>\n");
    h
}

fn listeners(h: &mut String, config: &GatewayConfig) {
    h.push_str("<h2>Listeners</h2><table><tr><th>listener</th><th>address</th><th>TLS</th><th>auth profile</th><th>policies (sender group → policy)</th></tr>");
    for (name, l) in &config.listeners {
        let mut rows = String::new();
        for row in &l.host_access_table {
            let _ = write!(
                rows,
                "{} → {}<br>",
                escape(&row.sender_group),
                policy(config, &row.policy)
            );
        }
        let _ = write!(rows, "default → {}", policy(config, &l.default_policy));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}:{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(&l.address.to_string()),
            l.port,
            if l.implicit_tls {
                " (implicit TLS)"
            } else {
                ""
            },
            match &l.tls {
                Some(t) if t.client_ca_pem.is_some() => "server certificate, client CA",
                Some(_) => "server certificate",
                None => "none",
            },
            escape(l.auth_profile.as_deref().unwrap_or("-")),
            rows
        );
    }
    h.push_str("</table>");
}

fn policy(config: &GatewayConfig, name: &str) -> String {
    let Some(p) = config.policies.get(name) else {
        return escape(name);
    };
    let action = match p.action {
        PolicyAction::Relay => "Relay",
        PolicyAction::Reject => "Reject",
    };
    format!(
        "<b>{}</b> ({action}, tls {:?}{}{})",
        escape(name),
        p.tls,
        if p.verify_client_certificate {
            ", verify client certificate"
        } else {
            ""
        },
        if p.require_smtp_auth {
            ", SMTP AUTH required"
        } else {
            ""
        },
    )
}

fn crls(h: &mut String, sources: &[SourceStatus]) {
    h.push_str("<h2>Revocation (CRL sources)</h2>");
    if sources.is_empty() {
        h.push_str("<p>none configured</p>");
        return;
    }
    h.push_str("<table><tr><th>source</th><th>state</th><th>CRL issuer</th><th>thisUpdate</th><th>nextUpdate</th><th>time left</th><th>entries</th><th>last error</th></tr>");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for src in sources {
        let state = format!("{:?}", src.state);
        let error = src
            .last_error
            .as_ref()
            .map(|e| format!("{} ({})", e.message, e.url))
            .unwrap_or_default();
        if src.crls.is_empty() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td colspan=\"5\">no CRL in force</td><td>{}</td></tr>",
                escape(&src.name),
                escape(&state),
                escape(&error)
            );
        }
        for c in &src.crls {
            let bar = freshness_bar(
                parse_rfc3339(&c.this_update),
                c.next_update.as_deref().and_then(parse_rfc3339),
                now,
            );
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&src.name),
                escape(&state),
                if c.stale {
                    " <span class=\"bad\">stale</span>"
                } else {
                    ""
                },
                escape(&c.issuer),
                escape(&c.this_update),
                escape(c.next_update.as_deref().unwrap_or("-")),
                bar,
                c.entries,
                escape(&error)
            );
        }
    }
    h.push_str("</table>");
}

/// A bar whose fill is the share of the CRL's validity still ahead (full when just
/// issued, empty at `nextUpdate`), with the time left as text.
fn freshness_bar(this_update: Option<i64>, next_update: Option<i64>, now: i64) -> String {
    let (Some(start), Some(end)) = (this_update, next_update) else {
        return "no nextUpdate".into();
    };
    let left = end - now;
    let total = (end - start).max(1);
    let percent = (left.clamp(0, total) * 100) / total;
    let class = match percent {
        0 => "fill gone",
        1..=20 => "fill low",
        _ => "fill",
    };
    let text = if left <= 0 {
        format!("stale for {}", duration(-left))
    } else {
        duration(left)
    };
    format!(
        "<div class=\"bar\" title=\"{percent}% of the validity left\"><div class=\"{class}\" style=\"width:{percent}%\"></div></div>{text}"
    )
}

fn duration(secs: i64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", secs % 60)
    }
}

/// Unix time of an RFC 3339 UTC time as the CRL status writes it
/// (`2026-12-06T15:21:43Z`).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

fn ldap(h: &mut String, ldap: &LdapDirectories) {
    h.push_str("<h2>LDAP servers</h2>");
    let all = ldap.all();
    if all.is_empty() {
        h.push_str("<p>no LDAP profile in use</p>");
        return;
    }
    h.push_str("<table><tr><th>profile</th><th>server</th><th>state</th></tr>");
    for (name, dir) in &all {
        for (url, up) in dir.server_states() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                escape(&url),
                if up {
                    "up"
                } else {
                    "<span class=\"bad\">down</span> (failed recently; tried again later)"
                }
            );
        }
    }
    h.push_str("</table>");
}

fn refusals(h: &mut String, recent: &RecentDecisions) {
    let kept = recent.refusals();
    let _ = write!(
        h,
        "<h2>Recent refusals</h2><p>The last {} decision lines that were not a success (newest first; no user names).</p>",
        crate::log::recent::KEPT
    );
    if kept.is_empty() {
        h.push_str("<p>none</p>");
        return;
    }
    h.push_str("<table><tr><th>time</th><th>listener</th><th>client</th><th>decision</th><th>outcome</th><th>reason</th></tr>");
    for r in kept {
        let f = |k: &str| escape(r.fields.get(k).map_or("", String::as_str));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.time),
            f("listener"),
            f("client_ip"),
            f("decision"),
            f("outcome"),
            f("reason")
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-12-06T15:21:43Z"), Some(1_796_570_503));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn the_bar_empties_towards_next_update() {
        assert!(freshness_bar(Some(0), Some(100), 0).contains("width:100%"));
        assert!(freshness_bar(Some(0), Some(100), 90).contains("width:10%"));
        let stale = freshness_bar(Some(0), Some(100), 160);
        assert!(stale.contains("width:0%") && stale.contains("stale for 1m 0s"));
    }
}
