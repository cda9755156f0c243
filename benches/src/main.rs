//! `postern-bench`: Postern side by side with Postfix doing the same job, on loopback.
//!
//! Sets up one shared `smtp-sink` next hop, a Postfix instance (docs/components.md) and
//! Postern with the equivalent configuration, drives both with the same load (Postfix's
//! `smtp-source` for plaintext relay; the built-in Rust client for STARTTLS with a client
//! certificate) and prints Markdown tables: rates, latency, CPU per 1,000 units, memory,
//! and the ratios against the design's targets. Then Postern against itself: with and
//! without a 1,000,000-entry CRL, behind a PROXY protocol header or reached directly,
//! with a cached OCSP answer or without OCSP; idle memory and memory per idle connection,
//! and (with `profile`) callgrind instruction counts of fixed workloads.
//!
//! Every run is bounded (session count, time, hard limits) and every process started is
//! stopped at the end, on a panic, or on SIGINT/SIGTERM. `benches/run.sh` builds release
//! binaries and runs it; `--quick` is the smoke test's short mode.
#![forbid(unsafe_code)]

mod cleanup;
mod crypto;
mod directory;
mod load;
mod measure;
mod nginx;
mod pin;
mod pki;
mod postern;
mod postfix;
mod procs;
mod profile;
mod proxy_header;
mod report;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use rustls::ClientConfig;

use crate::load::TlsVersion;
use crate::measure::{Server, SourceLoad, Unit};
use crate::nginx::{Nginx, NginxPorts};
use crate::pki::Pki;
use crate::postern::PosternPorts;
use crate::postfix::{Postfix, PostfixPorts};
use crate::proxy_header::{Family, Proxy, ProxyVersion};
use crate::report::{Measure, Row};
use postern_testkit::file_server::HttpServer;
use postern_testkit::gateway::Gateway;
use postern_testkit::ocsp_responder::OcspResponder;
use postern_testkit::pki::KeyKind;
use postern_testkit::ports::free_port;
use postern_testkit::sink::Sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Postfix and Postern side by side: session rates (TLS 1.2/1.3, ECDSA/RSA) and relay.
    Compare,
    /// nginx's mail proxy and Postern side by side: the same workloads.
    Nginx,
    /// Postern with and without the big CRL.
    Crl,
    /// Postern behind a PROXY protocol header (v1, v2) vs reached directly.
    Proxy,
    /// Postern with a cached OCSP answer vs without OCSP (a real `openssl ocsp` responder).
    Ocsp,
    /// Idle memory and memory per idle connection.
    Idle,
    /// LDAP certificate mapping and SMTP AUTH against a real slapd, cache cold vs warm.
    Ldap,
    /// Postern logging every decision (INFO) vs with its log off: the log's share of
    /// the server's CPU per session.
    Log,
    /// Two builds of the gateway side by side (`--baseline-gateway-bin` against
    /// `--gateway-bin`): sessions with each key type and TLS version, and relays.
    Builds,
    /// rustls' ring and aws-lc-rs providers, operation by operation.
    Crypto,
    /// Callgrind instruction counts of fixed workloads (slow: runs under valgrind).
    Profile,
}

#[derive(Debug, Parser)]
#[command(
    name = "postern-bench",
    about = "Postern side by side with Postfix on loopback"
)]
struct Args {
    /// Short smoke run (well under a minute): one round of 1 s per workload, a subset of
    /// the workloads, a 10,000-entry CRL, 50 idle connections, no profiles.
    #[arg(long)]
    quick: bool,
    /// What to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Section::Compare, Section::Nginx, Section::Crl, Section::Proxy, Section::Ocsp, Section::Idle, Section::Ldap, Section::Log])]
    sections: Vec<Section>,
    /// Rounds per workload; the server order alternates and the median-rate round is shown.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per client-driven run (no new session starts after this).
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Concurrent client sessions.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Entries of the big CRL.
    #[arg(long, default_value_t = 1_000_000)]
    crl_entries: usize,
    /// Idle-connection counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10_000])]
    idle: Vec<usize>,
    /// Worker threads of the load client's runtime (0: twice the CPUs, so the client
    /// keeps its share of a machine other work also uses).
    #[arg(long, default_value_t = 0)]
    client_threads: usize,
    /// Sessions in each profiled workload.
    #[arg(long, default_value_t = 200)]
    profile_sessions: u64,
    /// The postern-gateway binary (default: next to this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The build `--sections builds` compares `--gateway-bin` with (e.g. one built with
    /// other features).
    #[arg(long)]
    baseline_gateway_bin: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Working directory (default: a temporary one, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the working directory (configurations, logs, callgrind dumps).
    #[arg(long)]
    keep: bool,
    /// Run the servers (Postern, Postfix, nginx) on the highest CPU and the load client
    /// on the others, so that neither takes the other's CPU time: a small difference
    /// between two servers then shows in the rates instead of in the scheduling noise.
    #[arg(long)]
    pin_cpus: bool,
}

/// Client TLS configurations by PKI and version.
struct TlsConfigs {
    ecdsa13: Arc<ClientConfig>,
    ecdsa12: Arc<ClientConfig>,
    rsa13: Arc<ClientConfig>,
    rsa12: Arc<ClientConfig>,
}

impl TlsConfigs {
    fn get(&self, key: KeyKind, v: TlsVersion) -> Arc<ClientConfig> {
        match (key, v) {
            (KeyKind::Ecdsa, TlsVersion::V13) => self.ecdsa13.clone(),
            (KeyKind::Ecdsa, TlsVersion::V12) => self.ecdsa12.clone(),
            (KeyKind::Rsa2048, TlsVersion::V13) => self.rsa13.clone(),
            (KeyKind::Rsa2048, TlsVersion::V12) => self.rsa12.clone(),
        }
    }
}

/// A workload of the comparison.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// STARTTLS + client certificate + EHLO + QUIT.
    Sessions(KeyKind, TlsVersion),
    /// smtp-source, plaintext.
    Source { per_session: u32, payload: usize },
    /// Rust client, STARTTLS + client certificate (ECDSA, TLS 1.3), then messages.
    TlsRelay { per_session: u32, payload: usize },
    /// STARTTLS (ECDSA, TLS 1.3, no client certificate asked) + EHLO + AUTH PLAIN + QUIT.
    AuthSessions,
    /// Plaintext EHLO + QUIT.
    PlainSessions,
}

impl Work {
    fn describe(self) -> String {
        let size = |p: usize| format!("{} KB", p / 1000);
        match self {
            Self::Sessions(k, v) => format!(
                "STARTTLS + client cert + EHLO + QUIT, {}, {}",
                k.label(),
                v.label()
            ),
            Self::Source {
                per_session,
                payload,
            } => format!(
                "relay, plaintext (smtp-source), {per_session} msg/session, {}",
                size(payload)
            ),
            Self::TlsRelay {
                per_session,
                payload,
            } => format!(
                "relay, STARTTLS + client cert, {per_session} msg/session, {}",
                size(payload)
            ),
            Self::AuthSessions => {
                "STARTTLS + EHLO + AUTH PLAIN + QUIT, ECDSA P-256, TLS 1.3".to_owned()
            }
            Self::PlainSessions => "EHLO + QUIT, plaintext".to_owned(),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Sessions(..) | Self::AuthSessions | Self::PlainSessions => "sessions/s",
            _ => "msgs/s",
        }
    }

    fn target(self) -> Option<f64> {
        match self {
            Self::Sessions(..) => Some(2.0),
            Self::Source { .. } => Some(1.5),
            Self::TlsRelay { .. } | Self::AuthSessions | Self::PlainSessions => None,
        }
    }
}

