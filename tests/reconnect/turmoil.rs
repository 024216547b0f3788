//! `Reconnecting` over turmoil's simulated network: a client completes N request/response round
//! trips through a partition and repair and a server crash and restart, with seeded randomness,
//! and the test counts the reconnects. The connector is a plain closure over turmoil's
//! `TcpStream`, which shows the adapter is generic over the transport.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use staunch::backoff::{Exponential, Jitter};
use staunch::reconnect::{EofPolicy, Reconnecting};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

const PORT: u16 = 9000;
const ROUND_TRIPS: u64 = 60;

/// Echo every 8-byte request back.
async fn server() -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = [0; 8];
            while stream.read_exact(&mut buf).await.is_ok() {
                if stream.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[derive(Debug, Default)]
struct Counts {
    completed: Cell<u64>,
    errors: Cell<u64>,
    generation: Cell<u64>,
}

/// Run the client against the server with `chaos` (milliseconds, event) applied from outside.
fn simulate(
    seed: u64,
    idle_timeout: Option<Duration>,
    chaos: &[(u64, &str)],
) -> (turmoil::Result, Rc<Counts>) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(30))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .enable_random_order()
        .rng_seed(seed)
        .build();
    sim.host("server", server);

    let counts = Rc::new(Counts::default());
    let seen = Rc::clone(&counts);
    sim.client("client", async move {
        let policy = Exponential::builder()
            .min(Duration::from_millis(50))
            .max(Duration::from_millis(500))
            .jitter(Jitter::Proportional(0.2))
            .seed(seed)
            .build()?;
        let mut builder = Reconnecting::builder(|| TcpStream::connect(("server", PORT)))
            .policy(policy)
            .connect_timeout(Duration::from_millis(500))
            .eof_policy(EofPolicy::Reconnect);
        if let Some(limit) = idle_timeout {
            builder = builder.idle_timeout(limit);
        }
        let mut conn = builder.build();
        for i in 0..ROUND_TRIPS {
            loop {
                let request = i.to_be_bytes();
                let mut reply = [0; 8];
                let attempt = async {
                    conn.write_all(&request).await?;
                    conn.read_exact(&mut reply).await
                };
                match attempt.await {
                    Ok(_) => {
                        assert_eq!(reply, request, "a reply belongs to its request");
                        break;
                    }
                    Err(_) => seen.errors.set(seen.errors.get() + 1),
                }
            }
            seen.completed.set(i + 1);
            seen.generation.set(conn.generation());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    });

    let mut chaos = chaos.iter().peekable();
    let result = loop {
        if let Some(&&(at_ms, what)) = chaos.peek() {
            if sim.elapsed() >= Duration::from_millis(at_ms) {
                match what {
                    "partition" => sim.partition("client", "server"),
                    "repair" => sim.repair("client", "server"),
                    "crash" => sim.crash("server"),
                    "bounce" => sim.bounce("server"),
                    other => panic!("unknown chaos {other}"),
                }
                chaos.next();
            }
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    (result, counts)
}

const PARTITION: [(u64, &str); 2] = [(1000, "partition"), (2500, "repair")];
const CHAOS: [(u64, &str); 4] = [
    (1000, "partition"),
    (2500, "repair"),
    (3500, "crash"),
    (4500, "bounce"),
];

#[test]
fn round_trips_complete_through_partition_and_crash() {
    for seed in [1, 7, 42] {
        let (result, counts) = simulate(seed, Some(Duration::from_millis(400)), &CHAOS);
        result.unwrap_or_else(|e| panic!("seed {seed}: {e} ({counts:?})"));
        assert_eq!(counts.completed.get(), ROUND_TRIPS, "seed {seed}");
        // At least one reconnect for the partition and one for the crash.
        assert!(counts.generation.get() >= 3, "seed {seed}: {counts:?}");
        assert!(counts.errors.get() >= 2, "seed {seed}: {counts:?}");
    }
}

/// A partition raises no error on an established connection (the request is dropped and the read
/// waits): the idle timeout is what notices it.
#[test]
fn the_idle_timeout_gets_the_client_through_a_partition() {
    let (result, counts) = simulate(3, Some(Duration::from_millis(400)), &PARTITION);
    result.unwrap_or_else(|e| panic!("{e} ({counts:?})"));
    assert_eq!(counts.completed.get(), ROUND_TRIPS);
    assert!(counts.generation.get() >= 2, "{counts:?}");

    // Control: without an idle timeout the client hangs in its read until the simulation runs
    // out of time.
    let (result, counts) = simulate(3, None, &PARTITION);
    assert!(
        result.is_err(),
        "expected the simulation to run out of time: {counts:?}"
    );
    assert!(counts.completed.get() < ROUND_TRIPS);
    assert_eq!(counts.generation.get(), 1);
}
