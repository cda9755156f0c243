//! Free loopback ports for the servers the tests and the benchmark start, and a wait for
//! a port to accept connections.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// `n` distinct ports that were free on 127.0.0.1 a moment ago (bound together, so they
/// differ, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Wait until 127.0.0.1:`port` accepts connections.
pub fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_taken_together_differ() {
        let p = free_ports(5);
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 5, "{p:?}");
        assert!(p.iter().all(|&x| x != 0));
    }

    #[test]
    fn waiting_for_a_closed_port_times_out() {
        let port = free_port();
        assert!(wait_port(port, Duration::from_millis(100)).is_err());
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        wait_port(l.local_addr().unwrap().port(), Duration::from_secs(2)).unwrap();
    }
}
