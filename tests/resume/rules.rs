//! The session rules over in-memory transports on paused time: backpressure, expiry, unknown
//! ids, wrong versions and malformed frames.

use futures_util::FutureExt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use staunch::reconnect::{ConnState, Connect, GiveUpCause};
use staunch::resume::{Accepted, Acceptor, Client, Config, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::support::{Kill, Killable};

type ServerIo = Killable<DuplexStream>;

/// An in-memory network: the connector hands one end of a pipe to the acceptor's loop.
struct Net {
    acceptor: Acceptor<ServerIo>,
    sessions: mpsc::UnboundedReceiver<Session<ServerIo>>,
    errors: mpsc::UnboundedReceiver<io::Error>,
    refuse: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Kill<DuplexStream>>>>,
    pipes: mpsc::UnboundedSender<DuplexStream>,
}

impl Net {
    fn new(config: Config) -> Self {
        let acceptor = Acceptor::new(config);
        let (pipes, mut incoming) = mpsc::unbounded_channel::<DuplexStream>();
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let (errors_tx, errors) = mpsc::unbounded_channel();
        let current: Arc<Mutex<Option<Kill<DuplexStream>>>> = Arc::default();
        {
            let (acceptor, current) = (acceptor.clone(), current.clone());
            tokio::spawn(async move {
                while let Some(pipe) = incoming.recv().await {
                    let (io, kill) = Killable::new(pipe);
                    *current.lock().unwrap() = Some(kill);
                    match acceptor.accept(io).await {
                        Ok(Accepted::New(session)) => drop(sessions_tx.send(session)),
                        Ok(Accepted::Resumed(_)) => {}
                        Err(error) => drop(errors_tx.send(error)),
                    }
                }
            });
        }
        Self {
            acceptor,
            sessions,
            errors,
            refuse: Arc::default(),
            current,
            pipes,
        }
    }

    fn connector(
        &self,
    ) -> impl FnMut() -> std::future::Ready<io::Result<DuplexStream>> + Send + 'static {
        let (refuse, pipes) = (self.refuse.clone(), self.pipes.clone());
        move || {
            if refuse.load(Ordering::Relaxed) {
                return std::future::ready(Err(io::ErrorKind::ConnectionRefused.into()));
            }
            let (client, server) = tokio::io::duplex(256 * 1024);
            let _ = pipes.send(server);
            std::future::ready(Ok(client))
        }
    }

    fn kill_current(&self) -> bool {
        self.current
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(Kill::kill)
    }

    /// A raw connection to the acceptor, for hand-written frames.
    fn raw(&self) -> DuplexStream {
        (self.connector())().into_inner().unwrap()
    }
}

/// Start a session: `greeting` goes from the client to the new session (both must be polled:
/// the client's data waits for the session's welcome).
async fn start<C>(net: &mut Net, client: &mut C, greeting: &[u8]) -> Session<ServerIo>
where
    C: AsyncWriteExt + Unpin,
{
    let (_, session) = tokio::join!(
        async {
            client.write_all(greeting).await.unwrap();
            client.flush().await.unwrap();
        },
        async {
            let mut session = net.sessions.recv().await.unwrap();
            let mut buf = vec![0; greeting.len()];
            session.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, greeting);
            session
        }
    );
    session
}

/// A client that retries every 50 ms, 100 times.
fn retrying_client<C: Connect>(connector: C, config: Config) -> Client<C>
where
    C::Io: AsyncRead + AsyncWrite + Unpin,
{
    Client::builder(connector)
        .policy(std::iter::repeat_n(Duration::from_millis(50), 100))
        .config(config)
        .build()
}

fn hello(id: [u8; 16], received: u64) -> Vec<u8> {
    let mut frame = vec![1, 0, 0, 0, 29, 1];
    frame.extend_from_slice(&id);
    frame.extend_from_slice(&received.to_be_bytes());
    frame.extend_from_slice(&100_000u32.to_be_bytes());
    frame
}

