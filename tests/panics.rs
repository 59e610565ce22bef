//! Panicking handlers in bulk: 1000 panics per strategy, after which the server still serves
//! and its threads, descriptors, memory and counters are back where they were.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Once;

use socketserver::{Activity, Forking, Pool, Strategy, TcpServer, Threading};
use util::faulty::{echo, Faulty, ASKED};
use util::isolation::{alone, fork_lock, own_threads};
use util::{eventually, serve, tcp_client, PATIENCE};

/// The process's open descriptors (the directory's own descriptor not counted).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Keeps the 1000 expected panics off stderr; every other panic goes to the default hook.
fn quiet_asked_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let asked = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m == ASKED);
            if !asked {
                default(info);
            }
        }));
    });
}

/// The process's resident memory in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `count` panicking requests, four at a time, and checks each connection is closed.
fn send_panics(addr: std::net::SocketAddr, count: usize) {
    const AT_ONCE: usize = 4;
    for _ in 0..count / AT_ONCE {
        let clients: Vec<TcpStream> = (0..AT_ONCE)
            .map(|_| {
                let mut client = tcp_client(addr);
                client.write_all(b"panic\n").unwrap();
                client
            })
            .collect();
        for mut client in clients {
            // The server closes the connection after the panic.
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest);
            assert!(rest.is_empty());
        }
    }
}

/// 1000 panicking requests, four at a time: the server keeps serving, and threads, descriptors,
/// memory and counters come back to where they were.
fn thousand_panics<S: Strategy>(strategy: S) -> Activity {
    const PANICS: usize = 1000;
    // Before the memory baseline: the first requests set up allocator arenas and the panic
    // machinery once.
    const WARM_UP: usize = 40;
    // A leak of 4 KiB per request would show as 4 MiB.
    const RSS_SLACK_KIB: u64 = 4096;
    quiet_asked_panics();
    util::init();
    let threads = own_threads();
    let fds = open_fds();
    let server = TcpServer::<Faulty>::builder()
        .strategy(strategy)
        .bind("127.0.0.1:0")
        .unwrap();
    let activity = server.strategy().activity().unwrap();
    let running = serve(server);
    let addr = running.inet();
    send_panics(addr, WARM_UP);
    let rss = rss_kib();
    send_panics(addr, PANICS);
    assert_eq!(echo(addr, "still serving"), "still serving");
    let server = running.stop();
    assert!(eventually(PATIENCE, || {
        let stats = server.stats();
        stats.active == 0 && stats.open == 0
    }));
    assert_eq!(server.close().abandoned, 0);
    assert!(
        eventually(PATIENCE, || own_threads() <= threads),
        "threads: {} now, {threads} before",
        own_threads()
    );
    assert!(
        eventually(PATIENCE, || open_fds() <= fds),
        "descriptors: {} now, {fds} before",
        open_fds()
    );
    assert!(
        rss_kib() <= rss + RSS_SLACK_KIB,
        "memory: {} KiB now, {rss} KiB before {PANICS} panics",
        rss_kib()
    );
    assert_eq!(activity.failed(), (WARM_UP + PANICS) as u64);
    assert_eq!(activity.succeeded(), 1);
    assert_eq!(activity.active(), 0);
    assert_eq!(activity.tracked(), 0);
    activity
}

#[test]
fn threading_survives_a_thousand_panics() {
    let _alone = alone();
    thousand_panics(Threading::new());
}

#[test]
fn pool_survives_a_thousand_panics() {
    let _alone = alone();
    thousand_panics(Pool::new().workers(4));
}

#[test]
fn forking_survives_a_thousand_panics() {
    let _fork = fork_lock();
    thousand_panics(Forking::new());
}
