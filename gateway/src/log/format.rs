//! Log lines in the stock `tracing-subscriber` formats, written without its formatters.
//!
//! The decision log is a contract: its field names and the shape of a line, text
//! (`<time> <LEVEL> <target>: name=value ...`) or JSON (one flat object per line), are
//! what log pipelines and alerts parse. At several lines per session, the stock
//! formatters cost a sixth of a session's CPU: every piece of a line goes through
//! `fmt::write`, is styled for a terminal even with colours off, and the JSON one
//! formats the time into a fresh `String` per line. These write the same bytes straight
//! into a line buffer of their own (a thread's `String`, appended to directly rather than
//! through the subscriber's `dyn fmt::Write` piece by piece) and hand the finished line
//! over in one write. An event inside a span (Postern logs none; a library may, at a
//! debug filter) goes to the stock formatter, which renders the span context.
//!
//! One difference, on purpose: in text lines, control characters in a value are
//! escaped (`\n`, `\x1b`) where the stock formatter writes a `%`-recorded value as is,
//! so a certificate subject or a client's command cannot start a forged line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::registry::LookupSpan;

/// How lines are written: text or JSON.
#[derive(Debug)]
pub struct LineFormat {
    json: bool,
    /// For events inside a span.
    text_stock: format::Format<format::Full, SystemTime>,
    json_stock: format::Format<format::Json, SystemTime>,
}

impl LineFormat {
    /// `name=value` text lines, as `tracing_subscriber::fmt`'s default format without
    /// colours.
    pub fn text() -> Self {
        Self::new(false)
    }

    /// One JSON object per line, the event's fields at the top level, as
    /// `tracing_subscriber::fmt`'s JSON format with `flatten_event(true)`. The layer
    /// must format span fields as JSON (`fmt_fields(JsonFields::new())`).
    pub fn json() -> Self {
        Self::new(true)
    }

    fn new(json: bool) -> Self {
        Self {
            json,
            text_stock: format::format().with_ansi(false),
            json_stock: format::format().json().flatten_event(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span = match event.parent() {
            Some(_) => true,
            None => event.is_contextual() && ctx.lookup_current().is_some(),
        };
        if in_span {
            return if self.json {
                self.json_stock.format_event(ctx, writer, event)
            } else {
                self.text_stock.format_event(ctx, writer, event)
            };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.write_line(&mut line, event)?;
                let written = writer.write_str(&line);
                if line.capacity() > KEEP_LINE_BYTES {
                    *line = String::new();
                }
                written
            }
            // A value's `Debug` that logs while this thread formats a line.
            Err(_) => {
                let mut line = String::new();
                self.write_line(&mut line, event)?;
                writer.write_str(&line)
            }
        })
    }
}

thread_local! {
    /// The line being formatted on this thread.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A line buffer grown past this (a huge value) is not kept for the next line.
const KEEP_LINE_BYTES: usize = 64 << 10;

impl LineFormat {
    /// `event`'s whole line, newline included, appended to `line`.
    fn write_line(&self, line: &mut String, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let now = std::time::SystemTime::now();
        if self.json {
            line.push_str("{\"timestamp\":\"");
            write_time(line, now)?;
            line.push_str("\",\"level\":\"");
            line.push_str(meta.level().as_str());
            line.push('"');
            let mut fields = JsonFields {
                out: line,
                result: Ok(()),
            };
            event.record(&mut fields);
            fields.result?;
            line.push_str(",\"target\":");
            json_string(line, meta.target())?;
            line.push_str("}\n");
        } else {
            write_time(line, now)?;
            line.push_str(match *meta.level() {
                Level::TRACE => " TRACE ",
                Level::DEBUG => " DEBUG ",
                Level::INFO => "  INFO ",
                Level::WARN => "  WARN ",
                Level::ERROR => " ERROR ",
            });
            line.push_str(meta.target());
            line.push_str(": ");
            let mut fields = TextFields {
                out: line,
                first: true,
                result: Ok(()),
            };
            event.record(&mut fields);
            fields.result?;
            line.push('\n');
        }
        Ok(())
    }
}

/// `2026-12-07T10:16:04.123456Z`: UTC, microseconds, as the stock `SystemTime` timer.
fn write_time(out: &mut impl fmt::Write, now: std::time::SystemTime) -> fmt::Result {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut b[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut b[5..7], u64::from(month));
    put_digits(&mut b[8..10], u64::from(day));
    put_digits(&mut b[11..13], of_day / 3600);
    put_digits(&mut b[14..16], of_day / 60 % 60);
    put_digits(&mut b[17..19], of_day % 60);
    put_digits(&mut b[20..26], u64::from(since.subsec_micros()));
    // Only ASCII digits and separators were written.
    out.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
}

/// Writes `n` as decimal digits right-aligned into `to` (which it fills).
fn put_digits(to: &mut [u8], mut n: u64) {
    for d in to.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01 (proleptic Gregorian);
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The fields of a text line: `name=value` separated by spaces, the message bare.
struct TextFields<'a> {
    out: &'a mut String,
    first: bool,
    result: fmt::Result,
}

impl TextFields<'_> {
    /// Writes the separator and the name of a field (none for the message).
    fn start(&mut self, field: &Field) -> fmt::Result {
        if !self.first {
            self.out.push(' ');
        }
        self.first = false;
        match field.name() {
            "message" => {}
            name => {
                self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
                self.out.push('=');
            }
        }
        Ok(())
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = self.start(field).and_then(|()| {
            if field.name() == "message" {
                text_escaped(self.out, value)
            } else if value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                // What `{:?}` writes for such a string, without its per-character walk.
                self.out.push('"');
                self.out.push_str(value);
                self.out.push('"');
                Ok(())
            } else {
                write!(self.out, "{value:?}")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self
            .start(field)
            .and_then(|()| write!(Escaping::text(&mut *self.out), "{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let Some(mut source) = value.source() else {
            return self.record_debug(field, &format_args!("{value}"));
        };
        if self.result.is_err() {
            return;
        }
        // As the stock format: the error, then `<name>.sources=[source, its source]`.
        self.result = self.start(field).and_then(|()| {
            let mut out = Escaping::text(&mut *self.out);
            write!(out, "{value} {}.sources=[{source}", field.name())?;
            while let Some(next) = source.source() {
                write!(out, ", {next}")?;
                source = next;
            }
            out.write_char(']')
        });
    }
}

/// Writes what it is given (a `Debug` rendering, an error chain) escaped as the line's
/// format requires: for the inside of a JSON string ([`json_escaped`]) when `JSON`,
/// control characters escaped ([`text_escaped`]) otherwise.
struct Escaping<'a, const JSON: bool> {
    out: &'a mut String,
}

impl<'a> Escaping<'a, false> {
    fn text(out: &'a mut String) -> Self {
        Self { out }
    }
}

impl<'a> Escaping<'a, true> {
    fn json(out: &'a mut String) -> Self {
        Self { out }
    }
}

impl<const JSON: bool> fmt::Write for Escaping<'_, JSON> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if JSON {
            json_escaped(self.out, s)
        } else {
            text_escaped(self.out, s)
        }
    }
}

