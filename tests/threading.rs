//! The `Threading` strategy over real sockets: every transport, on named threads; 50 clients
//! at once; closing with and without a deadline, and daemon threads; reaping and reusing its
//! threads; panicking handlers. Ported in spirit from CPython's `test_socketserver`
//! (`ThreadingMixIn` servers, and `test_threads_reaped` for bpo-37193). The handler the
//! strategies' tests share is in tests/util/lab.rs.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socketserver::{Strategy, Threading, ThreadingTcpServer, UdpServer};
use util::isolation::{alone, own_threads, shared};
use util::lab::{every_transport, fifty_at_once, hold, lab_server, read_reply, report, Line};
use util::{ask, eventually, serve, udp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Every transport, and many clients at once

#[test]
fn threading_serves_every_transport_on_named_threads() {
    let _shared = shared();
    let names = every_transport(Threading::new);
    assert_eq!(names, ["socketserver-handler\n"]);
}

#[test]
fn threading_answers_50_clients_connected_at_once() {
    let _shared = shared();
    let running = serve(
        ThreadingTcpServer::<Line>::builder()
            .handle_error(report)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    fifty_at_once(running.inet());
    let report = running.stop().close();
    assert_eq!(report.abandoned, 0);
}

// ---------------------------------------------------------------------------------------------
// Closing: waiting for requests in flight, and giving up on them at the deadline

#[test]
fn threading_close_waits_for_20_requests_in_flight() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), None);
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    // 20 handlers at once, each on its own thread.
    let mut clients = hold(running.inet(), &lab, 20, 20);
    let server = running.stop();
    assert_eq!(activity.active(), 20);
    let closer = thread::spawn(move || {
        let report = server.close();
        (report, activity.active())
    });
    lab.release(20);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    let (report, active_after) = closer.join().unwrap();
    assert_eq!((report.completed, report.abandoned), (20, 0));
    assert_eq!(
        active_after, 0,
        "close returned only after every handler ended"
    );
}

#[test]
fn threading_close_timeout_abandons_stuck_handlers_and_reports_them() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), Some(Duration::from_millis(100)));
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 3, 3);
    let started = Instant::now();
    let report = running.stop().close();
    assert!(
        started.elapsed() < PATIENCE,
        "close took {:?}",
        started.elapsed()
    );
    assert_eq!((report.completed, report.abandoned), (0, 3));
    // The abandoned handlers were left to finish on their own.
    lab.release(3);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

#[test]
fn daemon_threads_are_not_tracked_and_not_waited_for() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new().daemon_threads(true), None);
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 2, 2);
    assert_eq!((activity.active(), activity.tracked()), (2, 0));
    // No close_timeout, yet close returns at once.
    let report = running.stop().close();
    assert_eq!((report.completed, report.abandoned), (0, 2));
    lab.release(2);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping stays flat (bpo-37193)

