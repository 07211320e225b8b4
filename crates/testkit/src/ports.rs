//! Free loopback ports for the services a test starts.

use std::net::{TcpListener, UdpSocket};

/// Lowest port handed out by [`free_port`].
const PORT_FLOOR: u16 = 10_000;
/// Where the kernel's ephemeral range starts when it cannot be read.
const DEFAULT_EPHEMERAL_START: u16 = 32_768;
/// Random candidates tried before giving up.
const PORT_TRIES: usize = 2_000;

/// A port on 127.0.0.1 that is free for both TCP and UDP right now.
///
/// Ports are drawn at random from below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): a port found with `bind(0)` comes from that range, so any
/// outgoing connection or any other `bind(0)` on the machine may take it before the test
/// binds it; below the range only another test drawing the same number could.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports, each free for TCP and UDP at the time of the call (see [`free_port`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    let top = ephemeral_start().max(PORT_FLOOR + 1_000);
    let span = u64::from(top - PORT_FLOOR);
    let mut held: Vec<(u16, TcpListener, UdpSocket)> = Vec::new();
    for _ in 0..PORT_TRIES {
        if held.len() == n {
            break;
        }
        let port = PORT_FLOOR + (random_u64() % span) as u16;
        if held.iter().any(|(p, ..)| *p == port) {
            continue;
        }
        // challtestsrv's DNS listens on UDP and TCP; make sure both are free.
        if let (Ok(tcp), Ok(udp)) = (
            TcpListener::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port)),
        ) {
            held.push((port, tcp, udp));
        }
    }
    assert_eq!(
        held.len(),
        n,
        "could not find {n} ports free for TCP and UDP"
    );
    held.into_iter().map(|(port, ..)| port).collect()
}

fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}
