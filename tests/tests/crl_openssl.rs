//! CRLs made by OpenSSL (`openssl ca -gencrl`, RSA): the gateway's loader reads and
//! verifies them like OpenSSL does, and `postern-gateway crl inspect` reports on them.

use std::path::Path;
use std::process::Command;

use postern_config::CrlFormat;
use postern_gateway::crl::{Missing, TrustStore, load, unix_now};
use postern_testkit::workspace::workspace_bin;

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is required for this test (tests/support/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An RSA CA and a CRL revoking serials 1A2B (keyCompromise) and 00C0FFEE (superseded), with
/// CRL number 0x10.
fn openssl_crl(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-subj",
            "/O=OpenSSL Test/CN=OpenSSL CA",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "basicConstraints=critical,CA:true",
        ],
    );
    std::fs::write(
        dir.join("index.txt"),
        "R\t350101000000Z\t240101000000Z,keyCompromise\t1A2B\tunknown\t/CN=revoked one\n\
         R\t350101000000Z\t240102000000Z,superseded\tC0FFEE\tunknown\t/CN=revoked two\n\
         V\t350101000000Z\t\t3C3C\tunknown\t/CN=valid one\n",
    )
    .unwrap();
    std::fs::write(dir.join("crlnumber"), "10\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 1\ncrl_extensions = ext\n\
             [ ext ]\nauthorityKeyIdentifier = keyid:always\n",
            dir.display()
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt", "-out",
            "crl.pem",
        ],
    );
    openssl(
        dir,
        &[
            "crl", "-in", "crl.pem", "-outform", "DER", "-out", "crl.der",
        ],
    );
    // OpenSSL agrees the CRL verifies.
    openssl(
        dir,
        &["crl", "-in", "crl.pem", "-CAfile", "ca.crt", "-noout"],
    );
}

#[test]
fn openssl_crls_load_verify_and_index() {
    let dir = tempfile::tempdir().unwrap();
    openssl_crl(dir.path());
    let mut trust = TrustStore::default();
    trust
        .add_pem(
            &std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
            "test",
        )
        .unwrap();
    for (file, format) in [("crl.pem", CrlFormat::Pem), ("crl.der", CrlFormat::Asn1)] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let l = load(&bytes, format, &trust, &[], Missing::Retain, unix_now())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let ix = &l.crls[0];
        assert_eq!(ix.meta.entries, 2, "{file}");
        assert_eq!(ix.meta.issuer, "O=OpenSSL Test, CN=OpenSSL CA");
        assert_eq!(
            ix.meta
                .crl_number
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("16")
        );
        assert_eq!(ix.lookup(&[0x1a, 0x2b]).unwrap().reason, Some(1));
        // C0FFEE has its top bit set: the DER serial is 00 C0 FF EE.
        assert_eq!(
            ix.lookup(&[0x00, 0xc0, 0xff, 0xee]).unwrap().reason,
            Some(4)
        );
        assert!(ix.lookup(&[0x3c, 0x3c]).is_none());
    }
}

#[test]
fn crl_inspect_command() {
    let dir = tempfile::tempdir().unwrap();
    openssl_crl(dir.path());
    let bin = workspace_bin("postern-gateway").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(["crl", "inspect"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&[
        "crl.der", "--ca", "ca.crt", "--serial", "c0:ff:ee", "--serial", "3C3C",
    ]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("issuer:           O=OpenSSL Test, CN=OpenSSL CA"),
        "{out}"
    );
    assert!(out.contains("CRL number:       16"), "{out}");
    assert!(out.contains("entries:          2"), "{out}");
    assert!(out.contains("signature:        verified"), "{out}");
    assert!(
        out.contains("serial C0FFEE: REVOKED (superseded) on 2024-01-02T00:00:00Z"),
        "{out}"
    );
    assert!(out.contains("serial 3C3C: not listed"), "{out}");

    let (code, out, _) = run(&["crl.pem", "--serial", "3C3C"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("PEM, 1 CRL"), "{out}");
    assert!(out.contains("not checked"), "{out}");

    let (code, out, _) = run(&["crl.pem", "--serial", "1A2B", "--json"]);
    assert_eq!(code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["crls"][0]["serials"][0]["reason"], "keyCompromise");
    assert_eq!(v["crls"][0]["entries"], 2);

    // Another CA: the signature check fails, exit 1.
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
            "-days",
            "30",
            "-subj",
            "/O=OpenSSL Test/CN=OpenSSL CA",
        ],
    );
    let (code, out, _) = run(&["crl.pem", "--ca", "other.crt"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT VERIFIED"), "{out}");

    let (code, _, err) = run(&["ca.key"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("not a valid CRL") || err.contains("PEM"),
        "{err}"
    );
}
