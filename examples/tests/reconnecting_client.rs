//! The `reconnecting_client` example keeps echoing lines across a restart of the server (an
//! in-test echo server on 127.0.0.1), prints its state changes, and exits when stdin ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Build the example with this test's profile and return the executable cargo reports.
fn build_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = match exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|p| p.file_name())
        .and_then(|p| p.to_str())
    {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--example",
            "reconnecting_client",
            "--profile",
            &profile,
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .find_map(|l| {
            let start = l.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .expect("cargo reported no executable")
}

fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(16).unwrap()
}

/// An echo server; aborting its task drops the listener and every connection.
async fn echo_server(listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        let (mut stream, _) = listener.accept().await.unwrap();
        connections.spawn(async move {
            let mut buf = [0; 1024];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

#[tokio::test]
async fn the_example_client_survives_a_server_restart() {
    let exe = tokio::task::spawn_blocking(build_example).await.unwrap();
    timeout(Duration::from_secs(60), async {
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(echo_server(listener));

        let mut child = tokio::process::Command::new(exe)
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();

        stdin.write_all(b"one\n").await.unwrap();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("one"));

        server.abort();
        let _ = server.await;
        stdin.write_all(b"two\n").await.unwrap();
        let _server = tokio::spawn(echo_server(listen(addr)));
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("two"));

        drop(stdin); // end of input: the client exits by itself
        let status = child.wait().await.unwrap();
        let mut log = String::new();
        stderr.read_to_string(&mut log).await.unwrap();
        assert!(status.success(), "{status}: {log}");
        assert!(log.contains("Connected { generation: 2 }"), "{log}");
        assert_eq!(stdout.next_line().await.unwrap(), None);
    })
    .await
    .unwrap();
}
