//! `bind_many` and `bind_reuseport` sockets handed over: the new process accepts what was
//! queued on the old one, and its `BindMany` starts from the sockets it took, binding nothing.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::time::Duration;

use futures_util::StreamExt as _;
use staunch::handover::{take_over, Handover};
use staunch::listen::{bind_many, bind_many_from, bind_reuseport, AddrState};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::library::socket_path;

const IO: Duration = Duration::from_secs(10);

/// Offer `listeners` named `l0`, `l1`, ... over a control socket named after `test`, and take
/// them over in this process; the listeners the new side got, in order.
async fn hand_over(test: &str, listeners: &[std::net::TcpListener]) -> Vec<std::net::TcpListener> {
    let handover = Handover::bind(socket_path(test)).unwrap();
    let names: Vec<String> = (0..listeners.len()).map(|i| format!("l{i}")).collect();
    let sockets: Vec<(&str, _)> = names
        .iter()
        .map(String::as_str)
        .zip(listeners.iter().map(|l| l.as_fd()))
        .collect();
    let ticket = handover.ticket();
    let successor = async {
        let (mut taken, ready) = take_over(&ticket).await.unwrap();
        let taken: Vec<_> = names.iter().map(|n| taken.take_tcp(n).unwrap()).collect();
        ready.ready().await.unwrap();
        taken
    };
    let (offered, taken) = timeout(IO, async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .unwrap();
    offered.unwrap();
    taken
}

/// A client that is answered `hi` by whoever accepts it.
async fn answered(mut client: TcpStream) {
    let mut buf = [0; 2];
    timeout(IO, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hi");
}

#[tokio::test]
async fn a_bind_many_set_moves_to_the_new_process_with_its_queues() {
    let wanted: [SocketAddr; 2] = [
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.2:0".parse().unwrap(),
    ];
    let (old, old_handle) = bind_many(wanted);
    let bound = old_handle.bound();
    assert_eq!(bound.len(), 2, "{:?}", old_handle.status());
    // Queued on the old process's sockets, never accepted there.
    let mut clients = Vec::new();
    for addr in &bound {
        for _ in 0..4 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
    }

    let offered = old_handle.listeners().unwrap();
    let addrs: Vec<SocketAddr> = offered.iter().map(|(a, _)| *a).collect();
    assert_eq!(addrs, wanted, "the addresses of the set, as given");
    let offered: Vec<_> = offered.into_iter().map(|(_, l)| l).collect();
    let taken = hand_over("bind-many", &offered).await;
    // The old process stops accepting: its stream, handle and duplicates go.
    drop((old, old_handle, offered));

    let (mut new, new_handle) = bind_many_from(taken).unwrap();
    let mut local = new_handle.bound();
    local.sort();
    assert_eq!(local, bound, "the same sockets, no new bind");
    // Accepted in the stream's order (round robin over the addresses), not the clients'.
    for _ in 0..clients.len() {
        let mut served = timeout(IO, new.next()).await.unwrap().unwrap().unwrap();
        served.write_all(b"hi").await.unwrap();
    }
    for client in clients {
        answered(client).await;
    }

    // The set goes on from there: keep one address, drop the other.
    new_handle.set([bound[0]]);
    assert!(matches!(
        new_handle.status()[&bound[0]],
        AddrState::Bound { .. }
    ));
    let err = TcpStream::connect(bound[1]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let client = TcpStream::connect(bound[0]).await.unwrap();
    let mut served = timeout(IO, new.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(served.peer_addr().unwrap(), client.local_addr().unwrap());
    served.write_all(b"hi").await.unwrap();
    answered(client).await;
}

#[test]
fn bind_many_from_refuses_two_sockets_on_one_address() {
    let group = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let err = bind_many_from(group).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn a_reuseport_group_moves_whole_and_loses_nothing_queued() {
    const CLIENTS: usize = 32;
    let group = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let addr = group[0].local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    let taken = hand_over("bind-reuseport", &group).await;
    drop(group); // the old process closes its descriptors; the sockets live on in the new one

    let taken: Vec<tokio::net::TcpListener> = taken
        .into_iter()
        .map(|l| tokio::net::TcpListener::from_std(l).unwrap())
        .collect();
    let mut accepted = 0;
    while accepted < CLIENTS {
        let (mut served, _) = timeout(IO, async {
            tokio::select! {
                a = taken[0].accept() => a,
                a = taken[1].accept() => a,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{accepted} of {CLIENTS} accepted"))
        .unwrap();
        served.write_all(b"hi").await.unwrap();
        accepted += 1;
    }
    for client in clients {
        answered(client).await;
    }
}