/// Where a server listens for each kind of work.
#[derive(Debug, Clone, Copy)]
struct Ports {
    tls_ecdsa: u16,
    tls_rsa: u16,
    plain: u16,
    /// STARTTLS + SMTP AUTH (the LDAP section's gateways only).
    smtp_auth: u16,
}

struct Target {
    server: Server,
    ports: Ports,
    is_postfix: bool,
    /// The load client sends this PROXY header first on every connection.
    proxy: Option<Proxy>,
}

impl Target {
    /// A multi-process peer (Postfix, nginx) rooted at `pid`, with its ECDSA, RSA and
    /// plaintext ports.
    fn peer(
        name: &str,
        pid: u32,
        (tls_ecdsa, tls_rsa, plain): (u16, u16, u16),
        is_postfix: bool,
    ) -> Self {
        Self {
            server: Server {
                name: name.to_owned(),
                pid,
                multi_process: true,
                helpers: Vec::new(),
            },
            ports: Ports {
                tls_ecdsa,
                tls_rsa,
                plain,
                smtp_auth: 0,
            },
            is_postfix,
            proxy: None,
        }
    }
}

/// How one gateway of a side-by-side section is started: its binary, its name (for its
/// directory and log), the label it is reported under, its `POSTERN_LOG` filter.
#[derive(Clone, Copy)]
struct Side<'a> {
    bin: &'a Path,
    name: &'a str,
    label: &'a str,
    filter: &'a str,
}

