//! The directory misbehaving under the real gateway binary: slapd slow (a delaying TCP
//! proxy in front of it), slower than the operation timeout, killed, and back. The client
//! gets `454 4.7.0` (try again) within the timeouts, never a hang and never a wrong `535`.

use std::time::{Duration, Instant};

use postern_config::{Duration as D, TlsMode};
use postern_tests::gate::{
    Client, DelayProxy, Hop, HopMode, Pki, config, ldap_auth_profile, policy, start_gateway,
};
use postern_tests::slapd::{self, Slapd, SlapdOptions};

#[test]
fn slapd_slow_down_and_back() {
    let mut slapd = Slapd::start(SlapdOptions::default()).unwrap();
    let proxy = DelayProxy::start(format!("127.0.0.1:{}", slapd.port()).parse().unwrap(), 0);
    let pki = Pki::new("LDAP fault CA");
    let hop = Hop::start(HopMode::Accept);
    let mut cfg = config(
        &pki,
        hop.addr,
        policy(TlsMode::Preferred, false, true, false),
        ldap_auth_profile(),
    );
    let mut profile = slapd::ldap_profile(&[format!("ldap://{}", proxy.addr)]);
    // Every AUTH goes to the directory.
    profile.cache.ttl = D::from_secs(0);
    profile.cache.negative_ttl = D::from_secs(0);
    cfg.ldap_profiles.insert("corp".into(), profile);
    let gw = start_gateway(&cfg, &[]).unwrap();
    let auth = || {
        let mut c = Client::connect(gw.addr()).unwrap();
        c.cmd("EHLO client.test").unwrap();
        c.starttls(&pki.ca_pem(), None).unwrap();
        c.cmd("EHLO client.test").unwrap();
        let t = Instant::now();
        let r = c
            .auth_plain(b"frank", slapd::FRANK.password.as_bytes())
            .unwrap();
        (r, t.elapsed())
    };
    let ((code, text), _) = auth();
    assert_eq!(code, 235, "{text}\n{}", gw.log());

    // Slow (150 ms per packet each way) but within the 2 s operation timeout.
    proxy.set_delay_ms(150);
    let ((code, text), _) = auth();
    assert_eq!(code, 235, "slow directory: {text}\n{}", gw.log());

    // Slower than the operation timeout: 454, bounded.
    proxy.set_delay_ms(3000);
    let ((_, text), took) = auth();
    assert!(text.starts_with("454 4.7.0"), "{text}\n{}", gw.log());
    assert!(took < Duration::from_secs(9), "{took:?}");
    proxy.set_delay_ms(0);

    // Killed: 454, then back once slapd is.
    slapd.kill();
    let ((_, text), took) = auth();
    assert!(text.starts_with("454 4.7.0"), "{text}\n{}", gw.log());
    assert!(took < Duration::from_secs(9), "{took:?}");
    slapd.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ((code, text), _) = auth();
        if code == 235 {
            break;
        }
        assert!(
            text.starts_with("454 4.7.0") && Instant::now() < deadline,
            "after restart: {text}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
