//! Real SMTP clients: swaks, `openssl s_client -starttls smtp`, Python smtplib, and a
//! raw socket client for malformed input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// What a client program did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// stdout + stderr.
    pub output: String,
}

impl Run {
    /// Whether the output contains `text`.
    pub fn has(&self, text: &str) -> bool {
        self.output.contains(text)
    }

    /// Whether the server answered with reply `code` (a swaks `<-`/`<~` line starting with
    /// it), not merely whether the digits appear somewhere, e.g. in a port number.
    pub fn replied(&self, code: &str) -> bool {
        self.output.lines().any(|l| {
            l.starts_with('<')
                && l.trim_start_matches(['<', '-', '~', '*', ' '])
                    .starts_with(code)
        })
    }
}

fn run(cmd: &mut Command, input: Option<&[u8]>, what: &str) -> Result<Run> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("{what} is not installed (tests/support/install-deps.sh installs it)")
        })?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped");
        let data = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let out = child.wait_with_output()?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        output,
    })
}

/// Run swaks against 127.0.0.1:`port` with `args`.
pub fn swaks(port: u16, args: &[&str]) -> Result<Run> {
    run(
        Command::new("swaks")
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--timeout", "15", "--helo", "client.test"])
            .args(args),
        None,
        "swaks",
    )
}

/// swaks with STARTTLS (verifying the server against `ca_path`), sending one message
/// from sender@example.org to rcpt@example.net; `extra` arguments follow.
pub fn swaks_tls(port: u16, ca_path: &std::path::Path, extra: &[&str]) -> Result<Run> {
    let ca = ca_path.to_str().context("a UTF-8 CA path")?;
    let mut args = vec![
        "--tls",
        "--tls-ca-path",
        ca,
        "--from",
        "sender@example.org",
        "--to",
        "rcpt@example.net",
    ];
    args.extend_from_slice(extra);
    swaks(port, &args)
}

/// swaks arguments for AUTH PLAIN as `user`/`password`.
pub fn auth_plain_args<'a>(user: &'a str, password: &'a str) -> [&'a str; 6] {
    [
        "--auth",
        "PLAIN",
        "--auth-user",
        user,
        "--auth-password",
        password,
    ]
}

/// [`swaks_tls`] with AUTH PLAIN as `user`/`password`.
pub fn swaks_auth_plain(
    port: u16,
    ca_path: &std::path::Path,
    user: &str,
    password: &str,
    extra: &[&str],
) -> Result<Run> {
    let auth = auth_plain_args(user, password);
    swaks_tls(port, ca_path, &[&auth[..], extra].concat())
}

/// `openssl s_client -starttls smtp` (or implicit TLS when `starttls` is false), sending
/// `input` (CRLF line endings) after the handshake.
pub fn openssl(port: u16, starttls: bool, args: &[&str], input: &str) -> Result<Run> {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client");
    if starttls {
        cmd.args(["-starttls", "smtp"]);
    }
    cmd.arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-ign_eof")
        .args(args);
    run(&mut cmd, Some(input.as_bytes()), "openssl")
}

/// [`openssl`], killed after `limit` (coreutils `timeout`), for clients that a broken
/// server could keep waiting for ever; exit code 124 when it was killed.
pub fn openssl_within(
    limit: Duration,
    port: u16,
    starttls: bool,
    args: &[&str],
    input: &str,
) -> Result<Run> {
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{}s", limit.as_secs().max(1)))
        .args(["openssl", "s_client"]);
    if starttls {
        cmd.args(["-starttls", "smtp"]);
    }
    cmd.arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-ign_eof")
        .args(args);
    run(&mut cmd, Some(input.as_bytes()), "openssl")
}

/// Run a Python 3 script (smtplib tests); `PORT` in the script is replaced.
pub fn python(script: &str) -> Result<Run> {
    run(
        Command::new("python3").arg("-c").arg(script),
        None,
        "python3",
    )
}

/// One message through `host`:`port` with Python's smtplib from local address `source`
/// (HELO `client.test`), after AUTH as `login` when given; `headers` (lines joined by
/// CRLF, as Python source) head the message. Prints `SENT`, or `REFUSED` and the error.
pub fn smtplib_send(
    host: &str,
    port: u16,
    source: &str,
    login: Option<(&str, &str)>,
    headers: &str,
) -> Result<Run> {
    let login = match login {
        Some((u, p)) => format!("s.login({u:?}, {p:?})"),
        None => String::new(),
    };
    python(&format!(
        r#"
import smtplib
try:
    s = smtplib.SMTP("{host}", {port}, local_hostname="client.test", source_address=("{source}", 0), timeout=15)
    s.ehlo()
    {login}
    s.sendmail("a@example.org", ["b@example.net"], "{headers}\r\n\r\nhello\r\n")
    s.quit()
    print("SENT")
except smtplib.SMTPException as e:
    print("REFUSED", e)
"#
    ))
}

/// A raw SMTP connection for malformed input.
#[derive(Debug)]
pub struct Raw {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Raw {
    /// Connect and read nothing yet.
    pub fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            stream,
        })
    }

    /// The client's port (a decision line's `client_port`).
    pub fn local_port(&self) -> Result<u16> {
        Ok(self.stream.local_addr()?.port())
    }

    /// Send bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Read one reply (all its lines); `Err` on EOF.
    pub fn reply(&mut self) -> Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                if all.is_empty() {
                    bail!("connection closed");
                }
                return Ok(all);
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    /// Send a command line (CRLF added) and read the reply.
    pub fn cmd(&mut self, line: &str) -> Result<String> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    /// Whether the server closed the connection (reads until EOF or timeout).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::Run;

    #[test]
    fn replied_reads_reply_lines_only() {
        let r = Run {
            code: 0,
            output: "=== Trying 127.0.0.1:42355...\n<~  235 2.7.0 Authentication successful\n"
                .into(),
        };
        assert!(r.replied("235"));
        let r = Run {
            code: 0,
            output: "=== Trying 127.0.0.1:42355...\n<** 538 5.7.11 Encryption required\n".into(),
        };
        assert!(!r.replied("235") && r.replied("538"));
    }
}
