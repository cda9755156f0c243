//! Certificates made with the `openssl` command line, the way an operator makes them:
//! a root with `openssl req -x509`, client certificates with a bare `openssl x509 -req`
//! (which, without `-extfile`, makes an X.509 version 1 certificate), certificates with
//! chosen validity dates and CRLs with `openssl ca`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Run openssl with `args` in `dir`, failing with its output.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("openssl is not installed (tests/support/install-deps.sh installs it)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("openssl {} failed: {text}", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate, PEM file.
    pub cert: PathBuf,
    /// Private key, PEM file.
    pub key: PathBuf,
}

impl Issued {
    /// The certificate PEM.
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("certificate file")
    }

    /// The certificate DER.
    pub fn cert_der(&self) -> Vec<u8> {
        let dir = self.cert.parent().expect("in a directory");
        let file = self.cert.file_name().expect("file").to_string_lossy();
        let der = dir.join(format!("{file}.der"));
        openssl(
            dir,
            &[
                "x509",
                "-in",
                &self.cert.to_string_lossy(),
                "-outform",
                "DER",
                "-out",
                &der.to_string_lossy(),
            ],
        )
        .expect("openssl x509 -outform DER");
        std::fs::read(der).expect("DER file")
    }

    /// `openssl x509 -noout -text`.
    pub fn text(&self) -> String {
        let dir = self.cert.parent().expect("in a directory");
        openssl(
            dir,
            &[
                "x509",
                "-noout",
                "-text",
                "-in",
                &self.cert.to_string_lossy(),
            ],
        )
        .expect("openssl x509 -text")
    }

    /// The subject as OpenSSL prints it in RFC 2253 form (without `subject=`).
    pub fn subject_rfc2253(&self) -> String {
        self.name_rfc2253("-subject")
    }

    /// The issuer as OpenSSL prints it in RFC 2253 form (without `issuer=`).
    pub fn issuer_rfc2253(&self) -> String {
        self.name_rfc2253("-issuer")
    }

    fn name_rfc2253(&self, which: &str) -> String {
        let dir = self.cert.parent().expect("in a directory");
        let out = openssl(
            dir,
            &[
                "x509",
                "-noout",
                which,
                "-nameopt",
                "RFC2253",
                "-in",
                &self.cert.to_string_lossy(),
            ],
        )
        .expect("openssl x509 -subject");
        let line = out.trim_end_matches(['\r', '\n']);
        line.split_once('=')
            .map(|(_, v)| v)
            .unwrap_or(line)
            .to_owned()
    }
}

/// A CA made with openssl in its own directory, with an `openssl ca` database so it can
/// also issue with chosen dates, revoke and write CRLs.
#[derive(Debug)]
pub struct OpensslCa {
    /// The CA directory.
    pub dir: PathBuf,
    /// The CA certificate and key.
    pub ca: Issued,
    name: String,
}

/// `openssl ca` configuration: no extensions section, so the certificates it signs are
/// version 1, like those of a bare `openssl x509 -req`.
fn ca_config(dir: &Path, name: &str) -> String {
    let mut c = String::new();
    let d = dir.display();
    let _ = write!(
        c,
        "[ca]\ndefault_ca = this\n\n[this]\n\
         database = {d}/{name}.index\nserial = {d}/{name}.serial\ncrlnumber = {d}/{name}.crlnumber\n\
         new_certs_dir = {d}\ncertificate = {d}/{name}.crt\nprivate_key = {d}/{name}.key\n\
         default_md = sha256\ndefault_days = 30\ndefault_crl_days = 7\npolicy = anything\n\
         unique_subject = no\ncopy_extensions = none\n\n\
         [anything]\ncommonName = supplied\n"
    );
    c
}

