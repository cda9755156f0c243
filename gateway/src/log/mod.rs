//! The gateway's log: how lines are formatted, queued and written, and the refusals kept
//! for the status page.
//!
//! [`init`] is the one place the process's tracing subscriber is built.

pub mod format;
pub mod recent;
pub mod writer;

use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::prelude::*;

use format::LineFormat;
use recent::RecentDecisions;
use writer::{LogGuard, LogMetrics, LogWriter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `<time> <LEVEL> <target>: name=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets the process's subscriber: lines filtered by `POSTERN_LOG` (default `info`),
/// formatted as `format`, written to stderr by the log's writer ([`writer`]), which
/// counts into `metrics`; `recent` keeps the last refusals. The guard writes what is
/// still queued when dropped at exit.
pub fn init(
    format: Format,
    metrics: LogMetrics,
    recent: RecentDecisions,
) -> std::io::Result<LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = LogWriter::start(std::io::stderr(), metrics)?;
    // No colours: the log goes to files and collectors far more often than to a
    // terminal, and a line is the same wherever it goes.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        // A line that cannot be written is counted by the writer; reporting it would go
        // to the same stderr.
        .log_internal_errors(false)
        .with_writer(writer);
    let base = tracing_subscriber::registry().with(filter).with(recent);
    match format {
        Format::Text => base.with(layer.event_format(LineFormat::text())).init(),
        Format::Json => base
            .with(
                layer
                    .fmt_fields(JsonFields::new())
                    .event_format(LineFormat::json()),
            )
            .init(),
    }
    Ok(guard)
}
