//! The SMTP command parser (RFC 5321, with the ESMTP parameters Postern supports).
//!
//! Pure and allocation-light: the input is one command line without its line ending.
//! Anything unexpected is a [`ParseError`] that maps to the right reply; nothing panics
//! (the fuzz target in `fuzz/` checks that).

use crate::wire::params::MailParams;
use crate::wire::reply::Reply;

/// Longest command line accepted (RFC 5321 allows 512; AUTH initial responses and
/// SMTPUTF8 addresses need more). Longer lines get `500 5.5.2`.
pub const MAX_COMMAND_LINE: usize = 4096;
/// Longest path (RFC 5321 section 4.5.3.1.3).
pub const MAX_PATH: usize = 256;

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `STARTTLS`.
    StartTls,
    /// `AUTH mechanism [initial-response]`.
    Auth {
        /// Upper-cased mechanism name.
        mechanism: String,
        /// The initial response, still base64 (`=` stands for empty).
        initial: Option<String>,
    },
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path; empty for the null sender `<>`.
        from: String,
        /// Parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path>`.
    Rcpt {
        /// The forward path.
        to: String,
    },
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `VRFY ...` (answered with `252`).
    Vrfy,
    /// `HELP [topic]`.
    Help,
    /// `QUIT`.
    Quit,
}

impl Command {
    /// The verb, for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Ehlo(_) => "EHLO",
            Self::Helo(_) => "HELO",
            Self::StartTls => "STARTTLS",
            Self::Auth { .. } => "AUTH",
            Self::Mail { .. } => "MAIL",
            Self::Rcpt { .. } => "RCPT",
            Self::Data => "DATA",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Vrfy => "VRFY",
            Self::Help => "HELP",
            Self::Quit => "QUIT",
        }
    }
}

/// Why a command line was refused; each maps to one reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The verb is not a command at all.
    #[error("command not recognized")]
    Unrecognized,
    /// A command that exists but that Postern does not implement (EXPN, TURN, BDAT, ...).
    #[error("command not implemented")]
    NotImplemented,
    /// The arguments are malformed.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// An address is malformed.
    #[error("bad address syntax: {0}")]
    BadAddress(&'static str),
    /// A MAIL or RCPT parameter Postern does not support.
    #[error("unsupported parameter")]
    UnsupportedParameter,
    /// A non-ASCII address without the SMTPUTF8 parameter.
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8,
    /// The line contains a NUL byte or is not UTF-8.
    #[error("invalid characters in command")]
    InvalidCharacters,
}

impl ParseError {
    /// The reply for this error.
    pub fn reply(&self) -> Reply {
        match self {
            Self::Unrecognized => Reply::new(500, "5.5.2", "Syntax error, command unrecognized"),
            Self::NotImplemented => Reply::new(502, "5.5.1", "Command not implemented"),
            Self::Syntax(why) => Reply::new(501, "5.5.4", format!("Syntax error: {why}")),
            Self::BadAddress(why) => Reply::new(501, "5.1.3", format!("Bad address syntax: {why}")),
            Self::UnsupportedParameter => {
                Reply::new(555, "5.5.4", "Unsupported MAIL/RCPT parameter")
            }
            Self::NeedsSmtpUtf8 => Reply::new(
                553,
                "5.6.7",
                "Non-ASCII address requires the SMTPUTF8 parameter",
            ),
            Self::InvalidCharacters => {
                Reply::new(500, "5.5.2", "Syntax error, invalid characters in command")
            }
        }
    }
}

/// Parse one command line (without CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::InvalidCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidCharacters)?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::InvalidCharacters);
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    if verb.len() > 10 {
        return Err(ParseError::Unrecognized);
    }
    let mut upper = [0u8; 10];
    for (d, s) in upper.iter_mut().zip(verb.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    let verb = &upper[..verb.len()];
    let rest_trim = rest.trim_matches(|c| c == ' ' || c == '\t');
    let no_args = |cmd: Command| {
        if rest_trim.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError::Syntax("this command takes no arguments"))
        }
    };
    match verb {
        b"EHLO" => Ok(Command::Ehlo(domain_arg(rest_trim)?)),
        b"HELO" => Ok(Command::Helo(domain_arg(rest_trim)?)),
        b"STARTTLS" => no_args(Command::StartTls),
        b"AUTH" => auth(rest_trim),
        b"MAIL" => mail(rest),
        b"RCPT" => rcpt(rest),
        b"DATA" => no_args(Command::Data),
        b"RSET" => no_args(Command::Rset),
        b"NOOP" => Ok(Command::Noop),
        b"VRFY" => {
            if rest_trim.is_empty() {
                Err(ParseError::Syntax("VRFY needs an argument"))
            } else {
                Ok(Command::Vrfy)
            }
        }
        b"HELP" => Ok(Command::Help),
        b"QUIT" => no_args(Command::Quit),
        b"EXPN" | b"TURN" | b"ETRN" | b"ATRN" | b"BDAT" | b"SEND" | b"SOML" | b"SAML"
        | b"XCLIENT" | b"XFORWARD" => Err(ParseError::NotImplemented),
        _ => Err(ParseError::Unrecognized),
    }
}

