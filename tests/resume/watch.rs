//! An end whose writer waits on a full replay buffer, while the peer's data waits for its
//! reader, still watches its transport: a reset is noticed by the read side (at once, with a
//! heartbeat too long to help) or, once more data waits than the end reads ahead, by the
//! heartbeat, as is a silent peer; on the server the session then expires. Real loopback
//! sockets, a raw peer that writes frames by hand and never acknowledges.

use std::io;
use std::time::Duration;

use socket2::SockRef;
use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Short, so that the tests are quick; every wait is bounded by [`LIMIT`].
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Longer than [`LIMIT`]: only the read side can notice in time.
const NO_HEARTBEAT: Duration = Duration::from_secs(60);
const EXPIRY: Duration = Duration::from_millis(300);
const LIMIT: Duration = Duration::from_secs(10);
const BUFFER: usize = 100_000;
/// What the raw peer sends: three times the replay buffer, none of it read by the other end
/// while its writer is blocked, far more than it reads ahead.
const FLOOD: usize = 300_000;
/// A little more than the replay buffer: what waits fits in the read-ahead.
const TRICKLE: usize = BUFFER + 10_000;

fn config(heartbeat: Duration) -> Config {
    Config::default()
        .buffer_size(BUFFER)
        .heartbeat(heartbeat)
        .session_expiry(EXPIRY)
}

/// Data frames of 30,000 bytes, `len` payload bytes in all.
fn data_frames(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(30_000);
        out.push(4);
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(0x5a, n));
        left -= n;
    }
    out
}

fn hello_new() -> Vec<u8> {
    let mut frame = vec![1, 0, 0, 0, 29, 1];
    frame.extend_from_slice(&[0; 16]);
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.extend_from_slice(&(BUFFER as u32).to_be_bytes());
    frame
}

fn welcome() -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 28];
    frame.extend_from_slice(&[7; 16]);
    frame.extend_from_slice(&0u64.to_be_bytes());
    frame.extend_from_slice(&(BUFFER as u32).to_be_bytes());
    frame
}

/// Read frames until `len` data payload bytes came (never acknowledging any): the other end's
/// replay buffer is then full, and with more to write its writer waits.
async fn read_data(io: &mut tokio::net::tcp::OwnedReadHalf, len: usize) -> io::Result<()> {
    let mut got = 0;
    while got < len {
        let mut header = [0; 5];
        io.read_exact(&mut header).await?;
        let n = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
        let mut payload = vec![0; n];
        io.read_exact(&mut payload).await?;
        if header[0] == 4 {
            got += n;
        }
    }
    Ok(())
}

/// How the raw peer leaves.
#[derive(Debug, Clone, Copy)]
enum Leave {
    /// A reset (`SO_LINGER` 0).
    Reset,
    /// Nothing more: the socket stays open, silent, as in a partition.
    Silent,
}

/// One case: what the raw peer sends, how it leaves, the other end's heartbeat.
#[derive(Debug, Clone, Copy)]
struct Case {
    sent: usize,
    leave: Leave,
    heartbeat: Duration,
}

/// The module docs' echo server; a raw client floods it without reading, waits until the
/// server's writer is blocked, and leaves. The session must expire.
async fn echo_server_expires_a_stalled_session(case: Case) {
    let Case { sent, leave, .. } = case;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(config(case.heartbeat));
    let server = {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let Accepted::New(session) = acceptor.accept(socket).await.unwrap() else {
                panic!("a new session");
            };
            let (mut reader, mut writer) = tokio::io::split(session);
            tokio::io::copy(&mut reader, &mut writer).await?;
            writer.shutdown().await
        })
    };

    let client = TcpStream::connect(addr).await.unwrap();
    if let Leave::Reset = leave {
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let (mut rx, mut tx) = client.into_split();
    let flooding = tokio::spawn(async move {
        tx.write_all(&hello_new()).await?;
        tx.write_all(&data_frames(sent)).await?;
        io::Result::Ok(tx)
    });
    tokio::time::timeout(LIMIT, async {
        let mut welcome = [0; 33];
        rx.read_exact(&mut welcome).await.unwrap();
        read_data(&mut rx, BUFFER).await.unwrap();
    })
    .await
    .expect("the server echoes a buffer's worth");
    let tx = tokio::time::timeout(LIMIT, flooding)
        .await
        .expect("the kernel takes the flood")
        .unwrap()
        .unwrap();
    let _socket = match leave {
        Leave::Reset => {
            drop((rx, tx));
            None
        }
        Leave::Silent => Some((rx, tx)),
    };

    let ended = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{case:?}: the session is still held: {:?}",
                acceptor.stats()
            )
        })
        .unwrap();
    let error = ended.expect_err("the session ends with an error");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{case:?}: {error}");
    let stats = acceptor.stats();
    assert_eq!((stats.expired, stats.active), (1, 0), "{case:?}: {stats:?}");
}