/// A write beyond the buffer waits until the peer's reader takes bytes; then all arrive.
#[tokio::test(start_paused = true)]
async fn writes_wait_while_the_buffer_is_full() {
    let config = Config::default()
        .buffer_size(1000)
        .heartbeat(Duration::from_secs(600));
    let mut net = Net::new(config.clone());
    let mut client = retrying_client(net.connector(), config);
    let writer = tokio::spawn(async move {
        client.write_all(&[7; 5000]).await?;
        client.shutdown().await?;
        io::Result::Ok(client)
    });
    let mut session = net.sessions.recv().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !writer.is_finished(),
        "5000 bytes cannot fit a 1000-byte buffer"
    );

    let mut received = Vec::new();
    session.read_to_end(&mut received).await.unwrap();
    assert_eq!(received, vec![7; 5000]);
    writer.await.unwrap().unwrap();
}

/// A client that stays away past the expiry: the session is freed and counted, its owner gets
/// `TimedOut`, and the client coming back is told the session is unknown.
#[tokio::test(start_paused = true)]
async fn a_session_expires_when_its_client_stays_away() {
    let config = Config::default()
        .session_expiry(Duration::from_secs(1))
        .heartbeat(Duration::from_millis(100));
    let mut net = Net::new(config.clone());
    let mut client = retrying_client(net.connector(), config);
    let mut session = start(&mut net, &mut client, b"hello").await;
    let mut buf = [0; 5];
    assert_eq!(net.acceptor.stats().active, 1);

    net.refuse.store(true, Ordering::Relaxed);
    assert!(net.kill_current());
    let error = session.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    let stats = net.acceptor.stats();
    assert_eq!((stats.expired, stats.active), (1, 0), "{stats:?}");
    drop(session);

    net.refuse.store(false, Ordering::Relaxed);
    let error = client.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    assert_eq!(net.acceptor.stats().rejected, 1);
    // The client stays failed, and says so.
    let error = client.write(b"more").await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    match client.state() {
        ConnState::GaveUp(gave_up) => {
            assert_eq!(gave_up.cause(), GiveUpCause::Fatal);
            let last = gave_up.last_reason().and_then(|r| r.io_error());
            assert_eq!(last.map(io::Error::kind), Some(io::ErrorKind::NotFound));
        }
        other => panic!("gave up, not {other:?}"),
    }

    // Control: a client that comes back in time resumes.
    let mut client = retrying_client(net.connector(), Config::default());
    let mut session = start(&mut net, &mut client, b"again").await;
    assert!(net.kill_current());
    let (sent, read) = tokio::join!(
        async {
            client.write_all(b"after").await?;
            client.flush().await
        },
        session.read_exact(&mut buf)
    );
    sent.unwrap();
    read.unwrap();
    assert_eq!(&buf, b"after");
    assert_eq!(net.acceptor.stats().resumed, 1);
}

