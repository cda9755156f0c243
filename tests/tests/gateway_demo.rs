//! The README's "run it" command: `postern-gateway` with no configuration runs the embedded
//! demo on 127.0.0.1:2525 (STARTTLS) and 2465 (implicit TLS; here on free ports, which
//! `--demo-port`/`--demo-smtps-port` choose) and prints the `swaks` commands to try it.
//! This runs the real binary and every printed command as a user would paste it, with the
//! real swaks.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_testkit::ports::free_port;
use postern_testkit::workspace::workspace_bin;
use postern_tests::clients::{swaks_auth_plain, swaks_tls};

/// Kills the demo when the test ends, however it ends.
struct Demo {
    child: Child,
    out: PathBuf,
    dir: tempfile::TempDir,
    ports: (u16, u16),
}

impl Demo {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("demo.out");
        let ports = (free_port(), free_port());
        let child = Command::new(workspace_bin("postern-gateway").unwrap())
            .args(["--demo-port", &ports.0.to_string()])
            .args(["--demo-smtps-port", &ports.1.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.path().join("demo.err")).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            out,
            dir,
            ports,
        }
    }

    fn printed(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `swaks` commands of the instructions, continuation lines joined.
fn swaks_commands(printed: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in printed.lines() {
        let line = line.trim();
        if let Some(mut c) = current.take() {
            c.push(' ');
            c.push_str(line.trim_end_matches('\\'));
            if line.ends_with('\\') {
                current = Some(c);
            } else {
                commands.push(c);
            }
        } else if line.starts_with("swaks ") {
            if line.ends_with('\\') {
                current = Some(line.trim_end_matches('\\').to_owned());
            } else {
                commands.push(line.to_owned());
            }
        }
    }
    commands
}

#[test]
fn the_embedded_demo_relays_what_its_instructions_send() {
    let demo = Demo::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(demo.printed().contains("Implicit TLS")
        && TcpStream::connect(("127.0.0.1", demo.ports.0)).is_ok()
        && TcpStream::connect(("127.0.0.1", demo.ports.1)).is_ok())
    {
        assert!(
            Instant::now() < deadline,
            "the demo did not start:\n{}",
            demo.printed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let printed = demo.printed();
    let commands = swaks_commands(&printed);
    assert_eq!(commands.len(), 4, "{printed}");
    assert!(
        commands
            .iter()
            .all(|c| c.contains(&format!("127.0.0.1:{}", demo.ports.0))
                || c.contains(&format!("127.0.0.1:{}", demo.ports.1))),
        "{printed}"
    );
    let mut relayed = 0;
    for command in &commands {
        let out = Command::new("bash")
            .args(["-c", &format!("{command} --timeout 15")])
            .output()
            .expect("swaks (tests/support/install-deps.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if command.contains("carol") {
            assert!(text.contains("525 5.7.13"), "{command}\n{text}");
        } else {
            assert!(text.contains("250 2.0.0 Ok: queued"), "{command}\n{text}");
            relayed += 1;
        }
    }
    // The demo sink wrote each relayed message to the directory the instructions name.
    let dir = printed
        .split_whitespace()
        .map(|w| w.trim_end_matches([';', ',']))
        .find(|w| w.ends_with("/sink/"))
        .expect("the sink directory is printed");
    let files = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(files, relayed, "{dir}");

    // Procedure C does not set verifyClientCertificate: a certificate from another CA is
    // ignored (it authenticates nobody) and AUTH still works in the same session.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "DOE.JOHN.1234567890");
    let foreign = params.self_signed(&key).unwrap();
    let (crt, pem_key) = (
        demo.dir.path().join("foreign.crt"),
        demo.dir.path().join("foreign.key"),
    );
    std::fs::write(&crt, foreign.pem()).unwrap();
    std::fs::write(&pem_key, key.serialize_pem()).unwrap();
    let ca = std::path::Path::new(dir).parent().unwrap().join("ca.crt");
    let foreign_cert = [
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        pem_key.to_str().unwrap(),
    ];
    let run = swaks_tls(demo.ports.0, &ca, &foreign_cert).unwrap();
    assert!(run.has("530 5.7.0"), "{}", run.output);
    let run = swaks_auth_plain(demo.ports.0, &ca, "frank", "frankpw", &foreign_cert).unwrap();
    assert!(
        run.has("235 2.7.0") && run.has("250 2.0.0 Ok: queued"),
        "{}",
        run.output
    );
}