impl<'a> Side<'a> {
    /// `bin` at the default log level (INFO).
    fn info(bin: &'a Path, name: &'a str, label: &'a str) -> Self {
        Self {
            bin,
            name,
            label,
            filter: "info",
        }
    }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    args: Args,
    dir: PathBuf,
    bin: PathBuf,
    ecdsa: Pki,
    rsa: Pki,
    tls: TlsConfigs,
    sink: Sink,
    report: String,
    notes: Vec<String>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Bench {
    fn seconds(&self) -> f64 {
        if self.args.quick {
            1.0
        } else {
            self.args.seconds
        }
    }

    fn spec(
        &self,
        port: u16,
        tls: Option<Arc<ClientConfig>>,
        messages: u32,
        payload: usize,
    ) -> load::Spec {
        let secs = Duration::from_secs_f64(self.seconds());
        load::Spec {
            addr: addr(port),
            tls,
            messages,
            body: Arc::new(load::message(payload)),
            concurrency: self.args.concurrency,
            auth: None,
            proxy: None,
            max_sessions: u64::MAX,
            duration: secs,
            hard_limit: secs + Duration::from_secs(120),
        }
    }

    fn source_load(&self, port: u16, per_session: u32, payload: usize) -> SourceLoad {
        let c = self.args.concurrency as u32;
        let (sessions, messages) = match (self.args.quick, per_session, payload) {
            (true, 1, _) => (c.min(8), 40),
            (true, n, _) => (2, 2 * u64::from(n)),
            (false, 1, p) if p <= 10_000 => (c, 3000),
            (false, 1, _) => (c, 1500),
            (false, n, p) if p <= 10_000 => (c, u64::from(c * n)),
            (false, n, _) => ((c / 2).max(1), u64::from((c / 2).max(1) * n)),
        };
        SourceLoad {
            addr: addr(port),
            sessions,
            messages,
            payload,
            reuse: per_session > 1,
            limit: Duration::from_secs(600),
        }
    }

    fn run_work(&self, work: Work, t: &Target, postfix: Option<&Postfix>) -> Result<Measure> {
        let run = |mut spec: load::Spec, unit| {
            spec.proxy = t.proxy;
            measure::client_run(&self.rt, &t.server, &self.sink, spec, unit)
        };
        if let Some(pf) = postfix.filter(|_| t.is_postfix) {
            // A previous run's mail must not be counted in this one.
            let deadline = Instant::now() + Duration::from_secs(120);
            while pf.queued() > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(match work {
            Work::Sessions(key, v) => {
                let port = match key {
                    KeyKind::Ecdsa => t.ports.tls_ecdsa,
                    KeyKind::Rsa2048 => t.ports.tls_rsa,
                };
                run(
                    self.spec(port, Some(self.tls.get(key, v)), 0, 0),
                    Unit::Sessions,
                )
            }
            Work::Source {
                per_session,
                payload,
            } => measure::source_run(
                &t.server,
                &self.sink,
                self.source_load(t.ports.plain, per_session, payload),
            )?,
            Work::TlsRelay {
                per_session,
                payload,
            } => {
                let spec = self.spec(
                    t.ports.tls_ecdsa,
                    Some(self.tls.ecdsa13.clone()),
                    per_session,
                    payload,
                );
                run(spec, Unit::Messages)
            }
            Work::AuthSessions => {
                let mut spec = self.spec(t.ports.smtp_auth, Some(self.tls.ecdsa13.clone()), 0, 0);
                spec.auth = Some(load::auth_plain(directory::USER, directory::PASSWORD).into());
                run(spec, Unit::Sessions)
            }
            Work::PlainSessions => run(self.spec(t.ports.plain, None, 0, 0), Unit::Sessions),
        })
    }

    fn log_measure(&self, what: &str, who: &str, round: u32, m: &Measure, unit: &str) {
        eprintln!(
            "  {who:<12} round {round}: {:>9.1} {unit} ({} in {:.2} s), CPU {:.2} s, peak {:.1} MiB, errors {}{}",
            m.rate(),
            m.count,
            m.secs,
            m.cpu_s,
            mib(m.mem_kib),
            m.errors,
            m.first_errors
                .first()
                .map(|e| format!(" — first: {e}"))
                .unwrap_or_default()
        );
        let _ = what;
    }

    /// Run `work` on both targets for every round, alternating which goes first.
    fn pair(
        &mut self,
        work: Work,
        base: &Target,
        postern: &Target,
        postfix: Option<&Postfix>,
    ) -> Result<Row> {
        let what = work.describe();
        eprintln!("{what}");
        let (mut b, mut p) = (Vec::new(), Vec::new());
        let mut rounds = Vec::new();
        for round in 1..=self.rounds() {
            let order: [&Target; 2] = if round % 2 == 1 {
                [base, postern]
            } else {
                [postern, base]
            };
            for t in order {
                let m = self.run_work(work, t, postfix)?;
                self.log_measure(&what, &t.server.name, round, &m, work.unit());
                if std::ptr::eq(t, base) {
                    b.push(m);
                } else {
                    p.push(m);
                }
            }
            if let (Some(bm), Some(pm)) = (b.last(), p.last()) {
                rounds.push((bm.clone(), pm.clone()));
            }
        }
        let round_ratios = b
            .iter()
            .zip(&p)
            .filter(|(b, _)| b.rate() > 0.0)
            .map(|(b, p)| p.rate() / b.rate())
            .collect();
        let row = Row {
            workload: what,
            unit: work.unit(),
            round_ratios,
            rounds,
            base: report::median(b),
            postern: report::median(p),
            target: work.target(),
        };
        for (who, m) in [
            (&base.server.name, &row.base),
            (&postern.server.name, &row.postern),
        ] {
            if let Some(m) = m
                && m.errors > 0
            {
                self.notes.push(format!(
                    "{} on {who}: {} errors, e.g. {}",
                    row.workload,
                    m.errors,
                    m.first_errors.first().cloned().unwrap_or_default()
                ));
            }
        }
        Ok(row)
    }

    fn rounds(&self) -> u32 {
        if self.args.quick {
            1
        } else {
            self.args.rounds.max(1)
        }
    }

    fn start_postern(&self, name: &str, config: &postern_config::GatewayConfig) -> Result<Gateway> {
        self.start_postern_build(&self.bin, name, config, "info")
    }

    /// A gateway from the binary `bin`, its log filtered by `POSTERN_LOG=filter`.
    fn start_postern_build(
        &self,
        bin: &Path,
        name: &str,
        config: &postern_config::GatewayConfig,
        filter: &str,
    ) -> Result<Gateway> {
        postern::launch(bin, &self.dir, name, config)
            .wrapper(pin::server_prefix())
            .log_filter(filter)
            .ready_within(Duration::from_secs(60))
            .start()
    }

    fn postern_target(p: &Gateway, ports: PosternPorts, name: &str) -> Target {
        Target {
            server: Server {
                name: name.to_owned(),
                pid: p.pid(),
                multi_process: false,
                helpers: Vec::new(),
            },
            ports: Ports {
                tls_ecdsa: ports.tls_ecdsa,
                tls_rsa: ports.tls_rsa,
                plain: ports.plain,
                smtp_auth: 0,
            },
            is_postfix: false,
            proxy: None,
        }
    }

    /// The benchmark's plain gateway configuration on `ports`.
    fn plain_config(&self, ports: PosternPorts) -> postern_config::GatewayConfig {
        postern::config(&self.ecdsa, &self.rsa, ports, self.sink.addr(), None)
    }

    /// One gateway of a side-by-side section, on fresh ports with `config(its ports)`,
    /// and the load's target for it.
    fn start_side(
        &self,
        side: Side<'_>,
        config: impl FnOnce(PosternPorts) -> postern_config::GatewayConfig,
    ) -> Result<(Gateway, Target)> {
        let ports = PosternPorts::free();
        let gw = self.start_postern_build(side.bin, side.name, &config(ports), side.filter)?;
        let target = Self::postern_target(&gw, ports, side.label);
        Ok((gw, target))
    }

    /// The two gateways of a "Postern with vs without X" section, started as
    /// `names` and reported as `labels`: the first with the plain configuration, the
    /// second with `with_config(its ports)`.
    fn start_with_and_without(
        &self,
        names: (&str, &str),
        labels: (&str, &str),
        with_config: impl FnOnce(PosternPorts) -> postern_config::GatewayConfig,
    ) -> Result<((Gateway, Target), (Gateway, Target))> {
        let plain = self.start_side(Side::info(&self.bin, names.0, labels.0), |p| {
            self.plain_config(p)
        })?;
        let with = self.start_side(Side::info(&self.bin, names.1, labels.1), with_config)?;
        Ok((plain, with))
    }

    /// Postern against itself: `works` on `base` (without the feature) and `with` (with
    /// it) in paired rounds, each row's workload naming the feature (`what`), the rate
    /// ratio held against `target`. Every "Postern with vs without X" section uses this.
    fn with_and_without(
        &mut self,
        works: &[Work],
        base: &Target,
        with: &Target,
        what: &str,
        target: Option<f64>,
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for &work in works {
            let mut row = self.pair(work, base, with, None)?;
            row.workload = format!("{} — {what}", row.workload);
            row.target = target;
            rows.push(row);
        }
        Ok(rows)
    }

    /// A "Postern with vs without X" section: heading, what was compared, the rate
    /// table, and what follows it.
    fn with_and_without_report(
        &mut self,
        heading: &str,
        intro: &str,
        rows: &[Row],
        names: (&str, &str),
        after: &str,
    ) {
        let mut s = format!("## {heading}\n\n{intro}\n\n");
        s.push_str(&report::table(rows, names.0, names.1));
        let _ = writeln!(s, "\n{after}");
        self.report.push_str(&s);
    }

    fn compare(&mut self) -> Result<()> {
        let pf_ports = PostfixPorts {
            tls_ecdsa: free_port(),
            tls_rsa: free_port(),
            plain: free_port(),
            idle: free_port(),
        };
        let idle_procs = self
            .args
            .idle
            .iter()
            .copied()
            .filter(|&n| n <= 1000)
            .max()
            .unwrap_or(0) as u32
            + 100;
        let postfix = Postfix::start(
            &self.dir,
            &self.ecdsa,
            &self.rsa,
            self.sink.addr(),
            pf_ports,
            idle_procs.max(200),
            self.args.keep,
        )?;
        let (gw, target) = self.side_by_side_postern("postern")?;
        let base = Target::peer(
            "Postfix",
            postfix.master_pid,
            (pf_ports.tls_ecdsa, pf_ports.tls_rsa, pf_ports.plain),
            true,
        );
        let pf_idle = procs::memory(postfix.master_pid);
        let gw_idle = procs::memory(gw.pid());

        let works = self.side_by_side_works();
        let mut rows = Vec::new();
        for work in works {
            rows.push(self.pair(work, &base, &target, Some(&postfix))?);
        }
        let gw_after = procs::memory(gw.pid());
        let pf_after = procs::memory(postfix.master_pid);
        let mut s = String::new();
        let _ = writeln!(s, "## Postern and Postfix side by side\n");
        let _ = writeln!(
            s,
            "{} concurrent client sessions; {} s per client-driven run; median-rate of {} round(s), server order alternating. \
             Rates count completed sessions, or messages that reached the sink (Postfix queues, so its runs include draining the queue); \
             the rate columns are each server's median round, the rate ratio is the median of the per-round ratios (both servers ran back to back in each round) with their range. \
             CPU efficiency ratio: the baseline's CPU per 1,000 over Postern's. \
             Latency: a whole session (connect to the QUIT reply), or one message (MAIL to the reply after the data); smtp-source reports none. \
             CPU: all of the server's processes (/proc utime+stime, children included). Memory: peak RSS of Postern's one process; peak sum of PSS over Postfix's processes.\n",
            self.args.concurrency,
            self.seconds(),
            self.rounds()
        );
        s.push_str(&report::table(&rows, "Postfix", "Postern"));
        let _ = writeln!(
            s,
            "\nMemory at rest: Postern RSS {:.1} MiB before the load, {:.1} MiB after it; Postfix {} processes, PSS sum {:.1} MiB before, {} processes, {:.1} MiB after.\n",
            mib(gw_idle.rss_kib),
            mib(gw_after.rss_kib),
            pf_idle.processes,
            mib(pf_idle.pss_kib),
            pf_after.processes,
            mib(pf_after.pss_kib),
        );
        self.report.push_str(&s);

        if self.args.sections.contains(&Section::Idle) {
            self.postfix_idle(&postfix, pf_ports.idle)?;
        }
        drop(gw);
        drop(postfix);
        Ok(())
    }

    /// The Postern of a side-by-side section, configured as every peer is.
    fn side_by_side_postern(&self, name: &str) -> Result<(Gateway, Target)> {
        let ports = PosternPorts::free();
        let config = postern::config(&self.ecdsa, &self.rsa, ports, self.sink.addr(), None);
        let gw = self.start_postern(name, &config)?;
        let target = Self::postern_target(&gw, ports, "Postern");
        Ok((gw, target))
    }

    /// The workloads of a side-by-side section (Postfix, nginx): sessions with both key
    /// types and TLS versions, relay in plaintext and with STARTTLS.
    fn side_by_side_works(&self) -> Vec<Work> {
        if self.args.quick {
            vec![
                Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
                Work::Source {
                    per_session: 1,
                    payload: 5_000,
                },
                Work::TlsRelay {
                    per_session: 100,
                    payload: 5_000,
                },
            ]
        } else {
            let mut w = vec![
                Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
                Work::Sessions(KeyKind::Ecdsa, TlsVersion::V12),
                Work::Sessions(KeyKind::Rsa2048, TlsVersion::V13),
                Work::Sessions(KeyKind::Rsa2048, TlsVersion::V12),
            ];
            for (per_session, payload) in [(1, 5_000), (100, 5_000), (1, 100_000), (100, 100_000)] {
                w.push(Work::Source {
                    per_session,
                    payload,
                });
            }
            for (per_session, payload) in [(1, 5_000), (100, 5_000), (1, 100_000), (100, 100_000)] {
                w.push(Work::TlsRelay {
                    per_session,
                    payload,
                });
            }
            w
        }
    }

    fn nginx(&mut self) -> Result<()> {
        let ng_ports = NginxPorts::free();
        let ng = Nginx::start(
            &self.dir,
            &self.ecdsa,
            &self.rsa,
            self.sink.addr(),
            ng_ports,
            self.args.keep,
        )?;
        let (gw, target) = self.side_by_side_postern("postern-vs-nginx")?;
        let base = Target::peer(
            "nginx",
            ng.master_pid,
            (ng_ports.tls_ecdsa, ng_ports.tls_rsa, ng_ports.plain),
            false,
        );
        let mut rows = Vec::new();
        for work in self.side_by_side_works() {
            let mut row = self.pair(work, &base, &target, None)?;
            row.target = nginx_target(work);
            rows.push(row);
        }
        let mut s = String::new();
        let _ = writeln!(s, "## Postern and nginx's mail proxy side by side\n");
        let _ = writeln!(
            s,
            "nginx {} with its mail module doing the same job: STARTTLS required, the client certificate verified, no queue, mail proxied \
             to the same smtp-sink (its `auth_http`, served by the same nginx, refuses a session without a verified certificate); \
             TLS 1.3 session tickets off on both (`ssl_conf_command NumTickets 0`); a master and 2 workers. \
             {} concurrent client sessions; {} s per client-driven run; median-rate of {} round(s), server order alternating; \
             the rate ratio is the median of the per-round ratios with their range. \
             CPU: all of nginx's processes; memory: peak sum of PSS over them, peak RSS of Postern. \
             Targets (issue 17): 1.5x on ECDSA sessions and on relay, 1.15x with RSA-2048 keys.\n",
            nginx_version().unwrap_or_else(|| "(version unknown)".to_owned()),
            self.args.concurrency,
            self.seconds(),
            self.rounds()
        );
        s.push_str(&report::table(&rows, "nginx", "Postern"));
        s.push('\n');
        self.report.push_str(&s);
        drop(gw);
        drop(ng);
        Ok(())
    }

    fn crl(&mut self) -> Result<()> {
        let entries = if self.args.quick {
            10_000
        } else {
            self.args.crl_entries
        };
        eprintln!("generating a CRL of {entries} entries");
        let der = self.ecdsa.big_crl(entries);
        let der_len = der.len();
        let server = HttpServer::start();
        server.put("/bench-ca.crl", der);
        let ((plain, base), (with, target)) = self.start_with_and_without(
            ("postern-no-crl", "postern-crl"),
            ("no CRL", "with CRL"),
            |p| {
                postern::config(
                    &self.ecdsa,
                    &self.rsa,
                    p,
                    self.sink.addr(),
                    Some(server.url("/bench-ca.crl")),
                )
            },
        )?;
        let (load_time, status) =
            postern::wait_crl(&with, "bench-ca", entries as u64, Duration::from_secs(120))?;
        let index_bytes = status["indexBytes"].as_u64().unwrap_or(0);
        let rss_plain = procs::memory(plain.pid()).rss_kib;
        let rss_crl = procs::memory(with.pid()).rss_kib;
        let rows = self.with_and_without(
            &[Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13)],
            &base,
            &target,
            &format!("{entries}-entry CRL loaded vs none"),
            Some(0.95),
        )?;
        let rss_plain_after = procs::memory(plain.pid()).rss_kib;
        let rss_crl_after = procs::memory(with.pid()).rss_kib;
        let der_mib = der_len as f64 / 1048576.0;
        let after = format!(
            "The CRL was in force {:.2} s after the gateway reported ready (fetch over loopback HTTP, signature check, index). \
             Index held (`indexBytes` of `GET /crl/bench-ca`): {:.1} MiB, {:.2}× the DER size. \
             RSS right after loading: {:.1} MiB without, {:.1} MiB with the CRL (+{:.1} MiB, including freed parse buffers the allocator had not yet returned); \
             after the session runs: {:.1} MiB without, {:.1} MiB with (+{:.1} MiB, {:.2}× the DER size).\n",
            load_time.as_secs_f64(),
            index_bytes as f64 / 1048576.0,
            index_bytes as f64 / der_len as f64,
            mib(rss_plain),
            mib(rss_crl),
            mib(rss_crl.saturating_sub(rss_plain)),
            mib(rss_plain_after),
            mib(rss_crl_after),
            mib(rss_crl_after.saturating_sub(rss_plain_after)),
            rss_crl_after.saturating_sub(rss_plain_after) as f64 * 1024.0 / der_len as f64,
        );
        self.with_and_without_report(
            &format!("Postern with a {entries}-entry CRL"),
            &format!(
                "Two gateways with the same configuration, one with a CrlSource serving a {entries}-entry CRL ({der_mib:.1} MiB DER) of the client CA; \
                 the client's serial is not listed, so every handshake looks it up and passes."
            ),
            &rows,
            ("no CRL", "with CRL"),
            &after,
        );
        Ok(())
    }

    /// PROXY protocol: two gateways with the same configuration, one reached directly,
    /// one behind a PROXY header (the load client plays the load balancer) naming
    /// original clients from the documentation networks; each admits only the clients its
    /// host access table names, so every session is the same policy decision.
    fn proxy(&mut self) -> Result<()> {
        let (p0, p1) = (PosternPorts::free(), PosternPorts::free());
        let direct = self.start_postern(
            "postern-direct",
            &postern::proxy_config(
                &self.ecdsa,
                &self.rsa,
                p0,
                self.sink.addr(),
                &["127.0.0.0/8", "::1/128"],
                false,
            ),
        )?;
        let behind = self.start_postern(
            "postern-behind-proxy",
            &postern::proxy_config(
                &self.ecdsa,
                &self.rsa,
                p1,
                self.sink.addr(),
                &[Family::V4.network(), Family::V6.network()],
                true,
            ),
        )?;
        let base = Self::postern_target(&direct, p0, "direct");
        let tls = Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13);
        let proxy = |version, family| Proxy { version, family };
        let cases = if self.args.quick {
            vec![
                (proxy(ProxyVersion::V1, Family::V4), vec![tls]),
                (
                    proxy(ProxyVersion::V2, Family::V6),
                    vec![Work::PlainSessions],
                ),
            ]
        } else {
            vec![
                (
                    proxy(ProxyVersion::V1, Family::V4),
                    vec![tls, Work::PlainSessions],
                ),
                (
                    proxy(ProxyVersion::V2, Family::V4),
                    vec![tls, Work::PlainSessions],
                ),
                (proxy(ProxyVersion::V2, Family::V6), vec![tls]),
            ]
        };
        let mut rows = Vec::new();
        for (p, works) in cases {
            let mut with = Self::postern_target(&behind, p1, &p.label());
            with.proxy = Some(p);
            rows.extend(self.with_and_without(
                &works,
                &base,
                &with,
                &format!("{} vs direct", p.label()),
                Some(0.97),
            )?);
        }
        // The gateway behind the header must have seen only the original clients.
        let log = behind.log();
        let original = log.matches("client_ip=198.51.100.").count()
            + log.matches("client_ip=2001:db8:").count();
        let loopback = log.matches("client_ip=127.").count();
        if original == 0 || loopback > 0 {
            bail!(
                "the gateway behind the PROXY header logged {original} decisions for original clients and {loopback} for 127.0.0.0/8: the header was not applied"
            );
        }
        self.with_and_without_report(
            "Postern behind a PROXY protocol header",
            "Two gateways with the same configuration but for `proxyProtocol: {trustedCidrs: [127.0.0.0/8]}` on every listener of one of them. \
             The load client connects to that one from 127.0.0.x as a load balancer would and sends a PROXY header first (v1 text or v2 binary) naming \
             an original client in 198.51.100.0/24 or 2001:db8::/32 (250 addresses, changing ports); to the other it connects directly. \
             Each gateway's host access table admits only the clients it should see (127.0.0.0/8 and ::1 directly, the two documentation networks behind the proxy; \
             everyone else `blocked`), so every session takes the same policy decision and a header the gateway did not apply would show as errors.",
            &rows,
            ("direct", "behind proxy"),
            &format!(
                "Decision lines of the gateway behind the header: {original} name an original client, {loopback} a loopback address.\n"
            ),
        );
        Ok(())
    }

