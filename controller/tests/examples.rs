//! The example manifest sets (DESIGN.md section 4) compile cleanly into the configuration
//! each procedure of the seed needs, the committed test material is consistent, and
//! examples/gen-certs.sh regenerates working material.

use std::path::{Path, PathBuf};
use std::process::Command;

use postern_config::{
    AllowanceAction, AuthBackend, GatewayConfig, PolicyAction, TlsMode, validate,
};
use postern_controller::cli::manifests::{load, read_inputs};
use postern_controller::compile::{Rendered, compile};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Compile the given paths; every object must be accepted with no diagnostic at all.
fn compile_clean(paths: &[PathBuf]) -> GatewayConfig {
    let inputs: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let texts = read_inputs(&inputs).unwrap();
    let loaded = load(&texts, None);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let compiled = compile(&loaded.snapshot, None);
    for o in &compiled.report.objects {
        assert!(o.diagnostics.is_empty(), "{}: {:?}", o.key, o.diagnostics);
        assert_eq!(o.rendered, Rendered::Current, "{}", o.key);
    }
    validate(&compiled.config).unwrap();
    compiled.config
}

fn scenario(name: &str) -> GatewayConfig {
    compile_clean(&[examples().join(name)])
}

#[test]
fn certificate_only() {
    let c = scenario("certificate-only");
    let p = &c.auth_profiles["cac-cert"];
    assert!(p.certificate.is_some());
    assert!(
        p.smtp_auth.is_none(),
        "no SMTP AUTH fallback in procedure A"
    );
    let relayed = &c.policies["relayed"];
    assert_eq!(relayed.action, PolicyAction::Relay);
    assert_eq!(relayed.tls, TlsMode::Required);
    assert!(relayed.verify_client_certificate && relayed.require_smtp_auth);
    let l = &c.listeners["submission"];
    assert_eq!(l.auth_profile.as_deref(), Some("cac-cert"));
    assert!(l.tls.as_ref().unwrap().client_ca_pem.is_some());
    let q = c.ldap_profiles["corp-ldap"]
        .certificate_auth_query
        .as_ref()
        .unwrap();
    assert_eq!(
        q.filter,
        "(&(objectClass=posixAccount)(caccn={cn})(cacserial={sn})(cacissuer={issuer}))"
    );
    assert_eq!(q.user_id_attribute, "uid");
    assert!(!c.crl_sources["example-ca"].enabled);
}

#[test]
fn ldap_auth_with_both_allowance_actions() {
    let c = scenario("ldap-auth");
    for (profile, action) in [
        ("ldap-auth", AllowanceAction::Reject),
        ("ldap-auth-monitor", AllowanceAction::Monitor),
    ] {
        let p = &c.auth_profiles[profile];
        assert!(p.certificate.is_none());
        let auth = p.smtp_auth.as_ref().unwrap();
        assert_eq!(auth.profile, profile);
        assert_eq!(auth.allowance.as_ref().unwrap().action, action);
    }
    let relayed = &c.policies["relayed"];
    assert_eq!(relayed.tls, TlsMode::Required);
    assert!(relayed.require_smtp_auth && !relayed.verify_client_certificate);
    assert_eq!(
        c.listeners["submission"].auth_profile.as_deref(),
        Some("ldap-auth")
    );
    assert_eq!(
        c.listeners["submission-monitor"].auth_profile.as_deref(),
        Some("ldap-auth-monitor")
    );
    let q = c.ldap_profiles["corp-ldap"]
        .smtp_auth_query
        .as_ref()
        .unwrap();
    assert_eq!(
        q.allowance_filter.as_deref(),
        Some("(&(uid={u})(|(!(caccn=*))(cacexempt=*)(cacemergency>={t})))")
    );
}

#[test]
fn either_certificate_or_smtp_auth() {
    let c = scenario("either");
    let p = &c.auth_profiles["cac-cert"];
    assert_eq!(
        p.certificate.as_ref().unwrap().backend,
        AuthBackend::Ldap {
            ldap_profile: "corp-ldap".into()
        }
    );
    let fallback = p.smtp_auth.as_ref().expect("fallback to SMTP AUTH");
    assert_eq!(fallback.profile, "ldap-auth");
    let allowance = fallback.allowance.as_ref().unwrap();
    assert_eq!(allowance.action, AllowanceAction::Reject);
    assert_eq!(allowance.response.code, 525);
    assert_eq!(allowance.response.enhanced_code, "5.7.13");
    assert_eq!(
        allowance.response.text,
        "Dear user, please use your CAC to send email."
    );
    let relayed = &c.policies["relayed"];
    assert_eq!(relayed.tls, TlsMode::Preferred);
    assert!(relayed.require_smtp_auth && relayed.require_tls_for_smtp_auth);
    assert_eq!(
        c.listeners["submission"].auth_profile.as_deref(),
        Some("cac-cert")
    );
}

