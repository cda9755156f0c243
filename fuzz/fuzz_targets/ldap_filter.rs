//! LDAP filter templates and RFC 4515 escaping: parsing any template never panics, and
//! whatever a value holds, its escaped form carries no filter metacharacter, so a
//! rendered filter keeps the template's structure (balanced parentheses, no wildcard).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_gateway::ldap::{FilterTemplate, Placeholder, escape_value};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // First line: a template to parse; the rest: a value to substitute.
    let (template, value) = text.split_once('\n').unwrap_or((&text, &text));
    let _ = FilterTemplate::parse(template, &Placeholder::ALL);

    let escaped = escape_value(value);
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
});
