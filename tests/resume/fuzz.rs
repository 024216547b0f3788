//! Random and mutated frames fed to both ends after a valid handshake: nothing panics, nothing
//! hangs, and the reader gets exactly the payload of the well-formed data frames before the
//! first malformed frame (a reference parser written from the module docs says which), never a
//! byte more.

use std::io;
use std::time::Duration;

use proptest::prelude::*;
use staunch::resume::{Accepted, Acceptor, Client, Config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What the reader must see: the data, and whether the stream ends cleanly (a FIN) or with an
/// error (a malformed or truncated frame).
fn reference(input: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut rest = input;
    loop {
        if rest.len() < 5 {
            return (data, false);
        }
        let kind = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..];
        match (kind, len) {
            (4, 1..=1_048_576) => {
                let have = len.min(payload.len());
                data.extend_from_slice(&payload[..have]);
                if have < len {
                    return (data, false);
                }
            }
            // Nothing was sent, so only an ack of position 0 is valid.
            (5, 8) if payload.len() >= 8 && payload[..8] == [0; 8] => {}
            (6, 0) => {}
            (7, 0) => return (data, true),
            _ => return (data, false),
        }
        rest = &rest[5 + len..];
    }
}

/// Read to the end or the first error, with a bound in (paused) time.
/// `read_size` bytes at a time.
async fn read_all<R: AsyncRead + Unpin>(
    mut reader: R,
    read_size: usize,
) -> (Vec<u8>, io::Result<()>) {
    let mut data = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(3600), async {
        let mut buf = vec![0; read_size];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => data.extend_from_slice(&buf[..n]),
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .expect("the reader ends, it does not hang");
    (data, result)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The client, after a valid welcome, reads `input`; the connection then ends and the client may
/// not reconnect.
fn client_reads(input: &[u8], read_size: usize) -> (Vec<u8>, io::Result<()>) {
    runtime().block_on(async {
        let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
        let mut ends = Some(client_end);
        let connector = move || {
            std::future::ready(
                ends.take()
                    .ok_or(io::Error::from(io::ErrorKind::ConnectionRefused)),
            )
        };
        let client = Client::builder(connector)
            .policy(std::iter::empty())
            .build();
        let mut welcome = vec![2, 0, 0, 0, 28];
        welcome.extend_from_slice(&[0x5A; 16]);
        welcome.extend_from_slice(&0u64.to_be_bytes());
        welcome.extend_from_slice(&100_000u32.to_be_bytes());
        server_end.write_all(&welcome).await.unwrap();
        server_end.write_all(input).await.unwrap();
        // End of stream for the client; its own writes still go through, as with TCP.
        server_end.shutdown().await.unwrap();
        let result = read_all(client, read_size).await;
        drop(server_end);
        result
    })
}

/// A new server session reads `input` after the hello; the client never comes back.
fn server_reads(input: &[u8], read_size: usize) -> (Vec<u8>, io::Result<()>) {
    runtime().block_on(async {
        let (mut client_end, server_end) = tokio::io::duplex(1 << 20);
        let acceptor = Acceptor::new(Config::default().session_expiry(Duration::from_secs(5)));
        let mut hello = vec![1, 0, 0, 0, 29, 1];
        hello.extend_from_slice(&[0; 24]);
        hello.extend_from_slice(&100_000u32.to_be_bytes());
        client_end.write_all(&hello).await.unwrap();
        client_end.write_all(input).await.unwrap();
        client_end.shutdown().await.unwrap();
        let Ok(Accepted::New(session)) = acceptor.accept(server_end).await else {
            panic!("a valid hello starts a session");
        };
        let result = read_all(session, read_size).await;
        drop(client_end);
        result
    })
}

/// Frames that are mostly well formed, so that the fuzzing gets past the first header.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    // Short payloads are parsed from the read-ahead buffer; long ones are read straight into
    // the reader's buffer, with the next header when it has room.
    let payload = prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 1..300),
        1 => prop::collection::vec(any::<u8>(), 8_000..20_000),
    ];
    let data = payload.prop_map(|payload| {
        let mut frame = vec![4];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame
    });
    let ack = prop_oneof![Just(0u64), any::<u64>()].prop_map(|position| {
        let mut frame = vec![5, 0, 0, 0, 8];
        frame.extend_from_slice(&position.to_be_bytes());
        frame
    });
    prop_oneof![
        6 => data,
        2 => ack,
        2 => Just(vec![6, 0, 0, 0, 0]),
        1 => Just(vec![7, 0, 0, 0, 0]),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Reads shorter than a header, than a frame, and longer than several frames.
fn read_size() -> impl Strategy<Value = usize> {
    prop_oneof![1..8usize, 8..4096usize, 4096..70_000usize]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(frame(), 0..12),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    )
        .prop_map(|(frames, mutations)| {
            let mut input = frames.concat();
            if !input.is_empty() {
                for (at, byte) in mutations {
                    let at = at.index(input.len());
                    input[at] = byte;
                }
            }
            input
        })
}

fn check(input: &[u8], (data, result): (Vec<u8>, io::Result<()>)) {
    let (expected, clean) = reference(input);
    assert!(
        data == expected,
        "exactly the payload of the well-formed frames: got {} bytes, expected {}",
        data.len(),
        expected.len()
    );
    assert_eq!(
        result.is_ok(),
        clean,
        "end of stream only after a FIN: {result:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_client_never_yields_bytes_not_sent(input in input(), read_size in read_size()) {
        check(&input, client_reads(&input, read_size));
    }

    #[test]
    fn the_server_never_yields_bytes_not_sent(input in input(), read_size in read_size()) {
        check(&input, server_reads(&input, read_size));
    }

    #[test]
    fn random_bytes_at_the_acceptor_never_panic(input in prop::collection::vec(any::<u8>(), 0..64)) {
        runtime().block_on(async {
            let (mut client_end, server_end) = tokio::io::duplex(1024);
            client_end.write_all(&input).await.unwrap();
            client_end.shutdown().await.unwrap();
            let acceptor = Acceptor::new(Config::default());
            if let Ok(Accepted::New(session)) = acceptor.accept(server_end).await {
                let (data, result) = read_all(session, 4096).await;
                check(&input[30..], (data, result));
            }
            drop(client_end);
        });
    }
}

/// Control: the reference parser is not vacuous.
#[test]
fn the_reference_parser_sees_data_and_errors() {
    let mut input = vec![4, 0, 0, 0, 3, b'a', b'b', b'c', 7, 0, 0, 0, 0];
    assert_eq!(reference(&input), (b"abc".to_vec(), true));
    input[4] = 4;
    assert_eq!(reference(&input), (b"abc\x07".to_vec(), false));
    check(&input, client_reads(&input, 4096));
    let oversized = [4, 0, 0x10, 0, 1, 0];
    assert_eq!(reference(&oversized), (Vec::new(), false));
    check(&oversized, server_reads(&oversized, 4096));
}