#[tokio::test]
async fn a_server_blocked_writing_reads_on_and_sees_its_client_reset() {
    echo_server_expires_a_stalled_session(Case {
        sent: TRICKLE,
        leave: Leave::Reset,
        heartbeat: NO_HEARTBEAT,
    })
    .await;
}

#[tokio::test]
async fn a_server_blocked_writing_behind_unread_data_sees_its_client_reset() {
    echo_server_expires_a_stalled_session(Case {
        sent: FLOOD,
        leave: Leave::Reset,
        heartbeat: HEARTBEAT,
    })
    .await;
}

#[tokio::test]
async fn a_server_blocked_writing_behind_unread_data_sees_its_client_go_silent() {
    echo_server_expires_a_stalled_session(Case {
        sent: FLOOD,
        leave: Leave::Silent,
        heartbeat: HEARTBEAT,
    })
    .await;
}

/// A client writes more than its buffer to a raw server that floods it and never acknowledges;
/// the server leaves. The client's blocked write must fail (it has no retries left).
async fn a_client_blocked_writing_sees_its_server_leave(case: Case) {
    let Case { sent, leave, .. } = case;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = Client::builder(move || TcpStream::connect(addr))
        .policy(std::iter::empty())
        .config(config(case.heartbeat))
        .build();
    let writing = tokio::spawn(async move {
        client.write_all(&vec![1; FLOOD]).await?;
        client.flush().await
    });

    let (socket, _) = tokio::time::timeout(LIMIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    if let Leave::Reset = leave {
        SockRef::from(&socket)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let (mut rx, mut tx) = socket.into_split();
    let mut hello = [0; 34];
    rx.read_exact(&mut hello).await.unwrap();
    let flooding = tokio::spawn(async move {
        tx.write_all(&welcome()).await?;
        tx.write_all(&data_frames(sent)).await?;
        io::Result::Ok(tx)
    });
    tokio::time::timeout(LIMIT, read_data(&mut rx, BUFFER))
        .await
        .expect("the client sends a buffer's worth")
        .unwrap();
    let tx = tokio::time::timeout(LIMIT, flooding)
        .await
        .expect("the kernel takes the flood")
        .unwrap()
        .unwrap();
    let _socket = match leave {
        Leave::Reset => {
            drop((rx, tx));
            None
        }
        Leave::Silent => Some((rx, tx)),
    };

    let ended = tokio::time::timeout(LIMIT, writing)
        .await
        .unwrap_or_else(|_| panic!("{case:?}: the client's write still waits"))
        .unwrap();
    assert!(
        ended.is_err(),
        "{case:?}: the write fails once the client gives up"
    );
}

#[tokio::test]
async fn a_client_blocked_writing_reads_on_and_sees_its_server_reset() {
    a_client_blocked_writing_sees_its_server_leave(Case {
        sent: TRICKLE - BUFFER,
        leave: Leave::Reset,
        heartbeat: NO_HEARTBEAT,
    })
    .await;
}

#[tokio::test]
async fn a_client_blocked_writing_behind_unread_data_sees_its_server_reset() {
    a_client_blocked_writing_sees_its_server_leave(Case {
        sent: FLOOD,
        leave: Leave::Reset,
        heartbeat: HEARTBEAT,
    })
    .await;
}

#[tokio::test]
async fn a_client_blocked_writing_behind_unread_data_sees_its_server_go_silent() {
    a_client_blocked_writing_sees_its_server_leave(Case {
        sent: FLOOD,
        leave: Leave::Silent,
        heartbeat: HEARTBEAT,
    })
    .await;
}
