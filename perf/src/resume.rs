//! Scenario 10: the overhead of `staunch::resume` against the plain `Reconnecting` adapter (and
//! a bare `TcpStream` for reference): one direction over loopback, 64 KiB writes, the same bytes
//! for each, both ends in this process. Resume writes either borrowed slices (`write_all`, which
//! copies them into the replay buffer) or owned `Bytes` (`write_all_bytes`, no copy).
//!
//! Each run times the transfer from the first write until the receiver has read every byte (for
//! resume, until `shutdown` has returned, so the last ack's round trip is included).

use std::time::Instant;

use bytes::Bytes;

use staunch::reconnect::{Reconnecting, TcpConnector};
use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHUNK: usize = 64 * 1024;

pub(crate) const CONTENDERS: [&str; 6] = [
    "bare TcpStream",
    "staunch Reconnecting",
    "resume (100,000 B buffer)",
    "resume, Bytes (100,000 B)",
    "resume (4 MiB buffer)",
    "resume, Bytes (4 MiB)",
];

async fn write_all_chunks<W: AsyncWrite + Unpin>(mut writer: W, total: u64) -> std::io::Result<()> {
    let chunk = vec![0x5A; CHUNK];
    let mut sent = 0;
    while sent < total {
        writer.write_all(&chunk).await?;
        sent += CHUNK as u64;
    }
    writer.shutdown().await
}

async fn read_to_end_counting<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        match reader.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Bytes per second through `kind`, `total` bytes (a multiple of 64 KiB).
pub(crate) async fn throughput(kind: &str, total: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resume_config = match kind {
        "resume (100,000 B buffer)" | "resume, Bytes (100,000 B)" => Some(Config::default()),
        "resume (4 MiB buffer)" | "resume, Bytes (4 MiB)" => {
            Some(Config::default().buffer_size(4 << 20))
        }
        _ => None,
    };
    let server = {
        let resume_config = resume_config.clone();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            socket.set_nodelay(true).unwrap();
            match resume_config {
                Some(config) => {
                    let Ok(Accepted::New(session)) = Acceptor::new(config).accept(socket).await
                    else {
                        panic!("a new session");
                    };
                    read_to_end_counting(session).await.unwrap()
                }
                None => read_to_end_counting(socket).await.unwrap(),
            }
        })
    };
    let started = Instant::now();
    match (kind, resume_config) {
        (_, Some(config)) => {
            let connect = move || async move {
                let socket = TcpStream::connect(addr).await?;
                socket.set_nodelay(true)?;
                std::io::Result::Ok(socket)
            };
            let mut client = Client::builder(connect)
                .policy(std::iter::empty())
                .config(config)
                .build();
            if kind.contains("Bytes") {
                let chunk = Bytes::from(vec![0x5A; CHUNK]);
                for _ in 0..total / CHUNK as u64 {
                    client.write_all_bytes(&mut chunk.clone()).await.unwrap();
                }
                client.shutdown().await.unwrap();
            } else {
                write_all_chunks(client, total).await.unwrap();
            }
        }
        ("bare TcpStream", None) => {
            let client = TcpStream::connect(addr).await.unwrap();
            client.set_nodelay(true).unwrap();
            write_all_chunks(client, total).await.unwrap();
        }
        ("staunch Reconnecting", None) => {
            let client = Reconnecting::new(
                TcpConnector::new(addr.to_string())
                    .socket_options(staunch::SocketOptions::new().nodelay(true)),
            );
            write_all_chunks(client, total).await.unwrap();
        }
        (other, None) => panic!("unknown contender {other}"),
    }
    let elapsed = started.elapsed();
    assert_eq!(server.await.unwrap(), total);
    total as f64 / elapsed.as_secs_f64()
}
