//! The library's two sides in one process: sockets move with their queues, the checks name
//! what is wrong, and a new process that fails before it is ready leaves the old one serving.

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use staunch::handover::{take_over, Handover, HandoverError, Kind, Listener};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::timeout;

const IO: Duration = Duration::from_secs(10);

/// A fresh socket path in the temp directory, removed first if a previous run left it.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "staunch-handover-test-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test]
async fn queued_connections_move_with_the_sockets() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let unix_path = socket_path("served");
    let unix = UnixListener::bind(&unix_path).unwrap();

    // Clients connect before the handover; the old process accepts none of them.
    let mut tcp_clients = Vec::new();
    for _ in 0..16 {
        tcp_clients.push(TcpStream::connect(tcp_addr).await.unwrap());
    }
    let mut unix_clients = Vec::new();
    for _ in 0..4 {
        unix_clients.push(UnixStream::connect(&unix_path).await.unwrap());
    }

    let handover = Handover::bind(socket_path("control")).unwrap();
    let path = handover.path().to_owned();
    let ticket = handover.ticket();
    let old = tokio::spawn(async move {
        let offered = handover
            .offer(&[("web", tcp.as_fd()), ("admin", unix.as_fd())])
            .await;
        (offered, tcp, unix) // the old process stops accepting only now: it drops them
    });
    let (mut listeners, ready) = timeout(IO, take_over(&ticket)).await.unwrap().unwrap();
    assert_eq!(listeners.names().collect::<Vec<_>>(), ["web", "admin"]);
    let new_tcp = TcpListener::from_std(listeners.take_tcp("web").unwrap()).unwrap();
    let new_unix = UnixListener::from_std(listeners.take_unix("admin").unwrap()).unwrap();
    assert!(listeners.is_empty());
    ready.ready().await.unwrap();
    let (offered, old_tcp, old_unix) = timeout(IO, old).await.unwrap().unwrap();
    offered.unwrap();
    drop((old_tcp, old_unix));
    assert!(
        !path.exists(),
        "the control socket is removed with the Handover"
    );

    for mut client in tcp_clients {
        let (mut served, _) = timeout(IO, new_tcp.accept()).await.unwrap().unwrap();
        served.write_all(b"hi").await.unwrap();
        let mut buf = [0; 2];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }
    for mut client in unix_clients {
        let (mut served, _) = timeout(IO, new_unix.accept()).await.unwrap().unwrap();
        served.write_all(b"hi").await.unwrap();
        let mut buf = [0; 2];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
    }
    let _ = std::fs::remove_file(unix_path);
}

