//! The lines [`LineFormat`] writes are the stock formatter's, byte for byte (the
//! timestamp aside, which differs from one call to the next).

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::prelude::*;

use super::*;

/// Collects what a layer writes.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Json,
}

/// The lines `events` log through the stock formatter and through ours, each with its
/// timestamp replaced by `<time>`.
fn both(kind: Kind, events: fn()) -> (String, String) {
    let (stock, ours) = raw(kind, events);
    (untimed(kind, &stock), untimed(kind, &ours))
}

/// The lines as [`both`] writes them, timestamps kept.
fn raw(kind: Kind, events: fn()) -> (String, String) {
    let stock = Buf::default();
    let ours = Buf::default();
    match kind {
        Kind::Text => {
            let s = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(stock.clone()),
            );
            tracing::subscriber::with_default(s, events);
            let o = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(LineFormat::text())
                    .with_writer(ours.clone()),
            );
            tracing::subscriber::with_default(o, events);
        }
        Kind::Json => {
            let s = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(stock.clone()),
            );
            tracing::subscriber::with_default(s, events);
            let o = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(LineFormat::json())
                    .with_writer(ours.clone()),
            );
            tracing::subscriber::with_default(o, events);
        }
    }
    (stock.text(), ours.text())
}

/// Each line's timestamp, checked for its shape and replaced.
fn untimed(kind: Kind, log: &str) -> String {
    log.lines()
        .map(|line| {
            let at = match kind {
                Kind::Text => 0,
                Kind::Json => line.find("\"timestamp\":\"").expect(line) + 13,
            };
            let time = &line[at..at + 27];
            assert!(is_time(time), "{time:?} in {line:?}");
            format!("{}<time>{}\n", &line[..at], &line[at + 27..])
        })
        .collect()
}

fn is_time(t: &str) -> bool {
    t.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        26 => b == b'Z',
        _ => b.is_ascii_digit(),
    })
}

struct Shown(&'static str);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A decision line as sessions log it, and the kinds of values other lines carry.
fn decisions() {
    let ip: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    tracing::info!(
        target: "postern::decision",
        session = %Shown("6B0478CE000000"),
        listener = %Shown("submission"),
        client_ip = %ip,
        client_port = 40123u16,
        proxy_ip = %Shown(""),
        tls = %Shown("TLSv1.3"),
        cert_subject = %Shown("CN=DOE.JOHN.1234567890,OU=DoD,O=U.S. Government"),
        decision = "certificate",
        outcome = "valid",
        reason = "chain, validity and revocation verified",
    );
    tracing::warn!(target: "postern::decision", decision = "config", outcome = "refused", origin = "file", reason = %Shown("listener \"a\": port 25 in use"), "configuration refused; the one in force keeps serving");
    tracing::error!(count = -3i64, ok = true, from = ?Some("crl.example"), none = ?None::<String>, "plain {} message", 42);
    tracing::debug!(target: "postern::ldap", query = "cac-auth", elapsed_ms = 3u64);
    tracing::trace!("only a message");
    tracing::info!(
        reason = "with \"quotes\" and a \\ backslash",
        user = "jos\u{e9}",
        tab = "a\tb"
    );
    tracing::info!(r#type = "raw name", "message first");
    tracing::info!(big = 1u128 << 100, bytes = ?b"ab");
}

#[test]
fn text_lines_are_the_stock_lines() {
    let (stock, ours) = both(Kind::Text, decisions);
    assert_eq!(ours, stock);
    assert_eq!(ours.lines().count(), 8);
    assert!(
        ours.contains(" decision=\"certificate\" outcome=\"valid\""),
        "{ours}"
    );
}

#[test]
fn json_lines_are_the_stock_lines() {
    let (stock, ours) = both(Kind::Json, decisions);
    assert_eq!(ours, stock);
    for line in ours.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect(line);
    }
}

#[test]
fn json_escapes_as_serde_json() {
    fn events() {
        tracing::info!(
            a = "\u{1}\u{8}\u{c}\n\r\t\"\\\u{7f}\u{1f}é",
            b = %Shown("line\nbreak \u{1b}[31m"),
            f = 1.5f64,
            g = f64::NAN,
            h = 3.0f64,
        );
    }
    let (stock, ours) = both(Kind::Json, events);
    assert_eq!(ours, stock);
}

#[test]
fn events_in_spans_keep_their_span_context() {
    fn events() {
        let span = tracing::info_span!("request", id = 7, path = "/x");
        let _in = span.enter();
        tracing::info!(outcome = "ok", "inside");
        let inner = tracing::info_span!("inner");
        inner.in_scope(|| tracing::warn!("deeper"));
    }
    for kind in [Kind::Text, Kind::Json] {
        let (stock, ours) = both(kind, events);
        assert_eq!(ours, stock);
        assert!(ours.contains("request"), "{ours}");
    }
}

#[test]
fn a_value_cannot_forge_a_text_line() {
    fn events() {
        tracing::info!(
            target: "postern::decision",
            cert_subject = %Shown("CN=x\n2026-12-07T00:00:00.000000Z  INFO postern::decision: outcome=\"valid\""),
            command = %Shown("EHLO \u{1b}[2J\u{7f}\u{85}\r"),
            "a message\nwith a newline",
        );
    }
    let (stock, ours) = raw(Kind::Text, events);
    assert_eq!(stock.lines().count(), 3, "the stock format: {stock}");
    let ours = untimed(Kind::Text, &ours);
    assert_eq!(ours.lines().count(), 1, "{ours}");
    assert!(ours.contains("cert_subject=CN=x\\n2026-12-07"), "{ours}");
    assert!(
        ours.contains("command=EHLO \\x1b[2J\\x7f\\u{85}\\r"),
        "{ours}"
    );
    assert!(ours.contains("a message\\nwith a newline"), "{ours}");
}

#[test]
fn times_are_utc_calendar_dates() {
    for secs in [
        0u64,
        951_782_400, // 2000-02-29
        1_709_164_799,
        4_102_444_800, // 2100-01-01
        1_796_601_599,
    ]
    .into_iter()
    .chain((0..2000).map(|i| i * 1_234_567 + 89))
    {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, 123_456_789);
        let mut ours = String::new();
        write_time(&mut ours, t).unwrap();
        let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap();
        let expected = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.123456Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        assert_eq!(ours, expected, "{secs}");
    }
}

/// The eight-at-a-time check finds every byte the one-at-a-time one does, at every
/// position and next to every other byte.
#[test]
fn any_byte_matches_a_byte_at_a_time() {
    let slow =
        |s: &[u8], below: u8, equal: [u8; 2]| s.iter().any(|&b| b < below || equal.contains(&b));
    for (below, equal) in [(0x20, [0x7f, 0xc2]), (0x20, [b'"', b'\\'])] {
        for len in 0..20 {
            for at in 0..len.max(1) {
                for b in 0..=255u8 {
                    for fill in [b'a', 0xff, 0x80, 0x21] {
                        let mut s = vec![fill; len];
                        if len > 0 {
                            s[at] = b;
                        }
                        assert_eq!(any_byte(&s, below, equal), slow(&s, below, equal), "{s:?}");
                    }
                }
            }
        }
    }
}
