//! Measurements and the Markdown tables they are printed as.

use std::fmt::Write as _;

/// One measured run against one server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measure {
    /// Completed units (sessions, or messages delivered to the sink).
    pub count: u64,
    /// Seconds from the start until the last unit completed (for relays: arrived at the sink).
    pub secs: f64,
    /// Median latency, ms (None when the load generator reports none).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Median TLS handshake time as the client sees it (STARTTLS to the first reply
    /// inside TLS), ms; None without STARTTLS.
    pub handshake_p50_ms: Option<f64>,
    /// 99th percentile of the handshake time, ms.
    pub handshake_p99_ms: Option<f64>,
    /// CPU seconds used by the server's processes during the run (incl. draining).
    pub cpu_s: f64,
    /// CPU seconds used by the load generator (this process, and smtp-source).
    pub client_cpu_s: f64,
    /// Peak memory of the server during the run, KiB (Postern RSS; Postfix sum of PSS).
    pub mem_kib: u64,
    /// Failed sessions (or load-generator failures).
    pub errors: u64,
    /// The first errors, for the log.
    pub first_errors: Vec<String>,
}

impl Measure {
    /// Units per second.
    pub(crate) fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.count as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Server CPU seconds per 1,000 units.
    pub(crate) fn cpu_per_1k(&self) -> f64 {
        self.per_1k(self.cpu_s)
    }

    /// Load-generator CPU seconds per 1,000 units.
    pub(crate) fn client_cpu_per_1k(&self) -> f64 {
        self.per_1k(self.client_cpu_s)
    }

    fn per_1k(&self, secs: f64) -> f64 {
        if self.count > 0 {
            secs * 1000.0 / self.count as f64
        } else {
            f64::NAN
        }
    }
}

/// The median-rate run of several (rounds alternate the server order; the median damps
/// the noise of a shared machine).
pub(crate) fn median(mut runs: Vec<Measure>) -> Option<Measure> {
    if runs.is_empty() {
        return None;
    }
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    let mid = runs.len() / 2;
    let mut m = runs.swap_remove(mid);
    m.errors = errors;
    Some(m)
}

/// A row of the comparison table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Workload description.
    pub workload: String,
    /// Unit of the rate ("sessions/s", "msgs/s").
    pub unit: &'static str,
    /// The baseline's result (Postfix; or Postern without the feature).
    pub base: Option<Measure>,
    /// Postern's result.
    pub postern: Option<Measure>,
    /// Postern's rate over the baseline's in each round (the two ran back to back, so
    /// a round's ratio is not skewed by load that came and went between rounds).
    pub round_ratios: Vec<f64>,
    /// Every round's two runs (baseline, Postern), for ratios of other figures.
    pub rounds: Vec<(Measure, Measure)>,
    /// Target ratio, if the design sets one.
    pub target: Option<f64>,
}

fn f(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn lat(m: &Measure) -> String {
    match (m.p50_ms, m.p99_ms) {
        (Some(a), Some(b)) => format!("{} / {}", f(a), f(b)),
        _ => "n/a".into(),
    }
}

fn mib(kib: u64) -> String {
    f(kib as f64 / 1024.0)
}

/// The rate ratio of a row: the median of the per-round ratios when there are any,
/// else the ratio of the two median rates.
pub(crate) fn ratio(r: &Row, b: &Measure, p: &Measure) -> f64 {
    if r.round_ratios.is_empty() {
        return p.rate() / b.rate();
    }
    median_of(&r.round_ratios)
}

fn median_of(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round_range(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" rounds {lo:.2}–{hi:.2}")
}

/// Render rows with the two columns named `base` and `postern`.
pub(crate) fn table(rows: &[Row], base: &str, postern: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | unit | {base} | {postern} | rate ratio (target) | CPU efficiency ratio | p50 / p99 ms {base} | p50 / p99 ms {postern} | CPU s per 1k {base} | CPU s per 1k {postern} | client CPU s per 1k {base} / {postern} | peak MiB {base} | peak MiB {postern} | errors |"
    );
    let _ = writeln!(
        s,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for r in rows {
        let dash = || "–".to_owned();
        let b = r.base.as_ref();
        let p = r.postern.as_ref();
        let ratio = match (b, p) {
            (Some(b), Some(p)) if b.rate() > 0.0 => {
                let x = ratio(r, b, p);
                let range = round_range(&r.round_ratios);
                match r.target {
                    Some(t) => format!(
                        "**{x:.2}×** ({t}× {}){range}",
                        if x >= t { "met" } else { "missed" }
                    ),
                    None => format!("{x:.2}×{range}"),
                }
            }
            _ => dash(),
        };
        let efficiency = match (b, p) {
            (Some(b), Some(p)) if p.cpu_per_1k() > 0.0 => {
                format!("{:.2}×", b.cpu_per_1k() / p.cpu_per_1k())
            }
            _ => dash(),
        };
        let client = match (b, p) {
            (Some(b), Some(p)) => format!(
                "{} / {}",
                f(b.client_cpu_per_1k()),
                f(p.client_cpu_per_1k())
            ),
            _ => dash(),
        };
        let errors = b.map_or(0, |m| m.errors) + p.map_or(0, |m| m.errors);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.unit,
            b.map_or_else(dash, |m| f(m.rate())),
            p.map_or_else(dash, |m| f(m.rate())),
            ratio,
            efficiency,
            b.map_or_else(dash, lat),
            p.map_or_else(dash, lat),
            b.map_or_else(dash, |m| f(m.cpu_per_1k())),
            p.map_or_else(dash, |m| f(m.cpu_per_1k())),
            client,
            b.map_or_else(dash, |m| mib(m.mem_kib)),
            p.map_or_else(dash, |m| mib(m.mem_kib)),
            errors,
        );
    }
    s
}