    /// OCSP: two gateways with the same configuration, one checking the client
    /// certificate with OCSP only (`openssl ocsp` on loopback answers `good`), its cache
    /// warmed before the measured rounds; the other without OCSP.
    fn ocsp(&mut self) -> Result<()> {
        let index = self.ecdsa.ocsp_database()?;
        let responder = OcspResponder::start(&self.ecdsa.dir, index, "ca.crt", "ca")?;
        let url = responder.url();
        let ((_plain, base), (with, target)) = self.start_with_and_without(
            ("postern-no-ocsp", "postern-ocsp"),
            ("no OCSP", "OCSP, cached"),
            |p| postern::ocsp_config(&self.ecdsa, &self.rsa, p, self.sink.addr(), url.clone()),
        )?;
        // Warm both (the same few sessions each): the OCSP gateway caches the answer.
        for port in [base.ports.tls_ecdsa, target.ports.tls_ecdsa] {
            let mut spec = self.spec(port, Some(self.tls.ecdsa13.clone()), 0, 0);
            spec.concurrency = 1;
            spec.max_sessions = 5;
            let r = self.rt.block_on(load::run(spec));
            if r.errors > 0 || r.sessions == 0 {
                bail!(
                    "warming up the gateway on port {port}: {} sessions, {} errors {:?}",
                    r.sessions,
                    r.errors,
                    r.first_errors
                );
            }
        }
        let warmed = postern::ocsp_counts(&with, &url)?;
        if warmed.requests == 0 {
            bail!("the OCSP gateway never asked the responder {url} while warming up");
        }
        let rows = self.with_and_without(
            &[Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13)],
            &base,
            &target,
            "cached OCSP answer vs no OCSP",
            None,
        )?;
        let measured = postern::ocsp_counts(&with, &url)?;
        let mut after = String::new();
        let _ = writeln!(
            after,
            "Latency (each side's median over the rounds; ratio: the median of the per-round ratios, with their range). \
             Handshake: from sending STARTTLS to the reply to the EHLO inside TLS, as the client sees it (a TLS 1.3 client is done \
             before the server has checked its certificate, so the server's check shows only there).\n"
        );
        after.push_str(&report::latency_table(
            &rows,
            "no OCSP",
            "OCSP, cached",
            Some(1.05),
        ));
        let _ = writeln!(
            after,
            "\nThe responder was asked {} time(s) while warming up and {} time(s) during the measured rounds \
             (`postern_ocsp_requests_total`); {} lookups were answered from the cache (`postern_ocsp_cache_hits_total`).\n",
            warmed.requests,
            measured.requests.saturating_sub(warmed.requests),
            measured.cache_hits.saturating_sub(warmed.cache_hits),
        );
        self.with_and_without_report(
            "Postern with a cached OCSP answer",
            "Two gateways with the same configuration, one with `tls.revocation: {mode: OcspOnly}` on the ECDSA listener asking a real \
             `openssl ocsp` responder on loopback (answers signed by the CA, `nextUpdate` 5 minutes ahead), the client certificate `good`. \
             A few sessions on each before the measured rounds put the answer in the OCSP gateway's cache, so those rounds measure the cached lookup.",
            &rows,
            ("no OCSP", "OCSP, cached"),
            &after,
        );
        drop(responder);
        Ok(())
    }

    /// The same gateway with its log off and at INFO (every decision a line): what
    /// writing the decision log costs per session, as a share of the server's CPU.
    fn log_cost(&mut self) -> Result<()> {
        let log_side = |name, label, filter| Side {
            bin: &self.bin,
            name,
            label,
            filter,
        };
        let (_quiet, base) = self
            .start_side(log_side("postern-log-off", "log off", "off"), |p| {
                self.plain_config(p)
            })?;
        let (logging, target) = self
            .start_side(log_side("postern-log-info", "log INFO", "info"), |p| {
                self.plain_config(p)
            })?;
        let works = [
            Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
            Work::Sessions(KeyKind::Ecdsa, TlsVersion::V12),
            Work::PlainSessions,
            Work::Source {
                per_session: 1,
                payload: 5_000,
            },
        ];
        let rows = self.with_and_without(&works, &base, &target, "log INFO vs off", None)?;
        let log_bytes = std::fs::metadata(logging.log_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let mut after = String::from(
            "| workload | CPU ms per unit, log off | CPU ms per unit, log INFO | the log's share of the CPU (median of the rounds, range) | target |\n|---|--:|--:|--:|--:|\n",
        );
        for r in &rows {
            let shares: Vec<f64> = r
                .rounds
                .iter()
                .map(|(off, on)| 1.0 - off.cpu_per_1k() / on.cpu_per_1k())
                .collect();
            let (Some(off), Some(on)) = (r.base.as_ref(), r.postern.as_ref()) else {
                continue;
            };
            let mut sorted = shares.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
            let (lo, hi) = (
                sorted.first().copied().unwrap_or(f64::NAN),
                sorted.last().copied().unwrap_or(f64::NAN),
            );
            let _ = writeln!(
                after,
                "| {} | {:.3} | {:.3} | **{:.1} %** ({:.1} – {:.1} %) | ≤ 5 % {} |",
                r.workload,
                off.cpu_per_1k(),
                on.cpu_per_1k(),
                median * 100.0,
                lo * 100.0,
                hi * 100.0,
                if median <= 0.05 { "met" } else { "missed" },
            );
        }
        let _ = writeln!(
            after,
            "\nThe INFO gateway wrote {:.1} MiB of log in the section.\n",
            log_bytes as f64 / (1 << 20) as f64
        );
        self.with_and_without_report(
            "The decision log's cost",
            "Two gateways with the same configuration, one started with `POSTERN_LOG=off`, the other at the default `info`, \
             which writes one line per decision (connection, TLS, certificate, its mapping, each message, the end of the \
             session) to a log file, as a pod's stderr would be written. The log's share of a unit's server CPU is \
             1 − (CPU per unit with the log off) / (CPU per unit at INFO), per round.",
            &rows,
            ("log off", "log INFO"),
            &after,
        );
        Ok(())
    }

    /// Two builds of the gateway with the same configuration: `--baseline-gateway-bin`
    /// against `--gateway-bin`.
    fn builds(&mut self) -> Result<()> {
        let Some(baseline) = self.args.baseline_gateway_bin.clone() else {
            bail!("--sections builds needs --baseline-gateway-bin");
        };
        let (_base_gw, base) = self.start_side(
            Side::info(&baseline, "postern-baseline", "baseline build"),
            |p| self.plain_config(p),
        )?;
        let (_this_gw, this) = self
            .start_side(Side::info(&self.bin, "postern-this", "this build"), |p| {
                self.plain_config(p)
            })?;
        let works = [
            Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
            Work::Sessions(KeyKind::Ecdsa, TlsVersion::V12),
            Work::Sessions(KeyKind::Rsa2048, TlsVersion::V13),
            Work::Sessions(KeyKind::Rsa2048, TlsVersion::V12),
            Work::TlsRelay {
                per_session: 50,
                payload: 100_000,
            },
        ];
        let rows = self.with_and_without(&works, &base, &this, "this build vs baseline", None)?;
        let intro = format!(
            "The same configuration on two builds of the gateway: baseline `{}`, this build `{}`.",
            baseline.display(),
            self.bin.display()
        );
        self.with_and_without_report(
            "Two builds of Postern",
            &intro,
            &rows,
            ("baseline build", "this build"),
            "",
        );
        Ok(())
    }

    /// RSS of a fresh gateway, then with `n` idle sessions (plain after EHLO, or after
    /// STARTTLS + client certificate + EHLO).
    fn idle(&mut self) -> Result<()> {
        let counts: Vec<usize> = if self.args.quick {
            vec![50]
        } else {
            self.args.idle.clone()
        };
        let mut s = String::new();
        let _ = writeln!(s, "## Postern memory: idle, and per idle connection\n");
        let _ = writeln!(
            s,
            "A fresh gateway per line (same configuration as above). Idle connections are held open after the EHLO reply \
             (plaintext listener) or after STARTTLS + client certificate + EHLO. RSS is the process's resident memory \
             (kernel socket buffers are not in it).\n"
        );
        let _ = writeln!(
            s,
            "| state | connections | RSS MiB | per connection KiB | target |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|---|");
        let ports = PosternPorts::free();
        let config = postern::config(&self.ecdsa, &self.rsa, ports, self.sink.addr(), None);
        {
            let gw = self.start_postern("postern-idle", &config)?;
            std::thread::sleep(Duration::from_secs(1));
            let rss = procs::memory(gw.pid()).rss_kib;
            let _ = writeln!(
                s,
                "| fresh, no connection | 0 | {:.1} | – | < 30 MiB: {} |",
                mib(rss),
                if rss < 30 * 1024 { "met" } else { "missed" }
            );
        }
        for &n in &counts {
            for tls in [false, true] {
                let gw = self.start_postern("postern-idle", &config)?;
                std::thread::sleep(Duration::from_millis(500));
                let before = procs::memory(gw.pid()).rss_kib;
                let (port, cfg) = if tls {
                    (ports.tls_ecdsa, Some(self.tls.ecdsa13.clone()))
                } else {
                    (ports.plain, None)
                };
                eprintln!(
                    "opening {n} idle {} connections",
                    if tls { "TLS" } else { "plaintext" }
                );
                let t = Instant::now();
                let held = self
                    .rt
                    .block_on(load::open_idle(addr(port), cfg, n, 64))
                    .with_context(|| format!("opening {n} idle connections"))?;
                std::thread::sleep(Duration::from_millis(500));
                let after = procs::memory(gw.pid()).rss_kib;
                let per = after.saturating_sub(before) as f64 / n as f64;
                eprintln!(
                    "  {n} open in {:.1} s: RSS {:.1} -> {:.1} MiB, {per:.1} KiB each",
                    t.elapsed().as_secs_f64(),
                    mib(before),
                    mib(after)
                );
                let _ = writeln!(
                    s,
                    "| {} | {n} | {:.1} | {per:.1} | < 64 KiB: {} |",
                    if tls {
                        "idle after STARTTLS + client cert + EHLO"
                    } else {
                        "idle after EHLO (plaintext)"
                    },
                    mib(after),
                    if per < 64.0 { "met" } else { "missed" }
                );
                drop(held);
                drop(gw);
            }
        }
        s.push('\n');
        self.report.push_str(&s);
        Ok(())
    }

    /// LDAP: two gateways on one real slapd, one without the result cache (every
    /// decision asks the directory), one with the default cache; certificate mapping
    /// sessions and SMTP AUTH sessions.
    fn ldap(&mut self) -> Result<()> {
        let users = if self.args.quick { 100 } else { 10_000 };
        eprintln!("starting slapd with {users} users");
        let slapd = directory::start(users)?;
        let mut targets = Vec::new();
        for (warm, name) in [(false, "cache cold"), (true, "cache warm")] {
            let ports = PosternPorts::free();
            let auth_port = free_port();
            let config = postern::ldap_config(
                &self.ecdsa,
                &self.rsa,
                ports,
                auth_port,
                self.sink.addr(),
                slapd.url(),
                warm,
            );
            let gw = self.start_postern(
                if warm {
                    "postern-ldap-warm"
                } else {
                    "postern-ldap-cold"
                },
                &config,
            )?;
            let mut t = Self::postern_target(&gw, ports, name);
            t.ports.smtp_auth = auth_port;
            t.server.helpers = vec![slapd.pid().context("slapd is not running")?];
            targets.push((gw, t));
        }
        // The same sessions without a directory (Static backend): what LDAP adds.
        let ports = PosternPorts::free();
        let auth_port = free_port();
        let config = postern::without_directory(
            postern::ldap_config(
                &self.ecdsa,
                &self.rsa,
                ports,
                auth_port,
                self.sink.addr(),
                slapd.url(),
                true,
            ),
            directory::USER,
            directory::PASSWORD,
        );
        let gw = self.start_postern("postern-no-directory", &config)?;
        let mut t = Self::postern_target(&gw, ports, "no directory");
        t.ports.smtp_auth = auth_port;
        targets.push((gw, t));
        let (cold, warm, plain) = (&targets[0].1, &targets[1].1, &targets[2].1);
        let mut added = Vec::new();
        for (work, what) in [
            (
                Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
                "certificate mapped through LDAP (one search)",
            ),
            (
                Work::AuthSessions,
                "SMTP AUTH through LDAP (user search + BIND as the user + allowance search)",
            ),
        ] {
            let mut row = self.pair(work, plain, warm, None)?;
            row.workload = format!("{} — {what}, cache warm vs no directory", row.workload);
            row.target = None;
            added.push(row);
        }
        let mut rows = Vec::new();
        let mut row = self.pair(
            Work::Sessions(KeyKind::Ecdsa, TlsVersion::V13),
            cold,
            warm,
            None,
        )?;
        row.workload = format!("{}, certificate mapped through LDAP", row.workload);
        // The design sets no target for this comparison.
        row.target = None;
        rows.push(row);
        let mut row = self.pair(Work::AuthSessions, cold, warm, None)?;
        row.workload = format!(
            "{} (LDAP user search + BIND as the user + allowance search)",
            row.workload
        );
        rows.push(row);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## Postern with LDAP: result cache cold vs warm
"
        );
        let _ = writeln!(
            s,
            "Two gateways on one OpenLDAP slapd on loopback ({users} people, `cn` and `uid` indexed, searches as a service account). \
             *cold*: `cache: {{ttl: 0s, negativeTtl: 0s}}`, every decision goes to slapd; *warm*: the default cache (60 s), the same client every time. \
             First row: the client certificate's CN is looked up (certificateAuthQuery `(&(objectClass=inetOrgPerson)(cn={{cn}}))`); \
             second row: no client certificate, SMTP AUTH PLAIN (user search, BIND as the user on a password-checking connection, kept between checks — the result never cached — and the allowance search). \
             CPU per 1,000 counts the gateway and slapd together; slapd shares the 2 CPUs with the gateway and the client.\n"
        );
        s.push_str(&report::table(&rows, "cache cold", "cache warm"));
        s.push('\n');
        let _ = writeln!(
            s,
            "The latency LDAP adds under the session load: a third gateway with the same listeners on the Static backend \
             (no directory), against the warm one, in alternating rounds.\n"
        );
        s.push_str(&report::table(&added, "no directory", "cache warm"));
        let _ = writeln!(
            s,
            "\n| workload | p99 ms, no directory | p99 ms, cache warm | added p99 ms (median of the rounds, range) | target |\n|---|--:|--:|--:|--:|"
        );
        for r in &added {
            let mut deltas: Vec<f64> = r
                .rounds
                .iter()
                .filter_map(|(b, w)| Some(w.p99_ms? - b.p99_ms?))
                .collect();
            deltas.sort_by(f64::total_cmp);
            let (Some(b), Some(w), Some(&lo), Some(&hi)) = (
                r.base.as_ref(),
                r.postern.as_ref(),
                deltas.first(),
                deltas.last(),
            ) else {
                continue;
            };
            let median = deltas[deltas.len() / 2];
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.2} | **{median:.2}** ({lo:.2} – {hi:.2}) | ≤ 2 ms {} |",
                r.workload,
                b.p99_ms.unwrap_or(f64::NAN),
                w.p99_ms.unwrap_or(f64::NAN),
                if median <= 2.0 { "met" } else { "missed" },
            );
        }
        s.push('\n');
        self.report.push_str(&s);
        drop(targets);
        drop(slapd);
        Ok(())
    }

    /// Memory per idle Postfix session (one smtpd process each), for the counts up to 1,000.
    fn postfix_idle(&mut self, postfix: &Postfix, port: u16) -> Result<()> {
        let counts: Vec<usize> = if self.args.quick {
            vec![20]
        } else {
            self.args
                .idle
                .iter()
                .copied()
                .filter(|&n| n <= 1000)
                .collect()
        };
        let mut s = String::new();
        for n in counts {
            let before = procs::memory(postfix.master_pid);
            eprintln!("opening {n} idle plaintext connections to Postfix");
            let held = self
                .rt
                .block_on(load::open_idle(addr(port), None, n, 16))
                .with_context(|| format!("opening {n} idle Postfix connections"))?;
            std::thread::sleep(Duration::from_secs(1));
            let after = procs::memory(postfix.master_pid);
            let per = after.pss_kib.saturating_sub(before.pss_kib) as f64 / n as f64;
            let _ = writeln!(
                s,
                "Postfix for comparison: {n} idle plaintext sessions after EHLO = {} smtpd processes more, PSS sum {:.1} -> {:.1} MiB, {per:.0} KiB per connection.\n",
                after.processes.saturating_sub(before.processes),
                mib(before.pss_kib),
                mib(after.pss_kib),
            );
            drop(held);
        }
        self.notes.push(s);
        Ok(())
    }

    fn profile(&mut self) -> Result<()> {
        let k = self.args.profile_sessions;
        let ports = PosternPorts::free();
        let config = postern::config(&self.ecdsa, &self.rsa, ports, self.sink.addr(), None);
        eprintln!("profiling under callgrind ({k} sessions per workload)");
        let mut pg = profile::Profiled::start(&self.bin, &self.dir, "cg", &config)?;
        let long = |mut s: load::Spec, sessions: u64| {
            s.concurrency = 4;
            s.max_sessions = sessions;
            s.duration = Duration::from_secs(3600);
            s.hard_limit = Duration::from_secs(3600);
            s
        };
        let mut out = Vec::new();
        for (name, key, v) in [
            ("session, ECDSA, TLS 1.3", KeyKind::Ecdsa, TlsVersion::V13),
            ("session, ECDSA, TLS 1.2", KeyKind::Ecdsa, TlsVersion::V12),
            (
                "session, RSA-2048, TLS 1.3",
                KeyKind::Rsa2048,
                TlsVersion::V13,
            ),
        ] {
            let port = match key {
                KeyKind::Ecdsa => ports.tls_ecdsa,
                KeyKind::Rsa2048 => ports.tls_rsa,
            };
            let spec = long(self.spec(port, Some(self.tls.get(key, v)), 0, 0), k);
            eprintln!("  {name}");
            out.push(pg.measure(&self.rt, name, "session", spec, 10)?);
        }
        let relay_sessions = (k / 100).max(2);
        for (name, tls) in [
            ("message, plaintext, 100 × 5 KB per session", None),
            (
                "message, STARTTLS + client cert, 100 × 5 KB per session",
                Some(self.tls.ecdsa13.clone()),
            ),
        ] {
            let port = if tls.is_some() {
                ports.tls_ecdsa
            } else {
                ports.plain
            };
            let spec = long(self.spec(port, tls, 100, 5_000), relay_sessions);
            eprintln!("  {name}");
            out.push(pg.measure(&self.rt, name, "message", spec, 1)?);
        }
        pg.stop();

        // The same session workload with the big CRL in force.
        let entries = self.args.crl_entries;
        let server = HttpServer::start();
        server.put("/bench-ca.crl", self.ecdsa.big_crl(entries));
        let ports = PosternPorts::free();
        let config = postern::config(
            &self.ecdsa,
            &self.rsa,
            ports,
            self.sink.addr(),
            Some(server.url("/bench-ca.crl")),
        );
        let mut pg = profile::Profiled::start(&self.bin, &self.dir, "cg-crl", &config)?;
        postern::wait_crl(
            pg.gateway(),
            "bench-ca",
            entries as u64,
            Duration::from_secs(600),
        )?;
        let name = format!("session, ECDSA, TLS 1.3, {entries}-entry CRL");
        eprintln!("  {name}");
        let spec = long(
            self.spec(ports.tls_ecdsa, Some(self.tls.ecdsa13.clone()), 0, 0),
            k,
        );
        out.push(pg.measure(&self.rt, &name, "session", spec, 10)?);
        pg.stop();

        // What a PROXY header costs the gateway: the same sessions reached directly and
        // behind a v1 and a v2 header (the configurations of the `proxy` section).
        for behind in [false, true] {
            let ports = PosternPorts::free();
            let (clients, headers): (&[&str], Vec<Option<Proxy>>) = if behind {
                let proxy = |version| Proxy {
                    version,
                    family: Family::V4,
                };
                (
                    &[Family::V4.network(), Family::V6.network()],
                    vec![Some(proxy(ProxyVersion::V1)), Some(proxy(ProxyVersion::V2))],
                )
            } else {
                (&["127.0.0.0/8", "::1/128"], vec![None])
            };
            let config = postern::proxy_config(
                &self.ecdsa,
                &self.rsa,
                ports,
                self.sink.addr(),
                clients,
                behind,
            );
            let prefix = if behind {
                "cg-behind-proxy"
            } else {
                "cg-direct"
            };
            let mut pg = profile::Profiled::start(&self.bin, &self.dir, prefix, &config)?;
            for proxy in headers {
                for (work, port, tls) in [
                    (
                        "session, ECDSA, TLS 1.3",
                        ports.tls_ecdsa,
                        Some(self.tls.ecdsa13.clone()),
                    ),
                    ("session, plaintext EHLO + QUIT", ports.plain, None),
                ] {
                    let name = format!(
                        "{work}, {}",
                        proxy.map_or_else(|| "reached directly".to_owned(), Proxy::label)
                    );
                    eprintln!("  {name}");
                    let mut spec = long(self.spec(port, tls, 0, 0), k);
                    spec.proxy = proxy;
                    out.push(pg.measure(&self.rt, &name, "session", spec, 10)?);
                }
            }
            pg.stop();
        }

        let mut s = String::new();
        let _ = writeln!(s, "## Postern instruction counts (callgrind)\n");
        let _ = writeln!(
            s,
            "Gateway under `valgrind --tool=callgrind`; after a warm-up the counters are zeroed, the workload runs (4 concurrent \
             sessions), and the counters are dumped: every instruction of every gateway thread, per unit. Independent of machine load.\n"
        );
        let _ = writeln!(s, "| workload | units | instructions per unit (M) |");
        let _ = writeln!(s, "|---|--:|--:|");
        for p in &out {
            let _ = writeln!(
                s,
                "| {} | {} {}s | {:.2} |",
                p.workload,
                p.units,
                p.unit,
                p.per_unit() / 1e6
            );
        }
        s.push('\n');
        for p in &out {
            let _ = writeln!(
                s,
                "<details><summary>{}: top functions, inclusive</summary>\n\n```\n{}\n```\n</details>\n",
                p.workload, p.inclusive_top
            );
            if self.args.keep {
                eprintln!("callgrind dump of {}: {}", p.workload, p.file.display());
            }
            let _ = writeln!(
                s,
                "<details><summary>{}: top functions, exclusive</summary>\n\n```\n{}\n```\n</details>\n",
                p.workload, p.exclusive_top
            );
        }
        self.report.push_str(&s);
        Ok(())
    }
}

