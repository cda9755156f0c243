//! A TCP proxy on loopback in front of a real next hop that cuts its connections on
//! command: between messages (optionally after a last reply of its own, the way an MTA
//! closes an idle connection with `421`), or right after forwarding the end of a
//! message's data, before the next hop's reply can get back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
/// One proxied connection: the side facing the client (the gateway) and the next hop.
struct Pair {
    client: TcpStream,
    server: TcpStream,
    /// The end of data went through armed: nothing more reaches the client.
    holding: AtomicBool,
}

impl Pair {
    fn cut(&self, farewell: Option<&str>) {
        if let Some(text) = farewell {
            let _ = (&self.client).write_all(text.as_bytes());
        }
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[derive(Debug)]
/// The proxy (threads; stopped on drop).
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    pairs: Arc<Mutex<Vec<Arc<Pair>>>>,
    accepted: Arc<AtomicUsize>,
    cut_after_dot: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    /// Proxy to `target`. A client is dropped at once when the target is down.
    pub fn start(target: SocketAddr) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let pairs = Arc::new(Mutex::new(Vec::<Arc<Pair>>::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let cut_after_dot = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ps, acc, dot, st) = (
            pairs.clone(),
            accepted.clone(),
            cut_after_dot.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue; // dropping the client: the target is down
                };
                let pair = Arc::new(Pair {
                    client,
                    server,
                    holding: AtomicBool::new(false),
                });
                ps.lock().unwrap().push(pair.clone());
                // Client to next hop: watches for the end of data.
                let (p, d, st2) = (pair.clone(), dot.clone(), st.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    let mut tail: Vec<u8> = Vec::new();
                    while !st2.load(Ordering::Relaxed) {
                        let n = match (&p.client).read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tail.extend_from_slice(&buf[..n]);
                        let ends = tail.windows(5).any(|w| w == b"\r\n.\r\n");
                        if tail.len() > 4 {
                            tail.drain(..tail.len() - 4);
                        }
                        // Hold the replies back before the dot can be answered.
                        let cutting = ends && d.swap(false, Ordering::SeqCst);
                        if cutting {
                            p.holding.store(true, Ordering::SeqCst);
                        }
                        if (&p.server).write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if cutting {
                            // Give the next hop a moment to take the message, then cut
                            // before its reply travels back.
                            std::thread::sleep(Duration::from_millis(200));
                            p.cut(None);
                            break;
                        }
                    }
                    p.cut(None);
                });
                // Next hop to client: nothing passes once the dot went through armed, so
                // the next hop's reply to it is never delivered.
                let (p, st2) = (pair, st.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while !st2.load(Ordering::Relaxed) {
                        let n = match (&p.server).read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if p.holding.load(Ordering::SeqCst) {
                            break; // the reply to the dot: never delivered
                        }
                        if (&p.client).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    p.cut(None);
                });
            }
        });
        Self {
            addr,
            pairs,
            accepted,
            cut_after_dot,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Cut every open connection; with `farewell`, send it to the client first.
    pub fn cut_all(&self, farewell: Option<&str>) {
        for p in self.pairs.lock().unwrap().drain(..) {
            p.cut(farewell);
        }
    }

    /// Cut the connection that next carries the end of a message's data (`CRLF . CRLF`),
    /// after forwarding it and before the next hop's reply gets back.
    pub fn cut_after_next_dot(&self) {
        self.cut_after_dot.store(true, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut_all(None);
    }
}
