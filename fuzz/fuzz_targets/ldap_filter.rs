//! LDAP filter templates and their rendering: parsing and rendering any template never
//! panics; whatever a value holds, its escaped form carries no filter metacharacter, so a
//! rendered filter keeps the template's structure (balanced parentheses, no wildcard),
//! and ldap3's own filter parser accepts it (a second opinion on the escaping).
//!
//! Arbitrary templates are not held to ldap3's parser: our grammar is RFC 4515's, which
//! is wider than ldap3's in known places (see `postern_gateway::ldap::filter`'s tests).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_config::filter::{FilterTemplate, Placeholder};
use postern_gateway::ldap::filter::RenderFilter;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // First line: a template to parse; the rest: a value to substitute.
    let (template, value) = text.split_once('\n').unwrap_or((&text, &text));
    if let Ok(t) = FilterTemplate::parse(template, &Placeholder::ALL) {
        let _ = t.render(|_| Some(value.to_owned())).unwrap();
    }

    let escaped = ldap3::ldap_escape(value);
    assert!(!escaped.contains(['*', '(', ')', '\0']), "{escaped:?}");
    let bytes = escaped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            assert!(
                bytes.len() > i + 2
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit(),
                "lone backslash in {escaped:?}"
            );
            i += 3;
        } else {
            i += 1;
        }
    }
    let t = FilterTemplate::parse("(&(uid={u})(caccn={cn}))", &Placeholder::ALL).unwrap();
    let rendered = t.render(|_| Some(value.to_owned())).unwrap();
    assert_eq!(rendered.matches('(').count(), 3, "{rendered:?}");
    assert_eq!(rendered.matches(')').count(), 3, "{rendered:?}");
    assert!(ldap3::parse_filter(&rendered).is_ok(), "{rendered:?}");
});