/// The EHLO/HELO argument: a domain or an address literal. Kept verbatim (it is only
/// used in `Received` headers, after [`super::received`] sanitises it again).
fn domain_arg(arg: &str) -> Result<String, ParseError> {
    let arg = arg.split([' ', '\t']).next().unwrap_or("");
    if arg.is_empty() {
        return Err(ParseError::Syntax(
            "a domain name or address literal is required",
        ));
    }
    if arg.len() > 255 {
        return Err(ParseError::Syntax("domain too long"));
    }
    let ok = if let Some(lit) = arg.strip_prefix('[') {
        lit.strip_suffix(']').is_some_and(|inner| {
            !inner.is_empty()
                && inner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
        })
    } else {
        arg.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if ok {
        Ok(arg.to_owned())
    } else {
        Err(ParseError::Syntax("invalid domain name"))
    }
}

fn auth(rest: &str) -> Result<Command, ParseError> {
    let mut parts = rest.split(' ').filter(|p| !p.is_empty());
    let mechanism = parts
        .next()
        .ok_or(ParseError::Syntax("AUTH needs a mechanism"))?;
    if mechanism.len() > 20
        || !mechanism
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ParseError::Syntax("invalid mechanism name"));
    }
    let initial = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return Err(ParseError::Syntax("too many arguments"));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

/// Strip a case-insensitive `FROM:` / `TO:` keyword, allowing spaces after the colon.
fn keyword<'a>(rest: &'a str, kw: &str) -> Result<&'a str, ParseError> {
    let rest = rest.trim_start_matches(' ');
    // `get`, not indexing: a multi-byte character may straddle the keyword's length.
    if !rest
        .get(..kw.len())
        .is_some_and(|k| k.eq_ignore_ascii_case(kw))
    {
        return Err(ParseError::Syntax(if kw == "FROM:" {
            "expected MAIL FROM:<address>"
        } else {
            "expected RCPT TO:<address>"
        }));
    }
    Ok(rest[kw.len()..].trim_start_matches(' '))
}

fn mail(rest: &str) -> Result<Command, ParseError> {
    let rest = keyword(rest, "FROM:")?;
    let (path, params_text) = split_path(rest)?;
    let from = reverse_path(path)?;
    let mut params = MailParams::default();
    for p in params_text.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match p.find('=') {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value.ok_or(ParseError::Syntax("SIZE needs a value"))?;
            if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Syntax("SIZE value is not a number"));
            }
            params.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            match value {
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => params.body_8bit = Some(true),
                Some(v) if v.eq_ignore_ascii_case("7BIT") => params.body_8bit = Some(false),
                _ => return Err(ParseError::UnsupportedParameter),
            }
        } else if key.eq_ignore_ascii_case("SMTPUTF8") && value.is_none() {
            params.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("AUTH") && value.is_some() {
            // RFC 4954 AUTH=<mailbox>: accepted and ignored (we do not trust it).
        } else {
            return Err(ParseError::UnsupportedParameter);
        }
    }
    if !from.is_ascii() && !params.smtputf8 {
        return Err(ParseError::NeedsSmtpUtf8);
    }
    Ok(Command::Mail { from, params })
}

fn rcpt(rest: &str) -> Result<Command, ParseError> {
    let rest = keyword(rest, "TO:")?;
    let (path, params_text) = split_path(rest)?;
    if params_text.split(' ').any(|p| !p.is_empty()) {
        return Err(ParseError::UnsupportedParameter);
    }
    let to = forward_path(path)?;
    Ok(Command::Rcpt { to })
}

/// Split `<path> params` (or a bare path without brackets, as lenient servers accept).
fn split_path(rest: &str) -> Result<(&str, &str), ParseError> {
    if let Some(inner) = rest.strip_prefix('<') {
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '>' if !quoted => {
                    let after = &inner[i + 1..];
                    if !after.is_empty() && !after.starts_with(' ') {
                        return Err(ParseError::BadAddress("junk after the address"));
                    }
                    return Ok((&inner[..i], after));
                }
                _ => {}
            }
        }
        Err(ParseError::BadAddress("missing closing '>'"))
    } else {
        match rest.find(' ') {
            Some(i) => Ok((&rest[..i], &rest[i..])),
            None => Ok((rest, "")),
        }
    }
}

