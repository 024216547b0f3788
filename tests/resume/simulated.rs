//! turmoil's simulated network: 10 MB each way while the link is partitioned and repaired,
//! messages are delayed, and connections are killed from both ends (a kill with unread data
//! sends a reset). Each reader ends with exactly the bytes sent, for a fixed set of seeds.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

use crate::support::{exchange, receive, send, Kill, Killable};

const LEN: u64 = 10_000_000;
const PORT: u16 = 7000;

/// A small deterministic generator for the chaos schedule.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

type Current = Arc<Mutex<Option<Kill<TcpStream>>>>;

/// Kill the current connection at random moments until `done` is set, counting the kills.
async fn killer(
    mut rng: Rng,
    current: Current,
    done: watch::Receiver<Option<u64>>,
    kills: Arc<AtomicU64>,
) {
    while done.borrow().is_none() {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(700))).await;
        if current.lock().unwrap().as_ref().is_some_and(Kill::kill) {
            kills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    client_received: Option<u64>,
    server_kills: Arc<AtomicU64>,
    client_kills: Arc<AtomicU64>,
    resumed: u64,
    partitions: u32,
    simulated: Duration,
}

fn simulate(seed: u64) -> (turmoil::Result, Arc<Mutex<Outcome>>) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(15))
        .rng_seed(seed)
        .build();
    let config = Config::default()
        .heartbeat(Duration::from_millis(200))
        .session_expiry(Duration::from_secs(60));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    // The server's reader reports its count here; both killers stop then.
    let (done_tx, done) = watch::channel(None::<u64>);
    let done_tx = Arc::new(done_tx);

    {
        let (config, outcome, done_tx, done) = (
            config.clone(),
            outcome.clone(),
            done_tx.clone(),
            done.clone(),
        );
        sim.host("server", move || {
            let (config, outcome, done_tx, done) = (
                config.clone(),
                outcome.clone(),
                done_tx.clone(),
                done.clone(),
            );
            async move {
                let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
                let acceptor = Acceptor::new(config);
                let current = Current::default();
                {
                    let kills = outcome.lock().unwrap().server_kills.clone();
                    tokio::spawn(killer(
                        Rng(seed ^ 0xA5A5),
                        current.clone(),
                        done.clone(),
                        kills,
                    ));
                }
                loop {
                    let (socket, _) = listener.accept().await?;
                    let (socket, kill) = Killable::new(socket);
                    *current.lock().unwrap() = Some(kill);
                    let (acceptor, done_tx, outcome) =
                        (acceptor.clone(), done_tx.clone(), outcome.clone());
                    tokio::spawn(async move {
                        if let Ok(Accepted::New(session)) = acceptor.accept(socket).await {
                            let (mut reader, mut writer) = tokio::io::split(session);
                            let receiving = async {
                                let received = receive(&mut reader, 1, |_| {}).await;
                                outcome.lock().unwrap().resumed = acceptor.stats().resumed;
                                done_tx.send_replace(Some(received.unwrap()));
                            };
                            // The server's shutdown may wait past the end of the simulation
                            // for the client's last ack; the client's reader checks the data.
                            let _ = tokio::join!(receiving, send(&mut writer, 2, LEN));
                        }
                    });
                }
            }
        });
    }

    {
        let outcome = outcome.clone();
        sim.client("client", async move {
            let current = Current::default();
            let connector = {
                let current = current.clone();
                move || {
                    let current = current.clone();
                    async move {
                        let socket = TcpStream::connect(("server", PORT)).await?;
                        let (socket, kill) = Killable::new(socket);
                        *current.lock().unwrap() = Some(kill);
                        io::Result::Ok(socket)
                    }
                }
            };
            let backoff = std::iter::repeat_n(Duration::from_millis(50), 100_000);
            let client = Client::builder(connector)
                .policy(backoff)
                .connect_timeout(Duration::from_secs(10))
                .config(config)
                .build();
            let kills = outcome.lock().unwrap().client_kills.clone();
            tokio::spawn(killer(Rng(seed ^ 0x5A5A), current, done.clone(), kills));
            let received = exchange(client, 1, 2, LEN, |_| {}).await?;
            outcome.lock().unwrap().client_received = Some(received);
            let mut done = done;
            let server_received = *done.wait_for(Option::is_some).await?;
            assert_eq!(
                server_received,
                Some(LEN),
                "the server received every byte once"
            );
            Ok(())
        });
    }

    // Partitions from outside: a few, at seeded times, each long enough for the heartbeat.
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9) | 1);
    let mut partitions: Vec<(Duration, Duration)> = (0..4)
        .map(|_| {
            let start = Duration::from_millis(200 + rng.below(2000));
            (start, start + Duration::from_millis(100 + rng.below(900)))
        })
        .collect();
    partitions.sort();
    let mut partitioned = false;
    let mut applied = 0;
    let result = loop {
        let now = sim.elapsed();
        let inside = partitions
            .iter()
            .any(|(from, to)| (*from..*to).contains(&now));
        if inside != partitioned {
            if inside {
                sim.partition("client", "server");
                applied += 1;
            } else {
                sim.repair("client", "server");
            }
            partitioned = inside;
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    outcome.lock().unwrap().partitions = applied;
    outcome.lock().unwrap().simulated = sim.elapsed();
    (result, outcome)
}

#[test]
fn ten_megabytes_each_way_through_partitions_and_kills() {
    for seed in [1, 2, 3] {
        let started = Instant::now();
        let (result, outcome) = simulate(seed);
        let outcome = outcome.lock().unwrap();
        result.unwrap_or_else(|e| panic!("seed {seed}: {e} ({outcome:?})"));
        assert_eq!(outcome.client_received, Some(LEN), "seed {seed}");
        let kills = |k: &AtomicU64| k.load(Ordering::Relaxed);
        assert!(
            kills(&outcome.server_kills) >= 2 && kills(&outcome.client_kills) >= 2,
            "seed {seed}: connections were killed from both ends: {outcome:?}"
        );
        assert!(outcome.resumed >= 4, "seed {seed}: {outcome:?}");
        assert!(outcome.partitions >= 1, "seed {seed}: {outcome:?}");
        eprintln!("seed {seed}: {outcome:?} in {:?}", started.elapsed());
    }
}