/// Threads whose name starts with `prefix` (Linux cuts names to 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[test]
fn threading_reaps_its_threads_over_1000_connections() {
    let _alone = alone();
    let baseline = own_threads();
    let (server, _lab) = lab_server(
        Threading::new().idle_thread_timeout(Duration::from_millis(100)),
        None,
    );
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let addr = running.inet();
    // Four clients at a time, 250 connections each; each notes how many threads the strategy
    // holds after its request.
    let most_tracked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let most_tracked = Arc::clone(&most_tracked);
            let activity = activity.clone();
            thread::spawn(move || {
                for i in 0..250 {
                    let line = format!("{c}-{i}");
                    assert_eq!(ask(addr, &line), format!("{line}\n"));
                    most_tracked.fetch_max(activity.tracked(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // A thread counts its request after the client has its answer.
    assert!(eventually(PATIENCE, || activity.succeeded() == 1000));
    let most = most_tracked.load(Ordering::SeqCst);
    assert!(
        most < 50,
        "up to {most} threads tracked for 4 clients at a time"
    );
    // Ended after the idle timeout and reaped while the server idles, not only when it closes.
    assert!(
        eventually(PATIENCE, || activity.tracked() == 0
            && activity.active() == 0),
        "{activity:?}"
    );
    let report = running.stop().close();
    assert_eq!(report, Default::default());
    assert!(
        eventually(PATIENCE, || threads_named("socketserver-ha") == 0),
        "handler threads left"
    );
    assert!(
        eventually(PATIENCE, || own_threads() <= baseline),
        "{} threads, {baseline} before",
        own_threads()
    );
}

/// A thread that finished a request takes the next one; with `max_idle_threads(0)` every
/// request gets a new thread, as in Python.
#[test]
fn threading_reuses_finished_threads_unless_told_not_to() {
    let _shared = shared();
    let (server, _lab) = lab_server(Threading::new(), None);
    let running = serve(server);
    let addr = running.inet();
    // A request may come before the last thread is back waiting (then it gets a new thread,
    // and later requests may alternate between the two); but soon one runs on a thread that
    // ran an earlier request. Thread ids are never reused, so only reuse can repeat one.
    let mut seen = std::collections::HashSet::new();
    assert!(
        eventually(PATIENCE, || !seen.insert(ask(addr, "thread"))),
        "every request ran on a new thread: {seen:?}"
    );
    running.stop().close();

    let (server, _lab) = lab_server(Threading::new().max_idle_threads(0), None);
    let running = serve(server);
    let addr = running.inet();
    let threads: std::collections::HashSet<String> = (0..20).map(|_| ask(addr, "thread")).collect();
    assert_eq!(threads.len(), 20, "{threads:?}");
    running.stop().close();
}

/// After a burst, a trickle of requests keeps one thread busy, not all of them: the thread
/// that finished last takes the next request, and the others time out.
#[test]
fn threading_lets_spare_threads_time_out_under_a_trickle() {
    let _shared = shared();
    let (server, lab) = lab_server(
        Threading::new().idle_thread_timeout(Duration::from_millis(200)),
        None,
    );
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let addr = running.inet();
    let mut clients = hold(addr, &lab, 6, 6);
    lab.release(6);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    // Requests one after the other, far more often than the idle timeout: taking turns, all
    // six threads would stay alive.
    assert!(
        eventually(PATIENCE, || {
            assert_eq!(ask(addr, "trickle"), "trickle\n");
            activity.tracked() <= 2
        }),
        "{activity:?}"
    );
    running.stop().close();
}

/// At most `max_idle_threads` wait for a request, and closing ends them at once, however long
/// they would still wait.
#[test]
fn threading_keeps_at_most_max_idle_threads_and_close_ends_them() {
    let _alone = alone();
    let (server, lab) = lab_server(
        Threading::new()
            .max_idle_threads(2)
            .idle_thread_timeout(PATIENCE * 6),
        None,
    );
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 6, 6);
    // Six at least: handler threads of an earlier test may still be ending.
    assert!(threads_named("socketserver-ha") >= 6);
    lab.release(6);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    // Four threads end; two wait for the next request.
    assert!(
        eventually(PATIENCE, || activity.tracked() == 2
            && threads_named("socketserver-ha") == 2),
        "{activity:?}, {} threads",
        threads_named("socketserver-ha")
    );
    let server = running.stop();
    let started = Instant::now();
    let report = server.close();
    assert!(
        started.elapsed() < PATIENCE,
        "close waited {:?} for idle threads",
        started.elapsed()
    );
    // The two waiting threads' requests may have ended after the loop last looked, so
    // `completed` can count them; nothing was left running.
    assert_eq!(report.abandoned, 0);
    assert_eq!(activity.tracked(), 0);
    assert!(
        eventually(PATIENCE, || threads_named("socketserver-ha") == 0),
        "waiting threads outlived close"
    );
}

// ---------------------------------------------------------------------------------------------
// Panicking handlers: reported, and the next request is served

#[test]
fn threading_panicking_handler_is_reported_and_the_next_request_served() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), None);
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    assert_eq!(ask(running.inet(), "panic"), "");
    assert!(lab.next_error().contains("panicked: told to panic"));
    assert_eq!(ask(running.inet(), "fail"), "");
    assert!(lab.next_error().contains("told to fail"));
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert!(eventually(PATIENCE, || activity.finished() == 3));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 2));
    running.stop().close();
}

#[test]
fn threading_panicking_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _shared = shared();
    let server = UdpServer::<Line>::builder()
        .handle_error(report)
        .strategy(Threading::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    let running = serve(server);
    let client = udp_client(running.inet());
    client.send_to(b"panic", running.inet()).unwrap();
    assert!(lab.next_error().contains("panicked: told to panic"));
    client.send_to(b"next", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next", "no reply to the panicking datagram");
    running.stop().close();
}