/// A hello with an id the acceptor never issued is rejected and joins nothing.
#[tokio::test(start_paused = true)]
async fn an_unknown_id_is_rejected() {
    let mut net = Net::new(Config::default());
    let mut client = retrying_client(net.connector(), Config::default());
    let mut session = start(&mut net, &mut client, b"mine").await;

    let mut raw = net.raw();
    raw.write_all(&hello([0xAB; 16], 0)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the hello is answered and the connection closed")
        .unwrap();
    assert_eq!(
        answer,
        [3, 0, 0, 0, 1, 1],
        "a reject frame: unknown session"
    );
    let error = net.errors.recv().await.unwrap();
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");

    client.write_all(b"more").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0; 4];
    session.read_exact(&mut buf).await.unwrap();
    assert_eq!(
        &buf, b"more",
        "the real session saw nothing of the stranger"
    );
    let stats = net.acceptor.stats();
    assert_eq!((stats.rejected, stats.resumed, stats.active), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_bad_hello_is_refused() {
    let mut net = Net::new(Config::default().handshake_timeout(Duration::from_secs(1)));
    let mut raw = net.raw();
    let mut frame = hello([0; 16], 0);
    frame[5] = 2;
    raw.write_all(&frame).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the hello is answered and the connection closed")
        .unwrap();
    assert_eq!(
        answer,
        [3, 0, 0, 0, 1, 2],
        "a reject frame: unsupported version"
    );
    let error = net.errors.recv().await.unwrap();
    assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");

    let mut raw = net.raw();
    raw.write_all(&hello([0; 16], 0)[..10]).await.unwrap();
    drop(raw);
    let error = net.errors.recv().await.unwrap();
    assert_eq!(
        error.kind(),
        io::ErrorKind::UnexpectedEof,
        "truncated: {error}"
    );

    let _silent = net.raw();
    let error = net.errors.recv().await.unwrap();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "silent: {error}");

    let mut raw = net.raw();
    raw.write_all(&[4, 0, 0, 0, 29]).await.unwrap();
    raw.write_all(&[0; 29]).await.unwrap();
    let error = net.errors.recv().await.unwrap();
    assert_eq!(
        error.kind(),
        io::ErrorKind::InvalidData,
        "not a hello: {error}"
    );
    assert_eq!(net.acceptor.stats().created, 0);
}

/// Malformed frames on one session fail that session only.
#[tokio::test(start_paused = true)]
async fn a_malformed_frame_closes_that_session_only() {
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "ack beyond what was sent",
            vec![5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9],
        ),
        ("oversized data frame", vec![4, 0, 0x10, 0, 1]),
        ("unknown kind", vec![9, 0, 0, 0, 0]),
        ("a second hello", hello([0; 16], 0)),
    ];
    let mut net = Net::new(Config::default());
    let mut bystander = retrying_client(net.connector(), Config::default());
    let mut bystander_session = start(&mut net, &mut bystander, b"ok").await;

    for (what, frame) in cases {
        let mut raw = net.raw();
        raw.write_all(&hello([0; 16], 0)).await.unwrap();
        let mut session = net.sessions.recv().await.unwrap();
        let mut buf = [0; 16];
        let (reading, welcome) = tokio::join!(session.read(&mut buf), async {
            let mut welcome = [0; 29];
            raw.read_exact(&mut welcome).await.unwrap();
            raw.write_all(&frame).await.unwrap();
            welcome
        });
        assert_eq!(welcome[0], 2, "{what}: a welcome");
        let error = reading.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}: {error}");
        let again = session.write(b"x").await.unwrap_err();
        assert_eq!(
            again.kind(),
            io::ErrorKind::InvalidData,
            "{what}: stays failed"
        );
    }

    bystander_session.write_all(b"still").await.unwrap();
    bystander_session.flush().await.unwrap();
    let mut buf = [0; 5];
    bystander.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still");
}

#[test]
fn the_public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Acceptor<tokio::net::TcpStream>>();
    send_sync::<Session<tokio::net::TcpStream>>();
    send_sync::<Accepted<tokio::net::TcpStream>>();
    send_sync::<staunch::resume::SessionId>();
    send_sync::<Config>();
    let client = Client::new(|| tokio::net::TcpStream::connect("127.0.0.1:1"));
    send(&client);
}

/// The server reads to the end and drops its session at once: the client's shutdown still
/// returns, because the last ack arrived before the close (even with no reconnects allowed).
#[tokio::test(start_paused = true)]
async fn shutdown_returns_when_the_peer_closes_right_after_its_last_ack() {
    let mut net = Net::new(Config::default());
    let mut client = Client::builder(net.connector())
        .policy(std::iter::empty())
        .build();
    let (shutdown, ()) = tokio::join!(
        async {
            client.write_all(b"bye").await?;
            client.shutdown().await
        },
        async {
            let mut session = net.sessions.recv().await.unwrap();
            let mut all = Vec::new();
            session.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, b"bye");
            drop(session);
            // The test's kill handle holds the pipe too: close it now.
            net.kill_current();
        }
    );
    shutdown.unwrap();
}

