//! A network between cluster nodes that a test can cut: one TCP proxy in front of each node.
//!
//! Node `i` listens on `127.0.0.(10 + i)` and connects to other members from that address (a
//! node dials from its listen address), while the members know each other by their proxies'
//! addresses on 127.0.0.1. A proxy learns from a connection's source address which node opened
//! it, so it can drop the traffic of one link in both directions.
//!
//! Cutting a link black-holes it, as a pulled cable does: connections stay open but carry
//! nothing (bytes are read and dropped), and new ones are accepted and treated the same. Healing
//! closes the black-holed connections, so their ends see a reset and reconnect.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The loopback address node `id` listens on and dials from.
pub fn node_ip(id: u64) -> Ipv4Addr {
    let octet = u8::try_from(10 + id).expect("node ids up to 245");
    Ipv4Addr::new(127, 0, 0, octet)
}

/// Which node an address belongs to, if it is one of [`node_ip`]'s.
fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 10 => {
            Some(u64::from(v4.octets()[3]) - 10)
        }
        _ => None,
    }
}

/// One proxied connection: from node `from` (if known) to node `to`.
struct Link {
    from: Option<u64>,
    to: u64,
    /// Set when the link is cut: the connection carries nothing more.
    dead: Arc<AtomicBool>,
    client: TcpStream,
    server: TcpStream,
}

#[derive(Default)]
struct Shared {
    /// Directed links (from, to) that carry nothing.
    cut: Mutex<HashSet<(u64, u64)>>,
    links: Mutex<Vec<Link>>,
}

/// The proxies of a test's cluster.
#[derive(Clone, Default)]
pub struct Network {
    shared: Arc<Shared>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Network {
    /// A network with no proxy yet.
    pub fn new() -> Network {
        Network::default()
    }

    /// Starts the proxy for node `to`, which listens on `target`; returns the proxy's address
    /// (127.0.0.1:PORT), the one the members know node `to` by.
    pub fn proxy(&self, to: u64, target: SocketAddr) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let address = listener.local_addr().expect("proxy address").to_string();
        let network = self.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                network.accept(client, to, target);
            }
        });
        address
    }

    fn accept(&self, client: TcpStream, to: u64, target: SocketAddr) {
        let Ok(server) = TcpStream::connect(target) else {
            // The node is down: the client sees the connection close.
            return;
        };
        let from = client.peer_addr().ok().and_then(|a| node_of(a.ip()));
        let dead = Arc::new(AtomicBool::new(self.is_cut(from, to)));
        let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let (Ok(client_write), Ok(server_write)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        lock(&self.shared.links).push(Link {
            from,
            to,
            dead: dead.clone(),
            client,
            server,
        });
        let back = dead.clone();
        std::thread::spawn(move || pump(client_read, server_write, &dead));
        std::thread::spawn(move || pump(server_read, client_write, &back));
    }

    fn is_cut(&self, from: Option<u64>, to: u64) -> bool {
        let cut = lock(&self.shared.cut);
        from.is_some_and(|from| cut.contains(&(from, to)))
    }

    /// Cuts node `node` off from every other node, both ways, until [`Network::heal`]. Its
    /// clients outside the cluster (the test's `wirectl`) still reach it directly.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        {
            let mut cut = lock(&self.shared.cut);
            for other in others.iter().filter(|o| **o != node) {
                cut.insert((node, *other));
                cut.insert((*other, node));
            }
        }
        for link in lock(&self.shared.links).iter() {
            if self.is_cut(link.from, link.to) {
                link.dead.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Restores every link; connections that were black-holed are closed (reset), so their
    /// ends reconnect.
    pub fn heal(&self) {
        lock(&self.shared.cut).clear();
        lock(&self.shared.links).retain(|link| {
            if link.dead.load(Ordering::SeqCst) {
                let _ = link.client.shutdown(Shutdown::Both);
                let _ = link.server.shutdown(Shutdown::Both);
                return false;
            }
            true
        });
    }
}

/// Copies `from` to `to` until either closes; drops what it reads while `dead` is set (a close
/// is not passed on either: nothing crosses a cut link).
fn pump(mut from: TcpStream, mut to: TcpStream, dead: &AtomicBool) {
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    if !dead.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
}
