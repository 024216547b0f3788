//! examples/axum.rs with hyper-util's client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::harness::{wait_until_refused, Example, IO};

/// `GRACE` in examples/axum.rs.
const GRACE: Duration = Duration::from_secs(10);
/// How long the in-flight request takes.
const SLOW: Duration = Duration::from_millis(1500);

#[test]
fn axum_drains_a_request_in_flight_at_sigterm_and_refuses_new_connections() {
    let mut server = Example::start(
        "axum",
        &["127.0.0.1:0"],
        &[("RUST_LOG", "info,staunch=debug")],
    );
    let addr = server.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    // A plain request first: the router answers through staunch's loop.
    let body = rt.block_on(async {
        let get = client.get(format!("http://{addr}/").parse().unwrap());
        let response = tokio::time::timeout(IO, get).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap().to_bytes()
    });
    assert_eq!(body, "hello from axum behind staunch\n");

    // A slow request, on its own connection, in flight when the signal comes.
    let uri: hyper::Uri = format!("http://{addr}/slow/{}", SLOW.as_millis())
        .parse()
        .unwrap();
    let slow = rt.spawn({
        let client = client.clone();
        async move {
            let response = client.get(uri).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body, Instant::now())
        }
    });
    server.wait_stderr("slow request started", IO);
    // And a client that has connected but not sent a byte yet (given time to be accepted).
    let mut silent = std::net::TcpStream::connect_timeout(&addr, IO).unwrap();
    silent.set_read_timeout(Some(IO)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);

    // The listening socket closes at once, while the slow request is still running...
    let probes = wait_until_refused(addr);
    assert!(
        !slow.is_finished() && signalled.elapsed() < SLOW,
        "the port closed only after the slow request ended"
    );
    // ...and the slow request still completes, with its full response.
    let (status, body, done) = rt
        .block_on(async { tokio::time::timeout(GRACE, slow).await })
        .expect("the in-flight request did not complete")
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("slow request done after {} ms\n", SLOW.as_millis())
    );
    assert!(done.duration_since(signalled) < GRACE);

    // The silent client was closed at the signal, not left until the grace period ends.
    let mut nothing = Vec::new();
    let read = std::io::Read::read_to_end(&mut silent, &mut nothing);
    assert!(read.is_ok() && nothing.is_empty(), "{read:?} {nothing:?}");

    let exit = server.wait_exit(GRACE * 2);
    exit.assert_success();
    let report = exit.report();
    // Nothing was cut and nothing failed: the in-flight request, the idle keep-alive connection
    // and the silent one all ended within the grace period (hyper closes idle ones at once).
    assert_eq!(report.cancelled, 0, "{exit:?}");
    assert!(report.finished >= 1, "{exit:?}");
    // Including any probe of `wait_until_refused` the server accepted just before it closed
    // its port: a connection that ends before its first byte is not a failure.
    assert_eq!(
        report.totals["failed"], 0,
        "{exit:?} ({probes} probes connected)"
    );
    // The server exited as soon as the slow request was done, not at the end of the grace period.
    assert!(signalled.elapsed() < GRACE, "{exit:?}");
    drop(rt);
}

/// What one keep-alive HTTP/1.1 client saw, request by request.
#[derive(Debug, Default)]
struct Seen {
    /// Complete responses, slow ones among them.
    complete: u64,
    slow: u64,
    /// Requests that met the server's FIN (or reset) before a byte of response: sent on a
    /// connection the server was closing because it was idle (or had not yet read a byte from
    /// it). The server never started them; a client retries them safely.
    crossed_fin: u64,
    /// Responses cut part-way: the failure this test looks for.
    cut: Vec<String>,
    /// When the last complete response arrived.
    last_response: Option<Instant>,
    /// Whether it ended because the port was closed (rather than at its time limit).
    refused: bool,
}

