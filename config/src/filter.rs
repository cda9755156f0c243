//! The LDAP filter-template grammar: `(&(caccn={cn})(cacserial={sn}))`.
//!
//! A template is parsed once, when the configuration is validated: every `{name}` must
//! be a known placeholder that the query may use, placeholders may only stand where an
//! assertion value is expected, and the filter must be well-formed (RFC 4515). Errors
//! give the byte offset and the placeholder concerned.
//!
//! Whitespace between filter components (`(! (caccn=*))`, as printed in the appliance
//! manual) is accepted and dropped, because directory servers disagree about it.
//!
//! Filling a template with values (and escaping them) is the gateway's business
//! (`postern_gateway::ldap::filter`): this crate only knows the grammar, through
//! [`FilterTemplate::parts`].

use std::fmt;

/// A value that can be substituted into a filter template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placeholder {
    /// `{cn}`: the certificate subject's common name.
    Cn,
    /// `{sn}`: the certificate serial number, upper-case hex, no separators, no leading zero byte.
    Sn,
    /// `{dn}`: the certificate subject DN (RFC 4514 string).
    Dn,
    /// `{issuer}`: the certificate issuer DN (RFC 4514 string).
    Issuer,
    /// `{email}`: the rfc822Name SAN, or the subject's emailAddress.
    Email,
    /// `{upn}`: the Microsoft UPN otherName SAN.
    Upn,
    /// `{fp}`: SHA-256 fingerprint of the certificate, lower-case hex.
    Fp,
    /// `{u}`: the SMTP AUTH user name.
    U,
    /// `{t}`: now, as LDAP GeneralizedTime `YYYYMMDDHHMMSSZ`.
    T,
    /// `{edipi}`: the digits before `@` of the UPN SAN (`1234567890@mil` → `1234567890`).
    Edipi,
    /// `{altSecIssuerSerial}`: Active Directory's `X509:<I>issuer<SR>serial` strong mapping
    /// (issuer in certificate order, serial bytes reversed, upper-case hex).
    AltSecIssuerSerial,
    /// `{altSecSki}`: Active Directory's `X509:<SKI>hex` (the subject key identifier).
    AltSecSki,
    /// `{altSecSha1PublicKey}`: Active Directory's `X509:<SHA1-PUKEY>hex` (SHA-1 of the key).
    AltSecSha1PublicKey,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 13] = [
        Self::Cn,
        Self::Sn,
        Self::Dn,
        Self::Issuer,
        Self::Email,
        Self::Upn,
        Self::Fp,
        Self::U,
        Self::T,
        Self::Edipi,
        Self::AltSecIssuerSerial,
        Self::AltSecSki,
        Self::AltSecSha1PublicKey,
    ];
    /// Placeholders a certificate authentication query may use.
    pub const CERTIFICATE: [Placeholder; 12] = [
        Self::Cn,
        Self::Sn,
        Self::Dn,
        Self::Issuer,
        Self::Email,
        Self::Upn,
        Self::Fp,
        Self::T,
        Self::Edipi,
        Self::AltSecIssuerSerial,
        Self::AltSecSki,
        Self::AltSecSha1PublicKey,
    ];
    /// Placeholders an SMTP authentication query or allowance filter may use.
    pub const SMTP_AUTH: [Placeholder; 2] = [Self::U, Self::T];

    /// The name between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cn => "cn",
            Self::Sn => "sn",
            Self::Dn => "dn",
            Self::Issuer => "issuer",
            Self::Email => "email",
            Self::Upn => "upn",
            Self::Fp => "fp",
            Self::U => "u",
            Self::T => "t",
            Self::Edipi => "edipi",
            Self::AltSecIssuerSerial => "altSecIssuerSerial",
            Self::AltSecSki => "altSecSki",
            Self::AltSecSha1PublicKey => "altSecSha1PublicKey",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

/// Why a filter template was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid LDAP filter {template:?} at offset {offset}: {reason}")]
pub struct FilterError {
    /// The template as written.
    pub template: String,
    /// Byte offset into the template where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

/// A piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Filter text, used as it is (structural whitespace already dropped).
    Literal(String),
    /// Where a value goes; it must be escaped as an assertion value.
    Value(Placeholder),
}

/// A parsed, validated filter template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterTemplate {
    source: String,
    parts: Vec<Part>,
}

