//! Instruction counts with callgrind: Postern runs under `valgrind --tool=callgrind`, a
//! warm-up runs, the counters are zeroed (`callgrind_control -z`), a fixed workload runs,
//! and the counters are dumped (`callgrind_control -d`). Instructions per session or per
//! message do not depend on how busy the machine is, unlike rates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postern_config::GatewayConfig;

use crate::load;
use postern_testkit::gateway::Gateway;

use crate::postern;

/// One profiled workload.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// Workload description.
    pub workload: String,
    /// "session" or "message".
    pub unit: &'static str,
    /// Units in the measured part.
    pub units: u64,
    /// Instructions executed by the gateway (all threads) in the measured part.
    pub ir: u64,
    /// The callgrind dump.
    pub file: PathBuf,
    /// `callgrind_annotate --inclusive=yes` output, first lines.
    pub inclusive_top: String,
    /// `callgrind_annotate` (exclusive) output, first lines.
    pub exclusive_top: String,
}

impl Profile {
    /// Instructions per unit.
    pub(crate) fn per_unit(&self) -> f64 {
        self.ir as f64 / self.units.max(1) as f64
    }
}

/// A gateway running under callgrind, with its workloads.
#[derive(Debug)]
pub(crate) struct Profiled {
    gw: Gateway,
    out_prefix: PathBuf,
    dumps: u32,
}

impl Profiled {
    /// Start `bin` under callgrind with `config`.
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        config: &GatewayConfig,
    ) -> Result<Self> {
        let out_prefix = dir.join(format!("callgrind.{name}"));
        let wrapper = vec![
            "valgrind".to_owned(),
            "--tool=callgrind".to_owned(),
            format!("--callgrind-out-file={}", out_prefix.display()),
            "--dump-instr=no".to_owned(),
            "--vgdb=yes".to_owned(),
        ];
        // The configuration file is re-read and hashed every poll interval: keep that
        // background work out of the per-session counts.
        let extra = ["--poll-interval", "3600s"];
        let gw = postern::launch(bin, dir, name, config)
            .wrapper(wrapper)
            .args(&extra)
            .ready_within(Duration::from_secs(600))
            .stop_within(Duration::from_secs(120))
            .start()
            .context("starting the gateway under valgrind (Debian package valgrind)")?;
        Ok(Self {
            gw,
            out_prefix,
            dumps: 0,
        })
    }

    /// The gateway (for its admin port).
    pub(crate) fn gateway(&self) -> &Gateway {
        &self.gw
    }

    fn control(&self, arg: &str) -> Result<()> {
        let out = Command::new("callgrind_control")
            .arg(arg)
            .arg(self.gw.pid().to_string())
            .stdin(Stdio::null())
            .output()
            .context("running callgrind_control")?;
        if !out.status.success() {
            bail!(
                "callgrind_control {arg} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Warm up with `warmup` units, zero the counters, run `spec`, dump and annotate.
    pub(crate) fn measure(
        &mut self,
        rt: &tokio::runtime::Runtime,
        workload: &str,
        unit: &'static str,
        spec: load::Spec,
        warmup: u64,
    ) -> Result<Profile> {
        let mut w = spec.clone();
        w.max_sessions = warmup;
        let r = rt.block_on(load::run(w));
        if r.errors > 0 {
            bail!("{workload}: warm-up failed: {:?}", r.first_errors);
        }
        self.control("--zero")?;
        let r = rt.block_on(load::run(spec.clone()));
        if r.errors > 0 {
            bail!("{workload}: profiled run failed: {:?}", r.first_errors);
        }
        let units = if unit == "message" {
            r.messages
        } else {
            r.sessions
        };
        self.control(&format!("--dump={workload}"))?;
        self.dumps += 1;
        let file = self.wait_dump()?;
        let ir = total_ir(&file)?;
        let annotate = |inclusive: bool| -> Result<String> {
            let out = Command::new("callgrind_annotate")
                .arg(format!(
                    "--inclusive={}",
                    if inclusive { "yes" } else { "no" }
                ))
                .args(["--threshold=100", "--auto=no"])
                .arg(&file)
                .stdin(Stdio::null())
                .output()
                .context("running callgrind_annotate")?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(top_lines(&text, 30))
        };
        Ok(Profile {
            workload: workload.to_owned(),
            unit,
            units,
            ir,
            inclusive_top: annotate(true)?,
            exclusive_top: annotate(false)?,
            file,
        })
    }

    /// The dump file number `self.dumps` (callgrind names them `<prefix>.<n>`).
    fn wait_dump(&self) -> Result<PathBuf> {
        let want = PathBuf::from(format!("{}.{}", self.out_prefix.display(), self.dumps));
        for _ in 0..600 {
            if let Ok(text) = std::fs::read_to_string(&want)
                && text
                    .lines()
                    .any(|l| l.starts_with("totals:") || l.starts_with("summary:"))
            {
                return Ok(want);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("callgrind dump {} did not appear", want.display())
    }

    /// Stop the gateway.
    pub(crate) fn stop(mut self) {
        let _ = self.gw.stop();
    }
}

fn total_ir(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no totals in {}", file.display()))
}

/// The function lines of callgrind_annotate's output (after the header), without the
/// thread and runtime frames that contain everything (over 90%).
fn top_lines(text: &str, n: usize) -> String {
    text.lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(2)
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let pct = l
                .split_once('(')
                .and_then(|(_, r)| r.split_once('%'))
                .and_then(|(p, _)| p.trim().parse::<f64>().ok());
            pct.is_some_and(|p| p < 90.0)
        })
        .take(n)
        .collect::<Vec<_>>()
        .join("\n")
}
