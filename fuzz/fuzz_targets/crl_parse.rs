//! CRL parsing (the gateway's own DER walker, for files of a million entries): any
//! bytes, as DER or PEM, are split and parsed without panicking, and every entry of a
//! parsed CRL can be iterated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_config::CrlFormat;
use postern_gateway::crl::ParsedCrl;
use postern_gateway::crl::parse::split;

fuzz_target!(|data: &[u8]| {
    for format in [CrlFormat::Asn1, CrlFormat::Pem] {
        let Ok(parts) = split(data, format) else {
            continue;
        };
        for (i, der) in parts.iter().enumerate() {
            if let Ok(crl) = ParsedCrl::parse(der, i) {
                let _ = crl.revoked_bytes();
                for entry in crl.entries() {
                    if entry.is_err() {
                        break;
                    }
                }
            }
        }
    }
});