/// Loop `GET path` over keep-alive connections until the server refuses a new one (or `until`).
fn keep_alive_client(addr: std::net::SocketAddr, path: &str, until: Instant) -> Seen {
    use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
    let mut seen = Seen::default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: staunch\r\n\r\n");
    'connect: while Instant::now() < until {
        let socket = match std::net::TcpStream::connect_timeout(&addr, IO) {
            Ok(socket) => socket,
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                seen.refused = true;
                break;
            }
            Err(e) => panic!("connect: {e}"),
        };
        socket.set_read_timeout(Some(IO)).unwrap();
        let mut writer = socket.try_clone().unwrap();
        let mut reader = BufReader::new(socket);
        while Instant::now() < until {
            if writer.write_all(request.as_bytes()).is_err() {
                seen.crossed_fin += 1;
                continue 'connect;
            }
            // The head, line by line.
            let mut head = String::new();
            let (mut length, mut close) = (None, false);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) if head.is_empty() => {
                        seen.crossed_fin += 1;
                        continue 'connect;
                    }
                    Ok(0) | Err(_) => {
                        seen.cut.push(format!("head cut: {head:?}"));
                        continue 'connect;
                    }
                    Ok(_) => {}
                }
                head.push_str(&line);
                let lower = line.to_ascii_lowercase();
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = Some(n.trim().parse::<usize>().unwrap());
                }
                close |= lower.starts_with("connection:") && lower.contains("close");
                if line == "\r\n" {
                    break;
                }
            }
            assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
            let mut body = vec![0; length.expect("content-length")];
            if let Err(e) = reader.read_exact(&mut body) {
                seen.cut.push(format!("body cut ({e}) after {head:?}"));
                continue 'connect;
            }
            seen.complete += 1;
            seen.slow += u64::from(body.starts_with(b"slow request done"));
            seen.last_response = Some(Instant::now());
            if close {
                continue 'connect; // told to go: reconnect (refused once the port closes)
            }
        }
    }
    seen
}

#[test]
fn axum_cuts_no_request_under_keep_alive_load_at_sigint() {
    const SLOW_CLIENTS: usize = 24;
    const FAST_CLIENTS: usize = 8;
    let server = Example::start("axum", &["127.0.0.1:0"], &[("RUST_LOG", "info")]);
    let addr = server.addr();
    let until = Instant::now() + Duration::from_secs(8);
    let clients: Vec<_> = (0..SLOW_CLIENTS + FAST_CLIENTS)
        .map(|i| {
            let path = if i < SLOW_CLIENTS { "/slow/300" } else { "/" };
            std::thread::spawn(move || keep_alive_client(addr, path, until))
        })
        .collect();
    // Load for a while (each slow client has had about three requests), then SIGINT.
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let exit = server.wait_exit(GRACE * 2);
    let exited = Instant::now();
    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    exit.assert_success();

    // Every client was told to close (`Connection: close` after its request in flight) and then
    // refused, long before its time limit: nothing waited for the grace period.
    assert!(seen.iter().all(|s| s.refused), "{seen:?}");
    assert!(
        exited.duration_since(signalled) < Duration::from_millis(300) + Duration::from_secs(1),
        "exited {:?} after the signal",
        exited.duration_since(signalled)
    );
    let cut: Vec<&String> = seen.iter().flat_map(|s| &s.cut).collect();
    assert!(cut.is_empty(), "cut requests: {cut:?}\n{exit:?}");
    let report = exit.report();
    assert_eq!(report.cancelled, 0, "{exit:?}");
    assert_eq!(report.totals["failed"], 0, "{exit:?}");
    // Every slow request the server started was answered in full: none was cut, and those that
    // crossed a FIN were never started.
    let started = exit
        .stderr
        .iter()
        .filter(|l| l.contains("slow request started"))
        .count() as u64;
    let slow: u64 = seen.iter().map(|s| s.slow).sum();
    assert_eq!(started, slow, "{exit:?}");
    assert!(slow >= SLOW_CLIENTS as u64 * 2, "too little load: {seen:?}");
    assert!(seen.iter().all(|s| s.last_response.is_some()), "{seen:?}");
    let last = seen.iter().filter_map(|s| s.last_response).max().unwrap();
    let crossed: u64 = seen.iter().map(|s| s.crossed_fin).sum();
    assert!(
        exited.duration_since(last) < Duration::from_secs(1),
        "exited {:?} after the last response ({:?} after the signal; {crossed} requests \
         crossed a FIN)",
        exited.duration_since(last),
        exited.duration_since(signalled)
    );
    eprintln!(
        "axum under load: {slow} slow and {} fast responses, {crossed} crossed a FIN, exit {:?} \
         after the signal and {:?} after the last response",
        seen.iter().map(|s| s.complete).sum::<u64>() - slow,
        exited.duration_since(signalled),
        exited.duration_since(last)
    );
}
