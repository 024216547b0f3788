//! Real loopback sockets: the server's connections are reset (`SO_LINGER` 0) twenty times while
//! 10 MB go each way, and each reader ends with exactly the bytes sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::SockRef;
use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{exchange, Kill, Killable};

const LEN: u64 = 10_000_000;
const KILLS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_resets_during_a_transfer_lose_and_double_nothing() {
    let started = Instant::now();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(Config::default());
    let current: Arc<Mutex<Option<Kill<TcpStream>>>> = Arc::default();
    let (sessions_tx, mut sessions) = tokio::sync::mpsc::unbounded_channel();

    let accepting = {
        let (acceptor, current) = (acceptor.clone(), current.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                SockRef::from(&socket)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                let (socket, kill) = Killable::new(socket);
                *current.lock().unwrap() = Some(kill);
                let (acceptor, sessions_tx) = (acceptor.clone(), sessions_tx.clone());
                tokio::spawn(async move {
                    if let Ok(Accepted::New(session)) = acceptor.accept(socket).await {
                        let _ = sessions_tx.send(session);
                    }
                });
            }
        })
    };

    let backoff = std::iter::repeat_n(Duration::from_millis(2), 1000);
    let client = Client::builder(move || TcpStream::connect(addr))
        .policy(backoff)
        .build();
    let client = tokio::spawn(exchange(client, 1, 2, LEN, |_| {}));

    let session = tokio::time::timeout(Duration::from_secs(10), sessions.recv())
        .await
        .unwrap()
        .unwrap();
    let kills = Arc::new(AtomicU64::new(0));
    let server = {
        let kills = kills.clone();
        let mut next_kill = LEN / (KILLS + 1);
        exchange(session, 2, 1, LEN, move |received| {
            if received >= next_kill && kills.load(Ordering::Relaxed) < KILLS {
                next_kill += LEN / (KILLS + 1);
                if current.lock().unwrap().as_ref().is_some_and(Kill::kill) {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let (server, client) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(server, client)
    })
    .await
    .expect("the transfer finishes in time");
    assert_eq!(server.unwrap(), LEN, "the server received every byte once");
    assert_eq!(
        client.unwrap().unwrap(),
        LEN,
        "the client received every byte once"
    );
    assert_eq!(kills.load(Ordering::Relaxed), KILLS);
    let stats = acceptor.stats();
    assert_eq!(stats.created, 1);
    assert!(stats.resumed >= KILLS, "{stats:?}");
    accepting.abort();
    eprintln!(
        "{LEN} bytes each way through {KILLS} resets in {:?}",
        started.elapsed()
    );
}
