//! Why sockets are handed over rather than closed: closing one socket of an `SO_REUSEPORT`
//! group resets the connections queued on it, unless `net.ipv4.tcp_migrate_req` is on.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use staunch::handover::tcp_migrate_req;

const CLIENTS: usize = 64;

fn member(addr: SocketAddr) -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(128).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.into()
}

/// Two listeners in one group, `CLIENTS` connected and none accepted; `restart` closes or
/// keeps the first listener and returns the listeners left. Returns (accepted, lost).
fn queued_then(
    restart: impl FnOnce(TcpListener, TcpListener) -> Vec<TcpListener>,
) -> (usize, usize) {
    let first = member("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().unwrap();
    let second = member(addr);
    // Each sends its request at once, as a client does.
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut client = TcpStream::connect(addr).unwrap();
            client.write_all(b"GET").unwrap();
            client
        })
        .collect();
    for client in &clients {
        client.set_nonblocking(true).unwrap();
    }
    let left = restart(first, second);

    // Each client is either accepted by a listener left or lost; wait until all are one.
    let (mut accepted, mut lost) = (Vec::new(), vec![false; CLIENTS]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.len() + lost.iter().filter(|r| **r).count() < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "accepted {}, lost {lost:?}",
            accepted.len()
        );
        for listener in &left {
            // Kept open: closing it would reset its client.
            while let Ok((served, _)) = listener.accept() {
                accepted.push(served);
            }
        }
        for (client, lost) in clients.iter().zip(&mut lost) {
            match (&*client).read(&mut [0; 1]) {
                // Reset, or closed (FIN) when the request had not arrived yet.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => *lost = true,
                Ok(0) => *lost = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                other => panic!("{other:?}"),
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    (accepted.len(), lost.iter().filter(|r| **r).count())
}

#[test]
fn closing_a_reuseport_socket_resets_its_queue_handing_it_over_does_not() {
    let migrate = tcp_migrate_req();
    let (accepted, lost) = queued_then(|first, second| {
        drop(first);
        vec![second]
    });
    eprintln!(
        "close one of 2 reuseport listeners with {CLIENTS} queued (tcp_migrate_req={migrate:?}): \
         {accepted} accepted, {lost} lost"
    );
    if migrate == Some(true) {
        assert_eq!((accepted, lost), (CLIENTS, 0));
    } else {
        // The group hashes clients over both listeners; all 64 on one has odds of 2^-63.
        assert!(lost > 0, "{accepted} accepted, {lost} lost");
    }

    // Handed over: the new process holds the same socket, so nothing is closed.
    let (accepted, lost) = queued_then(|first, second| {
        let successor = first.try_clone().unwrap(); // as SCM_RIGHTS gives it
        drop(first);
        vec![successor, second]
    });
    eprintln!("hand it over instead: {accepted} accepted, {lost} lost");
    assert_eq!((accepted, lost), (CLIENTS, 0));
}
