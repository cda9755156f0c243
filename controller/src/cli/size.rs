//! The size check of `postern plan` and `postern render`: whether the rendered
//! configuration fits the Secrets the controller may publish it in, said before apply.

use std::io::Write;

use postern_config::GatewayConfig;
use postern_config::protocol::{self, Limits};

/// Share of the limit from which a warning says how close it is, in percent.
const NEAR_PERCENT: usize = 80;

/// The warning `config` deserves, if it is too large to publish or close to it.
pub(crate) fn warning(config: &GatewayConfig) -> Option<String> {
    let limits = Limits::default();
    let encoded = protocol::encode(config, &config.hash(), &limits);
    if let Err(too_large) = encoded.check(&limits) {
        return Some(format!(
            "warning: {too_large}: the controller will not publish it, and every object of the namespace will report Programmed=False, reason ConfigTooLarge"
        ));
    }
    let bytes = encoded.compressed_bytes();
    let percent = bytes * 100 / limits.max_bytes();
    (percent >= NEAR_PERCENT).then(|| {
        format!(
            "warning: the rendered configuration is {bytes} bytes compressed, {percent}% of the limit of {} bytes ({} Secrets × {} bytes)",
            limits.max_bytes(),
            limits.max_parts,
            limits.part_bytes
        )
    })
}

/// Prints [`warning`] to `w`, if any.
pub(crate) fn warn(config: &GatewayConfig, w: &mut dyn Write) {
    if let Some(line) = warning(config) {
        let _ = writeln!(w, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::ListenerTls;

    /// A listener whose client CA "bundle" is `bytes` of incompressible text.
    fn listener_with_bundle(seed: u64, bytes: usize) -> postern_config::Listener {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut body = String::with_capacity(bytes);
        while body.len() < bytes {
            // xorshift: cheap, and gzip finds nothing to share.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push_str(&format!("{x:016x}"));
        }
        let yaml =
            "address: 127.0.0.1\nport: 25\nhostname: h\ndefaultPolicy: p\nnextHop: {host: h}\n";
        let mut l: postern_config::Listener = serde_saphyr::from_str(yaml).unwrap();
        l.tls = Some(ListenerTls {
            certificate_chain_pem: String::new(),
            private_key_pem: String::new(),
            client_ca_pem: Some(format!(
                "-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
            )),
            allow_version1_client_certificates: false,
            revocation: Default::default(),
        });
        l
    }

    #[test]
    fn warns_past_and_near_the_production_limit_and_not_below() {
        let mut config = GatewayConfig::default();
        assert_eq!(warning(&config), None);
        // 18 MiB of distinct bundles in hex (gzip keeps some 57 %): about 10.7 MB
        // compressed, past 8 × 900 KiB.
        for i in 0..18 {
            config
                .listeners
                .insert(format!("l{i}"), listener_with_bundle(i, 1 << 20));
        }
        let w = warning(&config).unwrap();
        assert!(w.contains("over the limit of 7372800 bytes"), "{w}");
        assert!(w.contains("ConfigTooLarge"), "{w}");
        // 11 of them, about 6.6 MB compressed: near.
        config
            .listeners
            .retain(|name, _| name[1..].parse::<u32>().unwrap() >= 7);
        let w = warning(&config).unwrap();
        assert!(w.contains("% of the limit of 7372800 bytes"), "{w}");
    }
}
