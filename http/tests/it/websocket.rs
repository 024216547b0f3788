//! A real WebSocket (axum's `WebSocketUpgrade`, a tokio-tungstenite client) through a
//! shutdown: a handler that watches its connection's `Conn` closes with a Close frame at the
//! signal; one that does not is cut at the deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::Extension;
use axum::routing::get;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use staunch::listen::Conn;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode};
use tokio_tungstenite::WebSocketStream;

use crate::support::{bounded, start, IO};

type Ended = mpsc::UnboundedSender<Result<(), axum::Error>>;

/// `/ws` echoes text messages. A handler that `listens` sends a Close frame (1001, going away)
/// when its connection starts draining, then waits for the client's answer. Each reports how
/// its session ended.
fn app(listens: bool, ended: Ended) -> Router {
    let handler = move |ws: WebSocketUpgrade, Extension(conn): Extension<Arc<Conn>>| {
        let ended = ended.clone();
        async move {
            ws.on_upgrade(move |socket| async move {
                let _ = ended.send(session(socket, &conn, listens).await);
            })
        }
    };
    Router::new().route("/ws", get(handler))
}

async fn session(mut socket: WebSocket, conn: &Conn, listens: bool) -> Result<(), axum::Error> {
    loop {
        tokio::select! {
            message = socket.recv() => match message.transpose()? {
                Some(Message::Text(text)) => socket.send(Message::Text(text)).await?,
                Some(Message::Close(_)) | None => return Ok(()),
                Some(_) => {}
            },
            () = conn.draining(), if listens => {
                let frame = CloseFrame {
                    code: close_code::AWAY,
                    reason: "shutting down".into(),
                };
                socket.send(Message::Close(Some(frame))).await?;
                // The client answers with its own Close; then the socket is dropped.
                while socket.recv().await.transpose()?.is_some() {}
                return Ok(());
            }
        }
    }
}

/// A WebSocket client on a new connection, checked to echo.
async fn connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, response) = bounded(
        IO,
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), tcp),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(tungstenite::Message::text("ping")).await.unwrap();
    let echo = bounded(IO, ws.next()).await.unwrap().unwrap();
    assert_eq!(echo, tungstenite::Message::text("ping"));
    ws
}

#[tokio::test]
async fn a_websocket_that_watches_its_conn_gets_a_close_frame_at_the_signal() {
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let server = start(|l, stop| {
        staunch_http::serve(l, app(true, ended_tx))
            .conn_extension(true)
            .with_graceful_shutdown(stop)
            .grace(Duration::from_secs(10))
    })
    .await;
    let mut ws = connect(server.addr).await;
    assert_eq!(server.stats.snapshot().active, 1);

    let started = Instant::now();
    let report = tokio::spawn(server.shutdown());
    // (Were the handler deaf to the drain, nothing would come before the 10 s deadline.)
    match bounded(IO, ws.next()).await.unwrap().unwrap() {
        tungstenite::Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Away);
            assert_eq!(frame.reason, "shutting down");
        }
        other => panic!("expected a Close frame, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Reading on sends the client's answering Close; the server then drops the socket.
    assert!(bounded(IO, ws.next()).await.is_none());
    bounded(IO, ended.recv()).await.unwrap().unwrap();
    let report = bounded(IO, report).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{report}");
    assert_eq!((report.ended, report.cancelled), (1, 0), "{report}");
}

#[tokio::test]
async fn a_websocket_that_ignores_the_shutdown_is_cut_at_the_deadline() {
    const GRACE: Duration = Duration::from_millis(500);
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let server = start(|l, stop| {
        staunch_http::serve(l, app(false, ended_tx))
            .conn_extension(true)
            .with_graceful_shutdown(stop)
            .grace(GRACE)
    })
    .await;
    let mut ws = connect(server.addr).await;

    let started = Instant::now();
    let report = tokio::spawn(server.shutdown());
    // No Close frame: the TCP connection just ends (tungstenite: reset without a closing
    // handshake), at the deadline.
    let end = bounded(GRACE + IO, ws.next()).await;
    assert!(
        matches!(
            end,
            None | Some(Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
            ))) | Some(Err(tungstenite::Error::Io(_)))
        ),
        "{end:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= GRACE - Duration::from_millis(20) && elapsed < GRACE + Duration::from_secs(1),
        "{elapsed:?}"
    );
    // The handler's read failed with the cut.
    let error = bounded(IO, ended.recv()).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("cut by the listener"), "{error}");
    let report = bounded(IO, report).await.unwrap();
    assert_eq!((report.ended, report.cancelled), (0, 1), "{report}");
}