/// `s` with its control characters (C0, DEL, C1) escaped, so that no value ends a line
/// or sends a terminal an escape sequence.
fn text_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    // U+0080..U+009F, the C1 controls, are 0xC2 0x80..0x9F in UTF-8.
    if !any_byte(s.as_bytes(), 0x20, [0x7f, 0xc2]) {
        return out.write_str(s);
    }
    let mut clean = 0;
    for (at, c) in s.char_indices() {
        let escaped = match c {
            '\n' => out.write_str(&s[clean..at]).and(out.write_str("\\n")),
            '\r' => out.write_str(&s[clean..at]).and(out.write_str("\\r")),
            '\t' => out.write_str(&s[clean..at]).and(out.write_str("\\t")),
            c if c < ' ' || c == '\x7f' => {
                out.write_str(&s[clean..at])?;
                write!(out, "\\x{:02x}", c as u32)
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.write_str(&s[clean..at])?;
                write!(out, "\\u{{{:x}}}", c as u32)
            }
            _ => continue,
        };
        escaped?;
        clean = at + c.len_utf8();
    }
    out.write_str(&s[clean..])
}

/// The fields of a JSON line: `,"name":value` each, as `tracing-serde` writes them.
struct JsonFields<'a> {
    out: &'a mut String,
    result: fmt::Result,
}

impl JsonFields<'_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.out.push(',');
        self.result = json_string(self.out, field.name()).and_then(|()| {
            self.out.push(':');
            value(self.out)
        });
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| json_string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaping::json(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.push_str(if value { "true" } else { "false" });
            Ok(())
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's rendering (shortest round-trip digits, `null` when not finite).
        let text = serde_json::to_string(&value).map_err(|_| fmt::Error);
        self.entry(field, |out| out.write_str(&text?));
    }
}

/// `s` as a JSON string, quotes included.
fn json_string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    json_escaped(out, s)?;
    out.write_char('"')
}

/// `s` escaped as serde_json escapes it: `"`, `\` and the C0 controls.
fn json_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !any_byte(s.as_bytes(), 0x20, [b'"', b'\\']) {
        return out.write_str(s);
    }
    let mut clean = 0;
    for (at, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.write_str(&s[clean..at])?;
        if short.is_empty() {
            let hex = [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]];
            out.write_str("\\u00")?;
            out.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)?;
        } else {
            out.write_str(short)?;
        }
        clean = at + 1;
    }
    out.write_str(&s[clean..])
}

/// Whether `s` has a byte below `below` (at most 0x80) or equal to one of `equal`: the
/// bytes a value must be escaped for. Eight bytes at a time, as values are mostly clean
/// and a line has a dozen of them.
fn any_byte(s: &[u8], below: u8, equal: [u8; 2]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `v` is zero (exact, "Bit Twiddling Hacks").
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let x = u64::from_le_bytes(eight);
        // A byte below `below`: exact for `below` <= 0x80.
        if x.wrapping_sub(ONES * u64::from(below)) & !x & HIGHS != 0
            || has_zero(x ^ (ONES * u64::from(equal[0])))
            || has_zero(x ^ (ONES * u64::from(equal[1])))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < below || equal.contains(&b))
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
