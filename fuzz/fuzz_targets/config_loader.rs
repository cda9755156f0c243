//! The configuration loader: any file content is either refused with an error or
//! loaded; a loaded configuration validates without panicking and survives a
//! write/read round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_config::{GatewayConfig, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = GatewayConfig::from_yaml(text, "fuzz") {
        let _ = validate(&config);
        let again = GatewayConfig::from_yaml(&config.to_yaml(), "fuzz-roundtrip")
            .expect("a loaded configuration must load again once written");
        assert_eq!(again.hash(), config.hash());
    }
});
