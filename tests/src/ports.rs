//! Free loopback ports for servers the tests start.

use std::net::TcpListener;

/// `n` distinct free ports on 127.0.0.1 (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// One free port on 127.0.0.1.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}
