//! The server list of a profile: parsing, order of attempts and health marks.
//!
//! Servers are tried in the order written. A server that just failed is marked down for
//! a short while, so that every new connection does not first wait for a dead primary;
//! it goes to the back of the order (never out of it: if every server is marked down,
//! all are still tried, so a recovered directory is found at once).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failed server is passed over before it is tried first again.
pub(crate) const DOWN_BACKOFF: Duration = Duration::from_secs(15);

/// One `ldap://` or `ldaps://` server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    /// The URL as configured (used in logs and metrics).
    pub url: String,
    /// `true` for `ldaps://`.
    pub implicit_tls: bool,
    /// Host name or IP address (brackets removed from IPv6 literals).
    pub host: String,
    /// Port (389 or 636 when not given).
    pub port: u16,
}

impl ServerUrl {
    /// Parse `ldap://host[:port][/]` or `ldaps://host[:port][/]`.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let (implicit_tls, rest) = if let Some(r) = url.strip_prefix("ldaps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("ldap://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with ldap:// or ldaps://"));
        };
        let hostport = rest.split('/').next().unwrap_or_default();
        if rest.len() > hostport.len() + 1 {
            return Err(format!(
                "{url:?}: a server URL names a server only (put the search base in baseDn)"
            ));
        }
        let default_port = if implicit_tls { 636 } else { 389 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unterminated IPv6 literal"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => parse_port(url, p)?,
                None if tail.is_empty() => default_port,
                None => return Err(format!("{url:?}: unexpected {tail:?} after the host")),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), parse_port(url, p)?),
                None => (hostport.to_owned(), default_port),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(format!("{url:?} has no valid host"));
        }
        Ok(Self {
            url: url.to_owned(),
            implicit_tls,
            host,
            port,
        })
    }

    /// The URL handed to the LDAP library (normalised: no path).
    pub(crate) fn connect_url(&self) -> String {
        let scheme = if self.implicit_tls { "ldaps" } else { "ldap" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(url: &str, p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{url:?}: invalid port {p:?}")),
        Ok(port) => Ok(port),
    }
}

/// The servers of one profile and which of them recently failed.
#[derive(Debug)]
pub(crate) struct ServerSet {
    servers: Vec<ServerUrl>,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl ServerSet {
    /// A set of servers, all presumed up.
    pub(crate) fn new(servers: Vec<ServerUrl>) -> Self {
        let n = servers.len();
        Self {
            servers,
            down_until: Mutex::new(vec![None; n]),
        }
    }

    /// The server at `index`.
    pub(crate) fn get(&self, index: usize) -> &ServerUrl {
        &self.servers[index]
    }

    /// All servers, in configured order.
    pub(crate) fn all(&self) -> &[ServerUrl] {
        &self.servers
    }

    /// Indices in the order to try them at `now`: servers not marked down first (in
    /// configured order), then those marked down (in configured order).
    pub(crate) fn order(&self, now: Instant) -> Vec<usize> {
        let marks = self.down_until.lock().expect("server marks");
        let (mut up, down): (Vec<usize>, Vec<usize>) =
            (0..self.servers.len()).partition(|&i| !is_down(marks[i], now));
        up.extend(down);
        up
    }

    /// The server new connections should go to at `now` (the first one not marked down).
    pub(crate) fn preferred(&self, now: Instant) -> usize {
        self.order(now).first().copied().unwrap_or(0)
    }

    /// Each server's URL and whether it is not marked down at `now`.
    pub(crate) fn states(&self, now: Instant) -> Vec<(String, bool)> {
        let marks = self.down_until.lock().expect("server marks");
        self.servers
            .iter()
            .zip(marks.iter())
            .map(|(s, m)| (s.connect_url(), !is_down(*m, now)))
            .collect()
    }

    /// Remember that `index` failed at `now`.
    pub(crate) fn mark_down(&self, index: usize, now: Instant) {
        self.down_until.lock().expect("server marks")[index] = Some(now + DOWN_BACKOFF);
    }

    /// Remember that `index` works. Returns whether it had been marked down.
    pub(crate) fn mark_up(&self, index: usize) -> bool {
        self.down_until.lock().expect("server marks")[index]
            .take()
            .is_some()
    }
}

fn is_down(mark: Option<Instant>, now: Instant) -> bool {
    mark.is_some_and(|until| now < until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let s = ServerUrl::parse("ldap://ldap.example.org").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.implicit_tls),
            ("ldap.example.org", 389, false)
        );
        let s = ServerUrl::parse("ldaps://10.0.0.1:1636/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.implicit_tls),
            ("10.0.0.1", 1636, true)
        );
        assert_eq!(s.connect_url(), "ldaps://10.0.0.1:1636");
        let s = ServerUrl::parse("ldap://[::1]:3389").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 3389));
        assert_eq!(s.connect_url(), "ldap://[::1]:3389");
        for bad in [
            "http://x",
            "ldap://",
            "ldap://host:0",
            "ldap://host:x",
            "ldap://host/dc=example,dc=org",
            "ldap://[::1",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    fn set(n: usize) -> ServerSet {
        ServerSet::new(
            (0..n)
                .map(|i| ServerUrl::parse(&format!("ldap://s{i}")).unwrap())
                .collect(),
        )
    }

    #[test]
    fn failed_servers_go_to_the_back_until_the_backoff_ends() {
        let s = set(3);
        let t0 = Instant::now();
        assert_eq!(s.order(t0), [0, 1, 2]);
        s.mark_down(0, t0);
        assert_eq!(s.order(t0), [1, 2, 0]);
        assert_eq!(s.preferred(t0), 1);
        s.mark_down(1, t0);
        assert_eq!(s.order(t0), [2, 0, 1]);
        // Everything down: everything is still tried, in configured order.
        s.mark_down(2, t0);
        assert_eq!(s.order(t0), [0, 1, 2]);
        // The backoff ends: the primary is first again.
        assert_eq!(s.order(t0 + DOWN_BACKOFF), [0, 1, 2]);
        assert!(s.mark_up(1));
        assert!(!s.mark_up(1));
        assert_eq!(s.order(t0), [1, 0, 2]);
    }
}