fn reverse_path(path: &str) -> Result<String, ParseError> {
    if path.is_empty() {
        return Ok(String::new());
    }
    mailbox(strip_source_route(path)?, true)
}

fn forward_path(path: &str) -> Result<String, ParseError> {
    if path.is_empty() {
        return Err(ParseError::BadAddress("empty recipient"));
    }
    let path = strip_source_route(path)?;
    if path.eq_ignore_ascii_case("postmaster") {
        return Ok(path.to_owned());
    }
    mailbox(path, true)
}

/// RFC 5321 says source routes must be accepted and ignored: `@a,@b:user@c` → `user@c`.
fn strip_source_route(path: &str) -> Result<&str, ParseError> {
    if path.starts_with('@') {
        match path.find(':') {
            Some(i) => Ok(&path[i + 1..]),
            None => Err(ParseError::BadAddress("malformed source route")),
        }
    } else {
        Ok(path)
    }
}

/// Check `local@domain` and return it unchanged.
fn mailbox(path: &str, need_domain: bool) -> Result<String, ParseError> {
    if path.len() > MAX_PATH {
        return Err(ParseError::BadAddress("address too long"));
    }
    let at = path.rfind('@');
    let (local, domain) = match at {
        Some(i) => (&path[..i], &path[i + 1..]),
        None if need_domain => return Err(ParseError::BadAddress("address has no domain")),
        None => (path, ""),
    };
    if local.is_empty() {
        return Err(ParseError::BadAddress("empty local part"));
    }
    if let Some(q) = local.strip_prefix('"') {
        let inner = q
            .strip_suffix('"')
            .ok_or(ParseError::BadAddress("unterminated quoted local part"))?;
        let mut escaped = false;
        for c in inner.chars() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Err(ParseError::BadAddress("stray quote in local part"));
            }
        }
        if escaped {
            return Err(ParseError::BadAddress("dangling escape in local part"));
        }
    } else if !local
        .chars()
        .all(|c| !c.is_ascii() || c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(ParseError::BadAddress("invalid local part"));
    }
    if need_domain {
        let ok = if let Some(lit) = domain.strip_prefix('[') {
            lit.strip_suffix(']').is_some_and(|inner| {
                !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
            })
        } else {
            !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| {
                            !c.is_ascii() || c.is_ascii_alphanumeric() || c == '-' || c == '_'
                        })
                })
        };
        if !ok {
            return Err(ParseError::BadAddress("invalid domain"));
        }
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    /// Found by the `command_parser` fuzz target: a multi-byte character straddling the
    /// length of `TO:` / `FROM:` made the keyword check slice inside it and panic.
    #[test]
    fn multibyte_character_across_the_keyword_is_a_syntax_error() {
        for line in [
            "RCPT TO\u{1b7}exaet>",
            "RCPT T\u{1b7}:<a@b.c>",
            "MAIL FROM\u{20ac}<a@b.c>",
        ] {
            let e = p(line).unwrap_err();
            assert!(matches!(e, ParseError::Syntax(_)), "{line}: {e:?}");
            assert_eq!(e.reply().code, 501, "{line}");
        }
        assert!(p("RCPT TO:<\u{1b7}@example.org>").is_ok());
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            p("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(
            p("HeLo [127.0.0.1]").unwrap(),
            Command::Helo("[127.0.0.1]".into())
        );
        assert_eq!(p("starttls").unwrap(), Command::StartTls);
        assert_eq!(p("QUIT").unwrap(), Command::Quit);
        assert_eq!(p("noop anything").unwrap(), Command::Noop);
        assert_eq!(p("VRFY bob").unwrap(), Command::Vrfy);
        assert_eq!(p("help mail").unwrap(), Command::Help);
    }

    #[test]
    fn mail_and_params() {
        assert_eq!(
            p("MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME").unwrap(),
            Command::Mail {
                from: "a@example.org".into(),
                params: MailParams {
                    size: Some(1000),
                    body_8bit: Some(true),
                    smtputf8: false
                }
            }
        );
        assert_eq!(
            p("mail from: <>").unwrap(),
            Command::Mail {
                from: String::new(),
                params: MailParams::default()
            }
        );
        assert_eq!(
            p("MAIL FROM:a@example.org").unwrap(),
            Command::Mail {
                from: "a@example.org".into(),
                params: MailParams::default()
            }
        );
        assert_eq!(
            p("MAIL FROM:<@relay.example:a@example.org>").unwrap(),
            Command::Mail {
                from: "a@example.org".into(),
                params: MailParams::default()
            }
        );
        assert_eq!(
            p("MAIL FROM:<a@example.org> RET=FULL"),
            Err(ParseError::UnsupportedParameter)
        );
        assert_eq!(
            p("MAIL FROM:<a@example.org> SIZE=x")
                .unwrap_err()
                .reply()
                .code,
            501
        );
        assert_eq!(
            p("MAIL FROM:<jö@example.org>"),
            Err(ParseError::NeedsSmtpUtf8)
        );
        assert!(p("MAIL FROM:<jö@example.org> SMTPUTF8").is_ok());
        assert_eq!(p("MAIL TO:<a@example.org>").unwrap_err().reply().code, 501);
        assert!(p("MAIL FROM:<\"john doe\"@example.org>").is_ok());
        assert!(p("MAIL FROM:<a@example.org>junk").is_err());
        assert!(p("MAIL FROM:<a@example.org").is_err());
        assert!(p("MAIL FROM:<a@>").is_err());
        assert!(p("MAIL FROM:<a..b@example.org>").is_err());
    }

    #[test]
    fn rcpt() {
        assert_eq!(
            p("RCPT TO:<b@example.net>").unwrap(),
            Command::Rcpt {
                to: "b@example.net".into()
            }
        );
        assert_eq!(
            p("RCPT TO:<Postmaster>").unwrap(),
            Command::Rcpt {
                to: "Postmaster".into()
            }
        );
        assert!(p("RCPT TO:<>").is_err());
        assert_eq!(
            p("RCPT TO:<b@example.net> NOTIFY=NEVER"),
            Err(ParseError::UnsupportedParameter)
        );
        let long = format!("RCPT TO:<{}@example.net>", "a".repeat(300));
        assert!(p(&long).is_err());
    }

    #[test]
    fn auth() {
        assert_eq!(
            p("AUTH plain AGFsaWNlAHNlY3JldA==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFsaWNlAHNlY3JldA==".into())
            }
        );
        assert_eq!(
            p("AUTH LOGIN").unwrap(),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
        assert!(p("AUTH").is_err());
        assert!(p("AUTH PLAIN a b").is_err());
    }

    #[test]
    fn bad_input() {
        assert_eq!(p("DATA x").unwrap_err().reply().code, 501);
        assert_eq!(p("FOO"), Err(ParseError::Unrecognized));
        assert_eq!(p(""), Err(ParseError::Unrecognized));
        assert_eq!(p("EXPN list"), Err(ParseError::NotImplemented));
        assert_eq!(parse(b"NOOP\0"), Err(ParseError::InvalidCharacters));
        assert_eq!(parse(b"NOOP \xff"), Err(ParseError::InvalidCharacters));
        assert_eq!(
            p("EHLO"),
            Err(ParseError::Syntax(
                "a domain name or address literal is required"
            ))
        );
        assert!(p("EHLO bad\x1bname").is_err());
        assert!(p("EHLO a(b)").is_err());
        assert!(p("AVERYLONGVERBINDEED").is_err());
    }

    /// A quick deterministic fuzz run in every `cargo test` (the cargo-fuzz target in
    /// `fuzz/` goes further): mutated command lines never panic and every error has a
    /// one-line reply.
    #[test]
    fn random_lines_never_panic() {
        let seeds: [&[u8]; 8] = [
            b"MAIL FROM:<a@example.org> SIZE=10 BODY=8BITMIME",
            b"RCPT TO:<\"x y\"@[127.0.0.1]>",
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            b"EHLO [IPv6:::1]",
            b"MAIL FROM:<@a,@b:c@d> SMTPUTF8",
            b"VRFY x",
            b"STARTTLS",
            b"HELO \xc3\xa9xample",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut line = seeds[(next() % 8) as usize].to_vec();
            for _ in 0..(next() % 6) {
                let r = next();
                let pos = (r as usize >> 8) % (line.len() + 1);
                match r % 4 {
                    0 if !line.is_empty() => {
                        line.remove(pos.min(line.len() - 1));
                    }
                    1 => line.insert(pos, (r >> 32) as u8),
                    2 => line.insert(pos, b"<>:@= \"."[(r >> 40) as usize % 8]),
                    _ => line.truncate(pos),
                }
            }
            if let Err(e) = parse(&line) {
                let mut out = Vec::new();
                e.reply().write_to(&mut out);
                assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "{line:?}");
            }
        }
    }
}