/// The three scenarios can run side by side: their listeners use different ports.
#[test]
fn scenarios_use_distinct_ports() {
    let mut ports = Vec::new();
    for s in ["certificate-only", "ldap-auth", "either"] {
        ports.extend(scenario(s).listeners.values().map(|l| l.port));
    }
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ports.len(), unique.len(), "{ports:?}");
}

fn pem_block(text: &str, after: &str) -> String {
    let start = text.find(after).unwrap() + after.len();
    let body: String = text[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    body
}

fn ldif_attr(ldif: &str, uid: &str, attr: &str) -> String {
    let entry = ldif
        .split("\n\n")
        .find(|e| e.contains(&format!("\nuid: {uid}\n")))
        .unwrap_or_else(|| panic!("no uid {uid}"));
    entry
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{attr}: ")))
        .unwrap_or_else(|| panic!("{uid} has no {attr}"))
        .to_owned()
}

fn subject_cn_and_serial(pem: &str) -> (String, String) {
    let der = postern_config::pem::certificates(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    (
        cn,
        cert.raw_serial_as_string().replace(':', "").to_uppercase(),
    )
}

fn check_material(pki: &Path, secrets_dir: &Path) {
    let ldif = std::fs::read_to_string(examples().join("ldap/users.ldif")).unwrap();
    let (cn, serial) =
        subject_cn_and_serial(&std::fs::read_to_string(pki.join("alice.crt")).unwrap());
    assert_eq!(
        cn,
        ldif_attr(&ldif, "alice", "caccn"),
        "alice.crt CN vs users.ldif"
    );
    assert_eq!(
        serial,
        ldif_attr(&ldif, "alice", "cacserial"),
        "alice.crt serial vs users.ldif"
    );
    // The examples' certificate queries bind the issuer: {issuer} is this RFC 4514 string.
    let der =
        postern_config::pem::certificates(&std::fs::read_to_string(pki.join("alice.crt")).unwrap())
            .unwrap();
    let facts = postern_gateway::auth::CertificateFacts::from_der(&der[0]).unwrap();
    assert_eq!(
        facts.issuer_dn,
        ldif_attr(&ldif, "alice", "cacissuer"),
        "alice.crt issuer vs users.ldif"
    );
    let server = std::fs::read_to_string(pki.join("server.crt")).unwrap();
    let ca = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    for s in ["certificate-only", "ldap-auth", "either"] {
        let secrets = std::fs::read_to_string(secrets_dir.join(s).join("secrets.yaml")).unwrap();
        assert_eq!(
            pem_block(&secrets, "  tls.crt: |"),
            server,
            "{s}: gateway-tls vs pki/server.crt"
        );
        if s != "ldap-auth" {
            assert_eq!(
                pem_block(&secrets, "  ca.crt: |"),
                ca,
                "{s}: cac-roots vs pki/ca.crt"
            );
        }
    }
}

#[test]
fn committed_material_is_consistent() {
    check_material(&examples().join("pki"), &examples());
}

#[test]
fn gen_certs_regenerates_working_material() {
    let openssl = Command::new("openssl").arg("version").output();
    assert!(
        openssl.is_ok_and(|o| o.status.success()),
        "openssl is needed by examples/gen-certs.sh (tests/support/install-deps.sh installs it)"
    );
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(examples().join("gen-certs.sh"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    check_material(&out.path().join("pki"), out.path());
    for s in ["certificate-only", "ldap-auth", "either"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(examples().join(s))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "secrets.yaml")
            .collect();
        paths.sort();
        paths.push(out.path().join(s).join("secrets.yaml"));
        compile_clean(&paths);
    }
    // The generated CRL is signed by the generated CA and revokes `revoked`.
    let crl = std::fs::read(out.path().join("pki/ca.crl")).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    let ca_pem = std::fs::read_to_string(out.path().join("pki/ca.crt")).unwrap();
    let ca_der = postern_config::pem::certificates(&ca_pem).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der[0]).unwrap();
    crl.verify_signature(ca.public_key()).unwrap();
    let revoked = subject_cn_and_serial(
        &std::fs::read_to_string(out.path().join("pki/revoked.crt")).unwrap(),
    )
    .1;
    assert!(
        crl.iter_revoked_certificates().any(|r| r
            .raw_serial_as_string()
            .replace(':', "")
            .to_uppercase()
            == revoked)
    );
}