impl FilterTemplate {
    /// Parse `text`, allowing only the placeholders in `allowed`.
    pub fn parse(text: &str, allowed: &[Placeholder]) -> Result<Self, FilterError> {
        let err = |offset: usize, reason: String| FilterError {
            template: text.to_owned(),
            offset,
            reason,
        };
        // 1. Split into literal text and placeholders.
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        while let Some((i, c)) = rest.next() {
            match c {
                '{' => {
                    let close = text[i..].find('}').ok_or_else(|| {
                        err(
                            i,
                            "'{' without a closing '}' (write \\7b for a literal brace)".into(),
                        )
                    })?;
                    let name = &text[i + 1..i + close];
                    let placeholder = Placeholder::from_name(name).ok_or_else(|| {
                        err(
                            i,
                            format!(
                                "unknown placeholder {{{name}}} (known: {})",
                                Placeholder::ALL.map(|p| p.to_string()).join(" ")
                            ),
                        )
                    })?;
                    if !allowed.contains(&placeholder) {
                        return Err(err(
                            i,
                            format!(
                                "placeholder {placeholder} cannot be used in this query (allowed here: {})",
                                allowed
                                    .iter()
                                    .map(|p| p.to_string())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Value(placeholder));
                    for _ in 0..name.chars().count() + 1 {
                        rest.next();
                    }
                }
                '}' => {
                    return Err(err(
                        i,
                        "'}' without an opening '{' (write \\7d for a literal brace)".into(),
                    ));
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        // 2. Check the structure, with placeholders standing in as opaque values.
        let mut tokens = Vec::new();
        let mut offset = 0;
        for part in &parts {
            match part {
                Part::Literal(s) => {
                    for (i, c) in s.char_indices() {
                        tokens.push((offset + i, Tok::Char(c)));
                    }
                    offset += s.len();
                }
                Part::Value(p) => {
                    tokens.push((offset, Tok::Value(*p)));
                    offset += p.name().len() + 2;
                }
            }
        }
        let mut checker = Checker {
            tokens: &tokens,
            pos: 0,
        };
        checker.skip_ws();
        checker.filter().map_err(|(o, r)| err(o, r))?;
        checker.skip_ws();
        if let Some((o, _)) = tokens.get(checker.pos) {
            return Err(err(
                *o,
                "unexpected text after the end of the filter".into(),
            ));
        }
        // 3. Keep the canonical form: structural whitespace dropped.
        let parts = normalise(&parts);
        Ok(Self {
            source: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholders the template uses, in order of appearance.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(v) => Some(*v),
            Part::Literal(_) => None,
        })
    }

    /// The template in canonical form, literal text and placeholders in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The filter with each placeholder's value escaped by [`escape_value`]; `value`
    /// returns `None` for a value that is not available, and rendering fails with that
    /// placeholder. (What `postern explain` prints; the gateway renders the same way.)
    pub fn render_escaped(
        &self,
        mut value: impl FnMut(Placeholder) -> Option<String>,
    ) -> Result<String, Placeholder> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Value(p) => out.push_str(&escape_value(&value(*p).ok_or(*p)?)),
            }
        }
        Ok(out)
    }
}

/// An RFC 4515 assertion value: `*`, `(`, `)`, `\` and NUL as `\2a`, `\28`, `\29`, `\5c`,
/// `\00`, every other character unchanged (what `ldap3::ldap_escape` does).
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for FilterTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Drop whitespace that sits between filter components (never inside a value).
///
/// Only called on templates that passed the structural check, so a simple state machine
/// suffices: outside an item whitespace is structural; an item starts at a `(` that is
/// not followed by an operator and ends at its `)`.
fn normalise(parts: &[Part]) -> Vec<Part> {
    #[derive(PartialEq)]
    enum State {
        Outside,
        ItemStart,
        InItem,
    }
    let mut state = State::Outside;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Value(p) => {
                state = State::InItem;
                out.push(Part::Value(*p));
            }
            Part::Literal(s) => {
                let mut buf = String::with_capacity(s.len());
                for c in s.chars() {
                    match state {
                        State::Outside | State::ItemStart if c.is_ascii_whitespace() => {}
                        State::Outside => {
                            buf.push(c);
                            if c == '(' {
                                state = State::ItemStart;
                            }
                        }
                        State::ItemStart => {
                            buf.push(c);
                            state = match c {
                                '&' | '|' | '!' => State::Outside,
                                _ => State::InItem,
                            };
                        }
                        State::InItem => {
                            buf.push(c);
                            if c == ')' {
                                state = State::Outside;
                            }
                        }
                    }
                }
                if !buf.is_empty() {
                    out.push(Part::Literal(buf));
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Tok {
    Char(char),
    Value(Placeholder),
}

struct Checker<'a> {
    tokens: &'a [(usize, Tok)],
    pos: usize,
}

type CheckResult<T> = Result<T, (usize, String)>;

impl Checker<'_> {
    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map(|(o, _)| *o)
            .or_else(|| self.tokens.last().map(|(o, _)| o + 1))
            .unwrap_or(0)
    }

    fn peek(&self) -> Option<Tok> {
        self.tokens.get(self.pos).map(|(_, t)| *t)
    }

    fn peek_char(&self) -> Option<char> {
        match self.peek() {
            Some(Tok::Char(c)) => Some(c),
            _ => None,
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek_char(), Some(c) if c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, want: char) -> CheckResult<()> {
        match self.peek() {
            Some(Tok::Char(c)) if c == want => {
                self.pos += 1;
                Ok(())
            }
            Some(Tok::Char(c)) => Err((self.offset(), format!("expected '{want}', found '{c}'"))),
            Some(Tok::Value(p)) => Err((
                self.offset(),
                format!("expected '{want}', found placeholder {p}"),
            )),
            None => Err((
                self.offset(),
                format!("expected '{want}', found the end (unbalanced parentheses?)"),
            )),
        }
    }

    /// filter = "(" filtercomp ")"
    fn filter(&mut self) -> CheckResult<()> {
        self.expect('(')?;
        self.skip_ws();
        match self.peek_char() {
            Some('&') | Some('|') => {
                self.pos += 1;
                self.skip_ws();
                while self.peek_char() == Some('(') {
                    self.filter()?;
                    self.skip_ws();
                }
            }
            Some('!') => {
                let at = self.offset();
                self.pos += 1;
                self.skip_ws();
                self.filter()?;
                self.skip_ws();
                if self.peek_char() == Some('(') {
                    let mut count = 1;
                    while self.peek_char() == Some('(') {
                        self.filter()?;
                        self.skip_ws();
                        count += 1;
                    }
                    return Err((
                        at,
                        format!(
                            "'!' takes exactly one filter, found {count} (wrap them in (|...) or (&...))"
                        ),
                    ));
                }
            }
            _ => self.item()?,
        }
        self.expect(')')
    }

    /// item = attr ("=" / "~=" / ">=" / "<=" / ":...") value
    fn item(&mut self) -> CheckResult<()> {
        let start = self.offset();
        let mut attr = String::new();
        loop {
            match self.peek() {
                Some(Tok::Char(c))
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';' =>
                {
                    attr.push(c);
                    self.pos += 1;
                }
                Some(Tok::Value(p)) => {
                    return Err((
                        self.offset(),
                        format!("placeholder {p} stands where an attribute name is expected"),
                    ));
                }
                _ => break,
            }
        }
        let extensible = self.peek_char() == Some(':');
        if attr.is_empty() && !extensible {
            return Err((start, "expected an attribute name".into()));
        }
        if let Some(first) = attr.chars().next()
            && !(first.is_ascii_alphabetic() || first.is_ascii_digit())
        {
            return Err((start, format!("invalid attribute name {attr:?}")));
        }
        if extensible {
            // attr [":dn"] [":" matchingrule] ":=" value — accept the shape loosely.
            while let Some(c) = self.peek_char() {
                if c == '=' {
                    break;
                }
                if !(c.is_ascii_alphanumeric() || c == ':' || c == '.' || c == '-') {
                    return Err((
                        self.offset(),
                        format!("unexpected '{c}' in an extensible match"),
                    ));
                }
                self.pos += 1;
            }
            self.expect('=')?;
            return self.value(false);
        }
        match self.peek_char() {
            Some('=') => {
                self.pos += 1;
                self.value(true)
            }
            Some(op @ ('~' | '>' | '<')) => {
                self.pos += 1;
                self.expect('=')
                    .map_err(|(o, _)| (o, format!("'{op}' must be followed by '='")))?;
                self.value(false)
            }
            Some(c) => Err((
                self.offset(),
                format!("unexpected '{c}' after attribute {attr:?}"),
            )),
            None => Err((self.offset(), "unexpected end after attribute name".into())),
        }
    }

    /// An assertion value up to the closing ')'. `*` is allowed only for equality
    /// (presence and substring matches).
    fn value(&mut self, stars: bool) -> CheckResult<()> {
        loop {
            match self.peek() {
                Some(Tok::Char(')')) => return Ok(()),
                Some(Tok::Char('(')) => {
                    return Err((
                        self.offset(),
                        "unescaped '(' in a value (write \\28)".into(),
                    ));
                }
                Some(Tok::Char('*')) if !stars => {
                    return Err((
                        self.offset(),
                        "'*' is only valid in an equality match".into(),
                    ));
                }
                Some(Tok::Char('\\')) => {
                    let at = self.offset();
                    self.pos += 1;
                    for _ in 0..2 {
                        match self.peek_char() {
                            Some(c) if c.is_ascii_hexdigit() => self.pos += 1,
                            _ => {
                                return Err((at, "'\\' must be followed by two hex digits".into()));
                            }
                        }
                    }
                }
                Some(Tok::Char('\0')) => return Err((self.offset(), "NUL in a filter".into())),
                Some(_) => self.pos += 1,
                None => return Err((self.offset(), "missing ')' at the end of an item".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(text: &str) -> Result<FilterTemplate, FilterError> {
        FilterTemplate::parse(text, &Placeholder::CERTIFICATE)
    }
    fn auth(text: &str) -> Result<FilterTemplate, FilterError> {
        FilterTemplate::parse(text, &Placeholder::SMTP_AUTH)
    }

    #[test]
    fn accepts_the_manuals_filters() {
        cert("(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn}))").unwrap();
        cert("(&(objectClass=user)(cn={cn}))").unwrap();
        cert("(&(caccn={cn})(cacserial={sn}))").unwrap();
        auth("(uid={u})").unwrap();
        let t = auth("(&(uid={u})(|(! (caccn=*)) (cacexempt=*) (cacemergency>={t})))").unwrap();
        // Structural whitespace is dropped from the canonical parts.
        assert_eq!(
            t.parts(),
            [
                Part::Literal("(&(uid=".into()),
                Part::Value(Placeholder::U),
                Part::Literal(")(|(!(caccn=*))(cacexempt=*)(cacemergency>=".into()),
                Part::Value(Placeholder::T),
                Part::Literal(")))".into()),
            ]
        );
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            [Placeholder::U, Placeholder::T]
        );
    }

    #[test]
    fn knows_the_strong_mapping_placeholders() {
        let t = cert(
            "(|(employeeNumber={edipi})(altSecurityIdentities={altSecIssuerSerial})(altSecurityIdentities={altSecSki})(altSecurityIdentities={altSecSha1PublicKey}))",
        )
        .unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            [
                Placeholder::Edipi,
                Placeholder::AltSecIssuerSerial,
                Placeholder::AltSecSki,
                Placeholder::AltSecSha1PublicKey
            ]
        );
        // Names are case-sensitive, as every placeholder's.
        let e = cert("(a={altsecski})").unwrap_err();
        assert!(e.reason.contains("unknown placeholder"), "{e}");
        // Certificate values only.
        let e = auth("(uid={edipi})").unwrap_err();
        assert!(e.reason.contains("cannot be used in this query"), "{e}");
        for p in Placeholder::ALL {
            assert_eq!(Placeholder::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn explains_the_manuals_typo() {
        // The manual's procedure prints `(!(a)(b)(c))`, which is not a valid filter.
        let e = auth("(&(uid={u})(!(caccn=*)(cacexempt=*)(cacemergency>={t})))").unwrap_err();
        assert!(e.reason.contains("'!' takes exactly one filter"), "{e}");
    }

    #[test]
    fn escaped_rendering_follows_rfc_4515() {
        assert_eq!(escape_value("a*(b)\\c\0d"), "a\\2a\\28b\\29\\5cc\\00d");
        let t = FilterTemplate::parse("(&(uid={u})(mail=*))", &Placeholder::SMTP_AUTH).unwrap();
        assert_eq!(
            t.render_escaped(|_| Some("*)(uid=*".into())).unwrap(),
            "(&(uid=\\2a\\29\\28uid=\\2a)(mail=*))"
        );
        assert_eq!(t.render_escaped(|_| None), Err(Placeholder::U));
    }

    #[test]
    fn refuses_bad_templates() {
        for (text, needle) in [
            ("(uid={u}", "end of an item"),
            ("uid={u}", "expected '('"),
            ("(uid={x})", "unknown placeholder {x}"),
            ("(uid={cn})", "cannot be used in this query"),
            ("({u}=x)", "attribute name is expected"),
            ("(uid={u})(cn=x)", "after the end"),
            ("(uid=a(b)", "unescaped '('"),
            ("(uid={u)", "without a closing"),
            ("(uid=}{u})", "without an opening"),
            ("(uid=\\zz)", "two hex digits"),
            ("(uid>=a*)", "only valid in an equality"),
            ("(&(uid=a)", "unbalanced"),
            ("", "expected '('"),
        ] {
            let e = auth(text).unwrap_err();
            assert!(e.reason.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_give_the_offset() {
        let e = auth("(&(uid={u})(cn={cn}))").unwrap_err();
        assert_eq!(e.offset, 15, "{e}");
        let e = auth("(uid=a(b)").unwrap_err();
        assert_eq!(e.offset, 6, "{e}");
    }
}