/// Acks follow the buffer the peer announced in its hello: a reader that took a quarter of it
/// acks unasked; with a larger buffer announced (the control), the same bytes get no ack yet.
#[tokio::test(start_paused = true)]
async fn acks_come_every_quarter_of_the_peers_buffer() {
    for (announced, acked) in [(4_000u32, true), (100_000, false)] {
        let mut net = Net::new(Config::default());
        let mut raw = net.raw();
        let mut frame = hello([0; 16], 0);
        frame.truncate(frame.len() - 4);
        frame.extend_from_slice(&announced.to_be_bytes());
        raw.write_all(&frame).await.unwrap();
        let mut data = vec![4, 0, 0, 0x03, 0xE8];
        data.extend_from_slice(&[9; 1000]);
        raw.write_all(&data).await.unwrap();
        // The session answers (welcome, then any ack) as its reader drives it.
        let mut session = net.sessions.recv().await.unwrap();
        let mut got = vec![0; 1000];
        session.read_exact(&mut got).await.unwrap();
        let mut welcome = [0; 5 + 28];
        raw.read_exact(&mut welcome).await.unwrap();
        assert_eq!(welcome[..5], [2, 0, 0, 0, 28]);
        // The server's own buffer, announced back.
        assert_eq!(welcome[29..], 100_000u32.to_be_bytes());
        let mut ack = [0; 13];
        let answer = tokio::time::timeout(Duration::from_secs(1), raw.read_exact(&mut ack)).await;
        if acked {
            answer.expect("an ack").unwrap();
            let mut expected = vec![5, 0, 0, 0, 8];
            expected.extend_from_slice(&1000u64.to_be_bytes());
            assert_eq!(ack.to_vec(), expected);
        } else {
            assert!(answer.is_err(), "no ack before a quarter of 100,000 bytes");
        }
    }
}

/// A client that claims, on its return, bytes the server wrote but never sent is refused: the
/// session fails instead of skipping them.
#[tokio::test(start_paused = true)]
async fn a_resume_from_beyond_what_was_sent_fails_the_session() {
    let mut net = Net::new(Config::default());
    let mut client = retrying_client(net.connector(), Config::default());
    let mut session = start(&mut net, &mut client, b"hi").await;
    // The client is never polled again: it does not come back by itself.
    drop(client);
    assert!(net.kill_current());
    // Written while no transport is attached: none of it was sent.
    session.write_all(&[7; 100]).await.unwrap();
    let mut buf = [0; 1];
    let lost = session.read(&mut buf).now_or_never();
    assert!(lost.is_none(), "the session waits for its client");

    let mut raw = net.raw();
    raw.write_all(&hello(session.id().to_bytes(), 100))
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(60), session.read(&mut buf))
        .await
        .expect("the session fails at once")
        .expect_err("a resume from position 100 is refused: nothing was sent");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
}