impl OpensslCa {
    /// A self-signed root `CN=<cn>` (v3, `openssl req -x509`) in `dir`, files named
    /// after `name`.
    pub fn root(dir: &Path, name: &str, cn: &str) -> Result<Self> {
        let ca = Issued {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &ca.key.to_string_lossy(),
                "-out",
                &ca.cert.to_string_lossy(),
            ],
        )?;
        Self::with_database(dir, name, ca)
    }

    /// An existing CA (certificate and key files, e.g. examples/pki's) copied into `dir`
    /// as `<name>.crt` and `<name>.key`, with an empty database.
    pub fn from_files(dir: &Path, name: &str, cert: &Path, key: &Path) -> Result<Self> {
        let ca = Issued {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::copy(cert, &ca.cert).with_context(|| cert.display().to_string())?;
        std::fs::copy(key, &ca.key).with_context(|| key.display().to_string())?;
        Self::with_database(dir, name, ca)
    }

    /// The database's file (`index.txt` format), for `openssl ocsp -index`.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(format!("{}.index", self.name))
    }

    fn with_database(dir: &Path, name: &str, ca: Issued) -> Result<Self> {
        std::fs::write(dir.join(format!("{name}.index")), "")?;
        std::fs::write(dir.join(format!("{name}.serial")), "1000\n")?;
        std::fs::write(dir.join(format!("{name}.crlnumber")), "01\n")?;
        std::fs::write(dir.join(format!("{name}.cnf")), ca_config(dir, name))?;
        Ok(Self {
            dir: dir.to_owned(),
            ca,
            name: name.to_owned(),
        })
    }

    fn request(&self, name: &str, subj: &str) -> Result<(Issued, PathBuf)> {
        let issued = Issued {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        let csr = self.dir.join(format!("{name}.csr"));
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                subj,
                "-keyout",
                &issued.key.to_string_lossy(),
                "-out",
                &csr.to_string_lossy(),
            ],
        )?;
        Ok((issued, csr))
    }

    /// A client certificate for `subj` (`/C=../CN=..` form) signed with a bare
    /// `openssl x509 -req -CA -CAkey` (version 1), valid for two days, serial `serial`.
    pub fn issue_v1(&self, name: &str, subj: &str, serial: u32) -> Result<Issued> {
        self.sign_request(name, subj, serial, None)
    }

    /// The same as [`Self::issue_v1`] with `-extfile`: a version 3 client certificate
    /// (`basicConstraints CA:FALSE`, `extendedKeyUsage clientAuth`).
    pub fn issue_v3(&self, name: &str, subj: &str, serial: u32) -> Result<Issued> {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            "basicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\n",
        )?;
        self.sign_request(name, subj, serial, Some(&ext))
    }

    /// `openssl x509 -req` over a new request for `subj`: version 1 without `extfile`,
    /// version 3 with its extensions.
    fn sign_request(
        &self,
        name: &str,
        subj: &str,
        serial: u32,
        extfile: Option<&Path>,
    ) -> Result<Issued> {
        let (issued, csr) = self.request(name, subj)?;
        let (csr, ca, key) = (
            csr.to_string_lossy(),
            self.ca.cert.to_string_lossy(),
            self.ca.key.to_string_lossy(),
        );
        let (serial, out) = (serial.to_string(), issued.cert.to_string_lossy());
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &key,
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-sha256",
        ];
        let ext = extfile.map(|p| p.to_string_lossy());
        if let Some(ext) = &ext {
            args.extend(["-extfile", ext]);
        }
        args.extend(["-out", &out]);
        openssl(&self.dir, &args)?;
        Ok(issued)
    }

    /// A version 1 client certificate `CN=<cn>` valid from `start` to `end`
    /// (`YYYYMMDDHHMMSSZ`), signed with `openssl ca` and recorded in its database (so it
    /// can be revoked).
    pub fn issue_v1_dated(&self, name: &str, cn: &str, start: &str, end: &str) -> Result<Issued> {
        let (issued, csr) = self.request(name, &format!("/CN={cn}"))?;
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &self
                    .dir
                    .join(format!("{}.cnf", self.name))
                    .to_string_lossy(),
                "-startdate",
                start,
                "-enddate",
                end,
                "-in",
                &csr.to_string_lossy(),
                "-out",
                &issued.cert.to_string_lossy(),
            ],
        )?;
        Ok(issued)
    }

    /// A version 3 intermediate CA `CN=<cn>` (basicConstraints CA:TRUE, keyCertSign)
    /// signed by this CA, with its own database.
    pub fn intermediate(&self, name: &str, cn: &str) -> Result<OpensslCa> {
        self.intermediate_with_extensions(name, cn, "")
    }

    /// [`Self::intermediate`] with the extension lines `ext` added, e.g.
    /// `crlDistributionPoints = URI:http://crl.example/root.crl`.
    pub fn intermediate_with_extensions(
        &self,
        name: &str,
        cn: &str,
        ext_lines: &str,
    ) -> Result<OpensslCa> {
        let (issued, csr) = self.request(name, &format!("/CN={cn}"))?;
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n{ext_lines}\n"
            ),
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr.to_string_lossy(),
                "-CA",
                &self.ca.cert.to_string_lossy(),
                "-CAkey",
                &self.ca.key.to_string_lossy(),
                "-set_serial",
                "77",
                "-days",
                "30",
                "-sha256",
                "-extfile",
                &ext.to_string_lossy(),
                "-out",
                &issued.cert.to_string_lossy(),
            ],
        )?;
        Self::with_database(&self.dir, name, issued)
    }

    /// Revoke a certificate this CA issued with [`Self::issue_v1_dated`] or
    /// [`Self::issue_v3_with_extensions`].
    pub fn revoke(&self, cert: &Issued) -> Result<()> {
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-config",
                &self
                    .dir
                    .join(format!("{}.cnf", self.name))
                    .to_string_lossy(),
                "-revoke",
                &cert.cert.to_string_lossy(),
            ],
        )?;
        Ok(())
    }

    /// Record a certificate of this CA as valid (`openssl ca -valid`), e.g. one made
    /// elsewhere, so an OCSP responder on the database answers good for it.
    pub fn record_valid(&self, cert: &Path) -> Result<()> {
        self.database(&["-valid", &cert.to_string_lossy()])
    }

    /// Revoke a certificate of this CA by its file (`openssl ca -revoke`, with
    /// `-crl_reason reason`), whether or not the database knew it.
    pub fn revoke_file(&self, cert: &Path, reason: &str) -> Result<()> {
        let cert = cert.to_string_lossy();
        self.database(&["-revoke", &cert, "-crl_reason", reason])
    }

    /// `openssl ca -batch -config <this CA's> args`: a change to the database.
    fn database(&self, args: &[&str]) -> Result<()> {
        let config = self.config_path();
        let mut all = vec!["ca", "-batch", "-config", &config];
        all.extend_from_slice(args);
        openssl(&self.dir, &all)?;
        Ok(())
    }

    /// The current CRL (PEM), valid for 7 days.
    pub fn crl_pem(&self) -> Result<String> {
        let out = self.dir.join(format!("{}.crl", self.name));
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-gencrl",
                "-config",
                &self
                    .dir
                    .join(format!("{}.cnf", self.name))
                    .to_string_lossy(),
                "-out",
                &out.to_string_lossy(),
            ],
        )?;
        Ok(std::fs::read_to_string(out)?)
    }

    fn config_path(&self) -> String {
        self.dir
            .join(format!("{}.cnf", self.name))
            .to_string_lossy()
            .into_owned()
    }

    /// A version 3 client certificate `CN=<cn>` signed with `openssl ca` (recorded in the
    /// database, so it can be revoked), with clientAuth and the extension lines `ext`
    /// added, e.g. `crlDistributionPoints = URI:http://crl.example/p1.crl`.
    pub fn issue_v3_with_extensions(&self, name: &str, cn: &str, ext: &str) -> Result<Issued> {
        let (issued, csr) = self.request(name, &format!("/CN={cn}"))?;
        let extfile = self.dir.join(format!("{name}.v3.ext"));
        std::fs::write(
            &extfile,
            format!(
                "[v3]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n\
                 extendedKeyUsage = clientAuth\nsubjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n{ext}\n"
            ),
        )?;
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &self.config_path(),
                "-extfile",
                &extfile.to_string_lossy(),
                "-extensions",
                "v3",
                "-days",
                "2",
                "-in",
                &csr.to_string_lossy(),
                "-out",
                &issued.cert.to_string_lossy(),
            ],
        )?;
        Ok(issued)
    }

    /// A CRL (PEM) made with `openssl ca -gencrl`, with the CRL extension lines
    /// `crl_ext` (e.g. `issuingDistributionPoint = critical, @idp` plus an `[idp]`
    /// section after them) besides the Authority Key Identifier. `with_revocations`:
    /// list what this CA revoked (else an empty CRL from an empty database, such as an
    /// ARL of a CA that revoked no CA). `dates`: lastUpdate and nextUpdate
    /// (`YYYYMMDDHHMMSSZ`), default now and in 7 days. Every CRL takes the next number.
    pub fn gencrl(
        &self,
        tag: &str,
        crl_ext: &str,
        with_revocations: bool,
        dates: Option<(&str, &str)>,
    ) -> Result<String> {
        let d = self.dir.display();
        let database = if with_revocations {
            format!("{d}/{}.index", self.name)
        } else {
            let empty = format!("{d}/{}-{tag}.empty-index", self.name);
            std::fs::write(&empty, "")?;
            empty
        };
        let config = self.dir.join(format!("{}-{tag}.crl.cnf", self.name));
        std::fs::write(
            &config,
            format!(
                "[ca]\ndefault_ca = this\n\n[this]\ndatabase = {database}\n\
                 crlnumber = {d}/{name}.crlnumber\ncertificate = {d}/{name}.crt\n\
                 private_key = {d}/{name}.key\ndefault_md = sha256\ndefault_crl_days = 7\n\
                 crl_extensions = crl_ext\n\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n{crl_ext}\n",
                name = self.name
            ),
        )?;
        let out = self.dir.join(format!("{}-{tag}.crl.pem", self.name));
        let mut args = vec![
            "ca".to_owned(),
            "-batch".into(),
            "-gencrl".into(),
            "-config".into(),
            config.to_string_lossy().into_owned(),
            "-out".into(),
            out.to_string_lossy().into_owned(),
        ];
        if let Some((last, next)) = dates {
            args.extend([
                "-crl_lastupdate".into(),
                last.to_owned(),
                "-crl_nextupdate".into(),
                next.to_owned(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&self.dir, &args)?;
        Ok(std::fs::read_to_string(out)?)
    }
}
