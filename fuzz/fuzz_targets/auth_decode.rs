//! AUTH PLAIN / LOGIN decoding: any response line decodes or is refused with a 5xx
//! reply, never a panic; accepted PLAIN and LOGIN credentials carry no NUL; and credentials
//! encoded the way a client does decode back to themselves.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libfuzzer_sys::fuzz_target;
use postern_gateway::smtp::sasl::{Credentials, credential, decode_response, parse_plain};

fuzz_target!(|data: &[u8]| {
    // As a response line (initial response or answer to a challenge).
    match decode_response(data) {
        Ok(raw) => {
            if let Ok(c) = parse_plain(&raw) {
                assert!(!c.user.contains('\0') && !c.password.contains('\0'));
            }
            if let Ok(c) = credential(&raw) {
                assert!(
                    !c.contains('\0'),
                    "a LOGIN credential must never carry a NUL"
                );
            }
        }
        Err(e) => assert!((500..600).contains(&e.reply().code)),
    }
    // As an already decoded PLAIN message.
    if let Ok(c) = parse_plain(data) {
        assert!(!c.user.contains('\0') && !c.password.contains('\0'));
    }
    // Round trip: what a client encodes is what the gateway reads.
    let text = String::from_utf8_lossy(data).replace('\0', "");
    let (user, password) = text.split_once('\n').unwrap_or((&text, ""));
    let wire = B64.encode(format!("\0{user}\0{password}"));
    let raw = decode_response(wire.as_bytes()).expect("client-encoded base64 decodes");
    assert_eq!(
        parse_plain(&raw),
        Ok(Credentials {
            user: user.to_owned(),
            password: password.to_owned()
        })
    );
    let wire = B64.encode(password);
    let raw = decode_response(wire.as_bytes()).expect("client-encoded base64 decodes");
    assert_eq!(credential(&raw).as_deref(), Ok(password));
});
