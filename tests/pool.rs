//! The `Pool` strategy over real sockets: every transport, on named workers; its concurrency
//! limit, with 50 clients at once and with held requests; closing with its queue full, with and
//! without a deadline; panicking handlers, which do not shrink the pool. The handler the
//! strategies' tests share is in tests/util/lab.rs.

mod util;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use socketserver::{Pool, Strategy, TcpServer, UnixDatagramServer};
use util::isolation::shared;
use util::lab::{every_transport, fifty_at_once, hold, lab_server, read_reply, report, Line};
use util::{ask, eventually, serve, temp_dir, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Every transport, and the concurrency limit

#[test]
fn pool_serves_every_transport_on_named_workers() {
    let _shared = shared();
    let names = every_transport(|| Pool::new().workers(2));
    assert!(
        names[0].starts_with("socketserver-pool-"),
        "served by {names:?}"
    );
}

#[test]
fn pool_of_4_answers_50_clients_connected_at_once_in_turn() {
    let _shared = shared();
    // Each request needs only its own client's line, which is sent whether or not the request
    // was accepted yet (the kernel queues it), so a small pool serves them all in turn.
    let running = serve(
        TcpServer::<Line>::builder()
            .handle_error(report)
            .strategy(Pool::new().workers(4).queue(4))
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    fifty_at_once(running.inet());
    let server = running.stop();
    assert!(server.state().peak() <= 4, "peak {}", server.state().peak());
    assert_eq!(server.strategy().activity().unwrap().started(), 50);
    assert_eq!(server.close().abandoned, 0);
}

#[test]
fn pool_of_2_never_runs_more_than_2_handlers_at_once() {
    let _shared = shared();
    let (server, lab) = lab_server(Pool::new().workers(2).queue(1), None);
    let running = serve(server);
    let addr = running.inet();
    let clients: Vec<_> = (0..10)
        .map(|_| thread::spawn(move || ask(addr, "hold")))
        .collect();
    // Release one held request whenever two run, so that the pool is kept full: it must reach
    // two, and the handlers' own count must never see more.
    let (mut entered, mut released) = (0, 0);
    while released < 10 {
        if entered - released < 2 && entered < 10 {
            lab.wait_entered(1);
            entered += 1;
        } else {
            lab.release(1);
            released += 1;
        }
    }
    for client in clients {
        assert_eq!(client.join().unwrap(), "held\n");
    }
    assert_eq!(lab.peak(), 2, "the most handlers running at once");
    let server = running.stop();
    let activity = server.strategy().activity().unwrap();
    assert!(eventually(PATIENCE, || activity.succeeded() == 10));
    assert_eq!(server.close().abandoned, 0);
}

// ---------------------------------------------------------------------------------------------
// Closing: waiting for queued and running requests, and giving up on them at the deadline

#[test]
fn pool_close_waits_for_queued_and_running_requests() {
    let _shared = shared();
    let (server, lab) = lab_server(Pool::new().workers(4).queue(16), None);
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    // 4 run, 16 wait in the queue.
    let mut clients = hold(running.inet(), &lab, 20, 4);
    assert!(eventually(PATIENCE, || activity.started() == 20));
    let server = running.stop();
    assert_eq!(server.strategy().queued(), 16);
    let closer = thread::spawn(move || server.close());
    lab.release(20);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    let report = closer.join().unwrap();
    assert_eq!((report.completed, report.abandoned), (20, 0));
    assert_eq!(lab.peak(), 4);
}

#[test]
fn pool_close_timeout_drops_queued_requests_and_abandons_running_ones() {
    let _shared = shared();
    let (server, lab) = lab_server(
        Pool::new().workers(2).queue(2),
        Some(Duration::from_millis(100)),
    );
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 4, 2);
    assert!(eventually(PATIENCE, || activity.started() == 4));
    let report = running.stop().close();
    assert_eq!((report.completed, report.abandoned), (0, 4));
    lab.release(2);
    let mut replies: Vec<String> = clients
        .iter_mut()
        .map(|client| {
            let mut reply = String::new();
            // A dropped request's connection is closed with its line unread: end-of-file or a
            // reset, and no reply either way.
            let _ = client.read_to_string(&mut reply);
            reply
        })
        .collect();
    replies.sort();
    assert_eq!(replies, ["", "", "held\n", "held\n"]);
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

// ---------------------------------------------------------------------------------------------
// Panicking handlers: reported, and the next request is served

#[test]
fn pool_panicking_handler_is_reported_and_does_not_shrink_the_pool() {
    let _shared = shared();
    // One worker: the next request is served only if the worker survived the panic.
    let (server, lab) = lab_server(Pool::new().workers(1), None);
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    for _ in 0..3 {
        assert_eq!(ask(running.inet(), "panic"), "");
        assert!(lab.next_error().contains("panicked: told to panic"));
    }
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert_eq!(activity.tracked(), 1, "one worker, still");
    assert!(eventually(PATIENCE, || activity.finished() == 4));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 3));
    running.stop().close();
}

#[test]
fn pool_panicking_unix_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _shared = shared();
    let dir = temp_dir();
    let server = UnixDatagramServer::<Line>::builder()
        .handle_error(report)
        .strategy(Pool::new().workers(1))
        .bind(dir.path().join("server.sock"))
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    let running = serve(server);
    let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"panic", running.path()).unwrap();
    assert!(lab.next_error().contains("panicked: told to panic"));
    client.send_to(b"next", running.path()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next");
    running.stop().close();
}