/// While the transport is backed up, what is written meanwhile goes out as one frame (up to
/// 1 MiB) when it drains, gathered from many small writes: a bulk transfer pays for few headers.
#[tokio::test(start_paused = true)]
async fn writes_made_while_the_transport_is_full_go_out_in_large_frames() {
    let (client_end, mut server_end) = tokio::io::duplex(16 * 1024);
    let mut ends = Some(client_end);
    let connector = move || {
        std::future::ready(
            ends.take()
                .ok_or(io::Error::from(io::ErrorKind::ConnectionRefused)),
        )
    };
    let mut client = Client::builder(connector)
        .policy(std::iter::empty())
        .config(Config::default().buffer_size(4 << 20))
        .build();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut welcome = vec![2, 0, 0, 0, 28];
    welcome.extend_from_slice(&[0x5A; 16]);
    welcome.extend_from_slice(&0u64.to_be_bytes());
    welcome.extend_from_slice(&(4u32 << 20).to_be_bytes());
    server_end.write_all(&welcome).await.unwrap();
    // 4 KiB writes, all taken by the replay buffer while the pipe is full.
    for chunk in data.chunks(4096) {
        client.write_all(chunk).await.unwrap();
    }
    let (flushed, (frames, received)) = tokio::join!(client.flush(), async {
        let mut hello = [0; 34];
        server_end.read_exact(&mut hello).await.unwrap();
        let (mut frames, mut received) = (Vec::new(), Vec::new());
        while received.len() < data.len() {
            let mut header = [0; 5];
            server_end.read_exact(&mut header).await.unwrap();
            assert_eq!(header[0], 4, "only data frames");
            let len = u32::from_be_bytes(header[1..].try_into().unwrap()) as usize;
            let start = received.len();
            received.resize(start + len, 0);
            server_end.read_exact(&mut received[start..]).await.unwrap();
            frames.push(len);
        }
        (frames, received)
    });
    flushed.unwrap();
    assert!(received == data, "every byte, in order");
    assert!(
        frames.iter().all(|&len| len <= 1 << 20),
        "no frame over the limit: {frames:?}"
    );
    assert!(
        frames.len() <= 8,
        "3,000,000 bytes in {} frames: {frames:?}",
        frames.len()
    );
}

/// An acceptor holds at most `max_sessions`: a hello for one more is turned away and counted,
/// returning clients are still taken, and a turned-away client gets in once a session ends.
#[tokio::test(start_paused = true)]
async fn a_full_acceptor_turns_new_sessions_away_and_counts_them() {
    let mut net = Net::new(Config::default().max_sessions(2));
    let mut first = retrying_client(net.connector(), Config::default());
    let mut first_session = start(&mut net, &mut first, b"one").await;
    let first_connection = net.current.lock().unwrap().clone().unwrap();
    let mut second = retrying_client(net.connector(), Config::default());
    let second_session = start(&mut net, &mut second, b"two").await;

    let mut raw = net.raw();
    raw.write_all(&hello([0; 16], 0)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .expect("the hello is answered and the connection closed")
        .unwrap();
    assert_eq!(answer, [3, 0, 0, 0, 1, 3], "a reject: the server is full");
    let error = net.errors.recv().await.unwrap();
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
    let stats = net.acceptor.stats();
    assert_eq!(
        (
            stats.created,
            stats.over_limit,
            stats.rejected,
            stats.active
        ),
        (2, 1, 0, 2),
        "{stats:?}"
    );

    // Control: a client coming back to its session is taken while full.
    assert!(first_connection.kill());
    let (sent, read) = tokio::join!(
        async {
            first.write_all(b"back").await?;
            first.flush().await
        },
        async {
            let mut buf = [0; 4];
            first_session.read_exact(&mut buf).await.map(|_| buf)
        }
    );
    sent.unwrap();
    assert_eq!(&read.unwrap(), b"back");
    assert_eq!(net.acceptor.stats().resumed, 1);

    // A client turned away tries again, and gets in once a session ends.
    let mut late = retrying_client(net.connector(), Config::default());
    let writing = tokio::spawn(async move {
        late.write_all(b"late").await?;
        late.flush().await?;
        io::Result::Ok(late)
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while net.acceptor.stats().over_limit < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the late client is turned away and tries again");
    assert!(!writing.is_finished(), "a full server is not an error");
    drop(second_session);
    let mut late_session = net.sessions.recv().await.unwrap();
    let mut buf = [0; 4];
    late_session.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"late");
    writing.await.unwrap().unwrap();
}

#[test]
#[should_panic(expected = "resume::Config::max_sessions must be at least 1")]
fn a_session_limit_of_zero_is_refused() {
    let _ = Config::default().max_sessions(0);
}