/// Which figure of a run a latency row shows.
type Figure = fn(&Measure) -> Option<f64>;

/// One latency figure of a row: each side's value in every round, and the median of the
/// per-round ratios (Postern over the baseline) with their range.
fn latency_cell(r: &Row, figure: Figure, target: Option<f64>) -> [String; 3] {
    let pick = |side: fn(&(Measure, Measure)) -> &Measure| {
        let v: Vec<f64> = r.rounds.iter().filter_map(|m| figure(side(m))).collect();
        if v.is_empty() {
            "–".to_owned()
        } else {
            f(median_of(&v))
        }
    };
    let ratios: Vec<f64> = r
        .rounds
        .iter()
        .filter_map(|(b, p)| Some(figure(p)? / figure(b)?))
        .filter(|x| x.is_finite())
        .collect();
    let ratio = if ratios.is_empty() {
        "–".to_owned()
    } else {
        let x = median_of(&ratios);
        let range = round_range(&ratios);
        match target {
            Some(t) => format!(
                "**{x:.2}×** (≤ {t}× {}){range}",
                if x <= t { "met" } else { "missed" }
            ),
            None => format!("{x:.2}×{range}"),
        }
    };
    [pick(|m| &m.0), pick(|m| &m.1), ratio]
}

/// Latencies of rows measured in paired rounds: for the whole session and the TLS
/// handshake, p50 and p99 (each side's median over the rounds) and the median of the
/// per-round ratios with their range; `target`: the most the handshake p99 ratio may be.
pub(crate) fn latency_table(
    rows: &[Row],
    base: &str,
    postern: &str,
    target: Option<f64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| workload | figure | {base} ms | {postern} ms | ratio {postern} / {base} (target) |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|");
    let figures: [(&str, Figure, bool); 4] = [
        ("session p50", |m| m.p50_ms, false),
        ("session p99", |m| m.p99_ms, false),
        ("handshake p50", |m| m.handshake_p50_ms, false),
        ("handshake p99", |m| m.handshake_p99_ms, true),
    ];
    for r in rows {
        for (name, figure, targeted) in figures {
            if r.rounds.iter().all(|(b, _)| figure(b).is_none()) {
                continue;
            }
            let [b, p, ratio] = latency_cell(r, figure, target.filter(|_| targeted));
            let _ = writeln!(s, "| {} | {name} | {b} | {p} | {ratio} |", r.workload);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_ratio() {
        let m = |count, secs| Measure {
            count,
            secs,
            ..Measure::default()
        };
        let med = median(vec![m(10, 1.0), m(30, 1.0), m(20, 1.0)]).unwrap();
        assert_eq!(med.count, 20);
        let t = table(
            &[Row {
                workload: "w".into(),
                unit: "sessions/s",
                base: Some(m(100, 1.0)),
                postern: Some(m(250, 1.0)),
                round_ratios: vec![],
                rounds: vec![],
                target: Some(2.0),
            }],
            "Postfix",
            "Postern",
        );
        assert!(t.contains("**2.50×** (2× met)"), "{t}");
        let header_cells = t.lines().next().unwrap().matches('|').count();
        let row_cells = t.lines().nth(2).unwrap().matches('|').count();
        assert_eq!(header_cells, row_cells, "{t}");
        // Paired rounds: the median of the per-round ratios, with their range.
        let row = Row {
            workload: "w".into(),
            unit: "sessions/s",
            base: Some(m(100, 1.0)),
            postern: Some(m(80, 1.0)),
            round_ratios: vec![1.14, 0.81, 1.01],
            rounds: vec![],
            target: Some(0.95),
        };
        let t = table(&[row], "no CRL", "with CRL");
        assert!(t.contains("**1.01×** (0.95× met) rounds 0.81–1.14"), "{t}");
    }

    #[test]
    fn latency_ratios_per_round() {
        let m = |p99, hs99| Measure {
            p50_ms: Some(1.0),
            p99_ms: Some(p99),
            handshake_p50_ms: Some(0.5),
            handshake_p99_ms: Some(hs99),
            ..Measure::default()
        };
        let row = Row {
            workload: "w".into(),
            unit: "sessions/s",
            base: None,
            postern: None,
            round_ratios: vec![],
            rounds: vec![
                (m(10.0, 4.0), m(11.0, 4.0)),
                (m(10.0, 4.0), m(10.0, 4.4)),
                (m(10.0, 4.0), m(9.0, 4.12)),
            ],
            target: None,
        };
        let t = latency_table(std::slice::from_ref(&row), "no OCSP", "OCSP", Some(1.05));
        assert!(
            t.contains("| w | session p99 | 10.0 | 10.0 | 1.00× rounds 0.90–1.10 |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| w | handshake p99 | 4.00 | 4.12 | **1.03×** (≤ 1.05× met) rounds 1.00–1.10 |"
            ),
            "{t}"
        );
        assert_eq!(t.lines().count(), 6, "{t}");
    }
}
