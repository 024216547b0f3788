//! A line client that keeps talking to the echo server across restarts.
//!
//! ```text
//! cargo run --example echo                                  # terminal 1
//! cargo run --example reconnecting_client                   # terminal 2: type lines
//! cargo run --example reconnecting_client -- 127.0.0.1:9000 # or another address
//! ```
//!
//! Each line read from stdin is sent and its echo printed. Stop the echo server (Ctrl-C) and start
//! it again: the client prints its state changes on stderr (`Backoff`, `Connecting`,
//! `Connected { generation: 2 }`) and goes on. When stdin ends, the client shuts the connection
//! down and exits; if the server stays away for about half a minute, it gives up and exits with
//! an error. An address that can never work (`localhost`, with no port) ends it at once.
//!
//! A line whose round trip fails is sent again on the next connection: that is safe here because
//! an echo is idempotent. Whether the server saw the first copy, TCP cannot say (the error carries
//! how many bytes were unconfirmed).

use std::time::Duration;

use anyhow::Context as _;
use staunch::backoff::{Exponential, Jitter};
use staunch::reconnect::{
    Disconnected, EofPolicy, GaveUp, GiveUpCause, Reconnecting, TcpConnector,
};
use staunch::SocketOptions;
use tokio::io::{self, AsyncBufReadExt, AsyncWriteExt, BufReader};

type Conn = BufReader<Reconnecting<TcpConnector>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let policy = Exponential::builder()
        .min(Duration::from_millis(100))
        .max(Duration::from_secs(2))
        .jitter(Jitter::Proportional(0.2))
        .max_total(Duration::from_secs(30))
        .build()?;
    let connector = TcpConnector::new(addr.clone()).socket_options(
        SocketOptions::new()
            .nodelay(true)
            .keepalive(Duration::from_secs(30)),
    );
    let reconnecting = Reconnecting::builder(connector)
        .policy(policy)
        .connect_timeout(Duration::from_secs(3))
        // Waiting for an echo longer than this means the server is gone without a word.
        .idle_timeout(Duration::from_secs(10))
        // A restarted server closes our connection: that means "reconnect", not "done".
        .eof_policy(EofPolicy::Reconnect)
        // Only a connection that lasted this long starts the backoff (and its 30 s budget) over:
        // a server that accepts and then crashes at once is not hit every 100 ms. (The default.)
        .stable_after(Duration::from_secs(10))
        .build();

    let mut states = reconnecting.watch();
    let printer = tokio::spawn(async move {
        while states.changed().await.is_ok() {
            eprintln!("state: {:?}", *states.borrow_and_update());
        }
    });

    let mut conn: Conn = BufReader::new(reconnecting);
    let mut stdin = BufReader::new(io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        loop {
            match round_trip(&mut conn, &line).await {
                Ok(echo) => {
                    println!("{echo}");
                    break;
                }
                Err(e) if GaveUp::from_io_error(&e).is_some() => {
                    // `Fatal`: a connect error that retrying cannot fix (no port, say).
                    let why = match GaveUp::from_io_error(&e).map(GaveUp::cause) {
                        Some(GiveUpCause::Fatal) => "cannot connect to",
                        _ => "no echo server at",
                    };
                    return Err(e).with_context(|| format!("{why} {addr}"));
                }
                Err(e) => {
                    match Disconnected::from_io_error(&e) {
                        Some(d) => eprintln!(
                            "connection {} lost ({}), {} bytes unconfirmed; sending again",
                            d.generation(),
                            d.reason(),
                            d.unconfirmed_bytes()
                        ),
                        None => eprintln!("error: {e}; sending again"),
                    }
                    // Drop whatever half line the old connection left in the buffer.
                    conn = BufReader::new(conn.into_inner());
                }
            }
        }
    }
    conn.get_mut().shutdown().await?;
    // Dropping the connection closes the state channel: let the printer show the last states.
    drop(conn);
    let _ = printer.await;
    Ok(())
}

async fn round_trip(conn: &mut Conn, line: &str) -> io::Result<String> {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await?;
    let mut echo = String::new();
    if conn.read_line(&mut echo).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(echo.trim_end_matches('\n').to_owned())
}