fn machine(args_line: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().next().and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0);
    let cmd_out = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "Command: `{args_line}`\n\nMachine: {nproc} CPUs ({cpu}), {:.1} GiB RAM, Linux {}; load average at the start {}; Postfix {}, {}; started {}.\n\n",
        mem as f64 / 1048576.0,
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        cmd_out("postconf", &["-h", "mail_version"]),
        cmd_out("openssl", &["version"]),
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    )
}

fn default_gateway_bin() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me
        .parent()
        .context("no directory for this executable")?
        .join("postern-gateway");
    if !bin.exists() {
        bail!(
            "{} not found: build it (`cargo build --release -p postern-gateway`, benches/run.sh does) or pass --gateway-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// The ratio a row of the nginx section is held to.
fn nginx_target(work: Work) -> Option<f64> {
    match work {
        Work::Sessions(KeyKind::Ecdsa, _) | Work::Source { .. } | Work::TlsRelay { .. } => {
            Some(1.5)
        }
        Work::Sessions(KeyKind::Rsa2048, _) => Some(1.15),
        Work::AuthSessions | Work::PlainSessions => None,
    }
}

/// `nginx -v` ("nginx version: nginx/1.22.1" on stderr).
fn nginx_version() -> Option<String> {
    let out = std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.trim().rsplit(' ').next().map(str::to_owned)
}

fn check_tools(sections: &[Section], pin_cpus: bool) -> Result<()> {
    let mut tools = vec![
        "smtp-sink",
        "smtp-source",
        "postfix",
        "postconf",
        "openssl",
        "prlimit",
    ];
    if sections.contains(&Section::Profile) {
        tools.extend(["valgrind", "callgrind_control", "callgrind_annotate"]);
    }
    if sections.contains(&Section::Ldap) {
        tools.extend(["slapd", "slapadd"]);
    }
    if sections.contains(&Section::Nginx) {
        tools.push("nginx");
    }
    if pin_cpus {
        tools.push("taskset");
    }
    for t in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
        if !found {
            bail!(
                "{t} is not on PATH (tests/support/install-deps.sh installs it; Postfix's tools are in /usr/sbin)"
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let args_line = std::env::args().collect::<Vec<_>>().join(" ");
    check_tools(&args.sections, args.pin_cpus)?;
    let max_idle = args.idle.iter().copied().max().unwrap_or(0) as u64;
    // The client holds one descriptor per idle connection, the gateway another (in its
    // own process): the soft limit must exceed the largest count.
    let nofile = procs::raise_nofile((2 * max_idle + 4096).max(65_536))?;
    if let Some(n) = args.idle.iter().find(|&&n| n as u64 + 1000 > nofile) {
        bail!(
            "--idle {n} needs an open-file limit above {}, but the hard limit is {nofile}",
            n + 1000
        );
    }
    // Before the runtime starts, so that its threads inherit the client's CPUs.
    if args.pin_cpus {
        let cpu = pin::split()?;
        eprintln!("servers pinned to CPU {cpu}, the load client to the others");
    }
    let threads = match args.client_threads {
        0 => 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    cleanup::on_interrupt(&rt);
    let bin = match &args.gateway_bin {
        Some(b) => b.clone(),
        None => default_gateway_bin()?,
    };
    let (dir, _tmp) = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("postern-bench-")
                .tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let _tmp = match (_tmp, args.keep) {
        (Some(t), true) => {
            let p = t.keep();
            eprintln!("working directory (kept): {}", p.display());
            None
        }
        (t, _) => t,
    };
    eprintln!("generating certificates in {}", dir.display());
    let ecdsa = Pki::generate(KeyKind::Ecdsa, &dir)?;
    let rsa = Pki::generate(KeyKind::Rsa2048, &dir)?;
    let tls = TlsConfigs {
        ecdsa13: load::tls_config(&ecdsa, TlsVersion::V13)?,
        ecdsa12: load::tls_config(&ecdsa, TlsVersion::V12)?,
        rsa13: load::tls_config(&rsa, TlsVersion::V13)?,
        rsa12: load::tls_config(&rsa, TlsVersion::V12)?,
    };
    let sink = Sink::builder()
        .backlog(1024)
        .dump(false)
        .count(true)
        .start()?;
    let mut bench = Bench {
        rt,
        report: format!("# postern-bench\n\n{}", machine(&args_line)),
        args,
        dir,
        bin,
        ecdsa,
        rsa,
        tls,
        sink,
        notes: Vec::new(),
    };
    let started = Instant::now();
    let sections = bench.args.sections.clone();
    if sections.contains(&Section::Compare) {
        bench.compare()?;
    }
    if sections.contains(&Section::Nginx) {
        bench.nginx()?;
    }
    if sections.contains(&Section::Crl) {
        bench.crl()?;
    }
    if sections.contains(&Section::Proxy) {
        bench.proxy()?;
    }
    if sections.contains(&Section::Ocsp) {
        bench.ocsp()?;
    }
    if sections.contains(&Section::Idle) {
        bench.idle()?;
    }
    if sections.contains(&Section::Ldap) {
        bench.ldap()?;
    }
    if sections.contains(&Section::Log) {
        bench.log_cost()?;
    }
    if sections.contains(&Section::Builds) {
        bench.builds()?;
    }
    if sections.contains(&Section::Crypto) {
        let seconds = if bench.args.quick { 0.1 } else { 1.0 };
        let section = crypto::report(
            &bench.rsa,
            &bench.ecdsa,
            bench.args.rounds,
            Duration::from_secs_f64(seconds),
        )?;
        bench.report.push_str(&section);
    }
    if sections.contains(&Section::Profile) {
        bench.profile()?;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut tail = String::new();
    for n in &bench.notes {
        let _ = writeln!(tail, "{}", n.trim_end());
    }
    let _ = writeln!(
        tail,
        "\nLoad average at the end: {}; the whole run took {:.0} s.",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        started.elapsed().as_secs_f64()
    );
    bench.report.push_str(&tail);
    println!("{}", bench.report);
    if let Some(path) = &bench.args.markdown {
        std::fs::write(path, &bench.report)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
