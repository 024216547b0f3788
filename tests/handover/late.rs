//! A new process that comes late, after its offer was given up, does not take the sockets
//! meant for the next one.

use std::os::fd::AsFd as _;
use std::time::Duration;

use staunch::handover::{take_over, Handover, HandoverError};
use tokio::net::TcpListener;
use tokio::time::timeout;

use crate::library::socket_path;

const IO: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_successor_with_a_voided_ticket_is_turned_away() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = [("web", tcp.as_fd())];
    let handover = Handover::bind(socket_path("late")).unwrap();

    // The first offer is given up: its process did not come in time.
    let late_ticket = handover.ticket();
    let given_up = timeout(Duration::from_millis(50), handover.offer(&sockets)).await;
    assert!(given_up.is_err(), "{given_up:?}");

    // Its process connects now, before the next offer starts: it waits in the backlog of the
    // control socket, first in line.
    let late = tokio::spawn(async move { take_over(&late_ticket).await });
    tokio::task::yield_now().await;
    // The next process, started for the next offer.
    let ticket = handover.ticket();
    let next = async {
        // After the late one, so that the offer meets the late one first.
        while !late.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (mut listeners, ready) = take_over(&ticket).await.unwrap();
        listeners.take_tcp("web").unwrap();
        ready.ready().await.unwrap();
    };
    let (offered, ()) = timeout(IO, async { tokio::join!(handover.offer(&sockets), next) })
        .await
        .unwrap();
    offered.unwrap();
    let late = late.await.unwrap();
    assert!(
        matches!(late, Err(HandoverError::StaleTicket)),
        "{:?}",
        late.map(|(listeners, _)| listeners)
    );
}

#[tokio::test]
async fn control_the_current_ticket_is_served_after_a_given_up_offer() {
    // Same sequence, no new ticket: the late process is the one the offer serves.
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = [("web", tcp.as_fd())];
    let handover = Handover::bind(socket_path("late-control")).unwrap();
    let ticket = handover.ticket();
    let given_up = timeout(Duration::from_millis(50), handover.offer(&sockets)).await;
    assert!(given_up.is_err(), "{given_up:?}");
    let late = async {
        let (mut listeners, ready) = take_over(&ticket).await.unwrap();
        listeners.take_tcp("web").unwrap();
        ready.ready().await.unwrap();
    };
    let (offered, ()) = timeout(IO, async { tokio::join!(handover.offer(&sockets), late) })
        .await
        .unwrap();
    offered.unwrap();
}

#[tokio::test]
async fn an_offer_needs_a_ticket_and_a_ticket_serves_one_process() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = [("web", tcp.as_fd())];
    let handover = Handover::bind(socket_path("no-ticket")).unwrap();
    let err = handover.offer(&sockets).await.unwrap_err();
    assert!(err.to_string().contains("no ticket"), "{err}");

    let ticket = handover.ticket();
    let first = async {
        let (_listeners, ready) = take_over(&ticket).await.unwrap();
        ready.ready().await.unwrap();
    };
    let (offered, ()) = timeout(IO, async { tokio::join!(handover.offer(&sockets), first) })
        .await
        .unwrap();
    offered.unwrap();
    let err = handover.offer(&sockets).await.unwrap_err();
    assert!(err.to_string().contains("no ticket"), "{err}");

    let err = take_over("no-space-here").await.unwrap_err();
    assert!(matches!(err, HandoverError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn processes_that_say_nothing_do_not_hold_up_the_offer() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = [("web", tcp.as_fd())];
    let handover = Handover::bind(socket_path("silent")).unwrap();
    let ticket = handover.ticket();
    // Three connect first and say nothing: each gets 10 s to present a ticket, side by side.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            tokio::net::UnixStream::connect(handover.path())
                .await
                .unwrap(),
        );
    }
    let successor = async {
        let (_listeners, ready) = take_over(&ticket).await.unwrap();
        ready.ready().await.unwrap();
    };
    // Well under the 10 s one silent process is given, let alone three in turn.
    let (offered, ()) = timeout(Duration::from_secs(5), async {
        tokio::join!(handover.offer(&sockets), successor)
    })
    .await
    .expect("the offer waited for the silent ones");
    offered.unwrap();
    drop(silent);
}

#[tokio::test]
async fn a_used_ticket_is_turned_away_at_once() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sockets = [("web", tcp.as_fd())];
    let handover = Handover::bind(socket_path("used")).unwrap();
    let ticket = handover.ticket();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let first = async {
        let (_listeners, ready) = take_over(&ticket).await.unwrap();
        // A second process with the same ticket, while the offer waits for the first's ready.
        let second = timeout(IO, take_over(&ticket))
            .await
            .expect("turned away at once");
        assert!(
            matches!(second, Err(HandoverError::StaleTicket)),
            "{:?}",
            second.map(|(listeners, _)| listeners)
        );
        let _ = ready_tx.send(());
        ready.ready().await.unwrap();
    };
    let (offered, ()) = timeout(IO, async { tokio::join!(handover.offer(&sockets), first) })
        .await
        .unwrap();
    offered.unwrap();
    ready_rx.await.unwrap();
    // And once the offer is over, with no offer running.
    let third = timeout(IO, take_over(&ticket))
        .await
        .expect("turned away at once");
    assert!(
        matches!(third, Err(HandoverError::StaleTicket)),
        "{:?}",
        third.map(|(listeners, _)| listeners)
    );
}