#[tokio::test]
async fn a_successor_that_fails_before_ready_leaves_the_old_one_serving() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let handover = Handover::bind(socket_path("fails")).unwrap();
    let sockets = [("web", tcp.as_fd())];

    // It takes the sockets and gives up (drops `Ready`, as a crash would).
    let ticket = handover.ticket();
    let successor = async {
        let (listeners, ready) = take_over(&ticket).await.unwrap();
        drop((listeners, ready));
    };
    let (offered, ()) = timeout(IO, async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .unwrap();
    assert!(
        matches!(offered, Err(HandoverError::SuccessorGone)),
        "{offered:?}"
    );

    // It presents its ticket and dies without reading.
    let ticket = handover.ticket();
    let token = ticket
        .to_str()
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0
        .to_owned();
    let successor = async {
        let mut control = UnixStream::connect(handover.path()).await.unwrap();
        control
            .write_all(format!("take {token}\n").as_bytes())
            .await
            .unwrap();
        drop(control);
    };
    let (offered, ()) = timeout(IO, async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .unwrap();
    assert!(
        matches!(offered, Err(HandoverError::SuccessorGone)),
        "{offered:?}"
    );

    // The old listener still accepts.
    let mut client = TcpStream::connect(addr).await.unwrap();
    let (mut served, _) = timeout(IO, tcp.accept()).await.unwrap().unwrap();
    served.write_all(b"still here").await.unwrap();
    let mut buf = [0; 10];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");

    // And the offer can be made again.
    let ticket = handover.ticket();
    let successor = async {
        let (_listeners, ready) = take_over(&ticket).await.unwrap();
        ready.ready().await.unwrap();
    };
    let (offered, ()) = timeout(IO, async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .unwrap();
    offered.unwrap();
}

fn from_fd(fd: impl Into<OwnedFd>) -> Result<Listener, HandoverError> {
    Listener::from_fd(fd.into())
}

#[tokio::test]
async fn checks_name_what_is_wrong() {
    use socket2::{Domain, SockAddr, Socket, Type};

    // Not a socket.
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = from_fd(file.try_clone().unwrap()).unwrap_err();
    assert!(matches!(err, HandoverError::NotASocket { .. }), "{err:?}");
    let handover = Handover::bind(socket_path("checks")).unwrap();
    let err = handover.offer(&[("log", file.as_fd())]).await.unwrap_err();
    assert_eq!(err.to_string(), "`log` is not a socket");

    // A TCP socket that is bound but not listening, and a connected one.
    let bound = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    bound
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let err = handover.offer(&[("web", bound.as_fd())]).await.unwrap_err();
    assert_eq!(err.to_string(), "socket `web` is not listening");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let err = from_fd(connected).unwrap_err();
    assert!(matches!(err, HandoverError::NotListening { .. }), "{err:?}");

    // Wrong type: UDP, and a Unix seqpacket listener.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = handover.offer(&[("dns", udp.as_fd())]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "socket `dns` is an IPv4 datagram socket, not a TCP or Unix stream listener"
    );
    let path = socket_path("seqpacket");
    let seqpacket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    seqpacket.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    seqpacket.listen(8).unwrap();
    let err = from_fd(seqpacket).unwrap_err();
    assert!(
        matches!(&err, HandoverError::WrongKind { found, expected: None, .. } if found == "a Unix seqpacket socket"),
        "{err:?}"
    );
    let _ = std::fs::remove_file(path);

    // Names.
    for name in ["", "a:b", "a b", "é"] {
        let err = handover
            .offer(&[(name, listener.as_fd())])
            .await
            .unwrap_err();
        assert!(
            matches!(err, HandoverError::InvalidName { .. }),
            "{name:?}: {err:?}"
        );
    }
    let twice = [("web", listener.as_fd()), ("web", listener.as_fd())];
    let err = handover.offer(&twice).await.unwrap_err();
    assert!(matches!(err, HandoverError::InvalidName { .. }), "{err:?}");

    // A listener of the right sort passes, and is what it says.
    let ok = from_fd(listener.try_clone().unwrap()).unwrap();
    assert_eq!(ok.kind(), Kind::Tcp);
}

#[tokio::test]
async fn take_checks_the_name_and_the_kind() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handover = Handover::bind(socket_path("take")).unwrap();
    let ticket = handover.ticket();
    let successor = async {
        let (mut listeners, ready) = take_over(&ticket).await.unwrap();
        let err = listeners.take_unix("web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "socket `web` is a TCP listener, not a Unix stream listener"
        );
        let err = listeners.take_tcp("api").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"no listener `api` was handed over (left: ["web"])"#
        );
        listeners.take_tcp("web").unwrap(); // still there after the wrong-kind attempt
        ready.ready().await.unwrap();
    };
    let sockets = [("web", tcp.as_fd())];
    let (offered, ()) = timeout(IO, async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .unwrap();
    offered.unwrap();
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Handover>();
    send_sync::<staunch::handover::Listeners>();
    send_sync::<Listener>();
    send_sync::<staunch::handover::Ready>();
    send_sync::<HandoverError>();
    send_sync::<Kind>();
    send_sync::<staunch::handover::SuccessorCommand>();
    send_sync::<staunch::handover::SuccessorReady>();
}
