//! Idle keep-alive connections are parked in the serving loop between requests (issue 17):
//! a pool of a few workers answers hundreds of keep-alive clients, a serial server is not held
//! by one, idle ones close at their timeout and at a stop, and TLS connections park too.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socketserver::http::{Http, HttpHandler, Limits, Request, Response};
use socketserver::{Handler, Pool, Serial, ServerContext, TcpServer, Threading, Waited};

#[derive(Handler)]
struct Hello;

impl HttpHandler for Hello {
    fn respond(&mut self, request: &Request, server: &ServerContext) -> Response {
        if request.path() == "/stats" {
            let stats = server.stats();
            return Response::text(200, format!("parked={} open={}", stats.parked, stats.open));
        }
        Response::text(200, format!("hello {}", request.path()))
    }
}

/// Closes idle connections after a second.
#[derive(Handler)]
struct Brief;

impl HttpHandler for Brief {
    fn respond(&mut self, _request: &Request, _server: &ServerContext) -> Response {
        Response::text(200, "brief")
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.timeout = Some(Duration::from_secs(1));
        limits
    }
}

/// A buffered client whose reads fail after `util::PATIENCE`.
fn connect(address: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(util::tcp_client(address))
}

fn send(client: &mut BufReader<TcpStream>, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    client
        .get_mut()
        .write_all(request.as_bytes())
        .expect("send a request");
}

/// Reads one response; its status line and body, or `None` at end-of-file or timeout.
fn response(client: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut status = String::new();
    if client.read_line(&mut status).ok()? == 0 {
        return None;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if client.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    client.read_exact(&mut body).ok()?;
    Some((status.trim_end().to_owned(), String::from_utf8(body).ok()?))
}

#[test]
fn a_pool_of_default_size_answers_every_one_of_many_keep_alive_clients() {
    const CLIENTS: usize = 300;
    let pool = Pool::default();
    let workers = pool.size();
    let server = TcpServer::<Http<Hello>, Pool>::builder()
        .strategy(pool)
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect(running.inet())).collect();
    for client in &clients {
        let timeout = Some(Duration::from_secs(5));
        client.get_ref().set_read_timeout(timeout).expect("timeout");
    }
    // Two rounds: every client's first request, then every client's second on the same
    // connection, each sent while all the other clients hold their connections open.
    let mut answered = [0usize; 2];
    for (round, count) in answered.iter_mut().enumerate() {
        for (i, client) in clients.iter_mut().enumerate() {
            send(client, &format!("/{round}/{i}"));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let expected = Some(("HTTP/1.1 200 OK".into(), format!("hello /{round}/{i}")));
            // One unanswered client (5 s) ends the round: the others would wait as long.
            if response(client) != expected {
                break;
            }
            *count += 1;
        }
    }
    println!(
        "{CLIENTS} keep-alive clients on a pool of {workers} workers: answered {answered:?} \
         (bound {CLIENTS} each round)"
    );
    assert_eq!(answered, [CLIENTS; 2]);
    let server = running.stop();
    let started = Instant::now();
    let report = server.close();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close waited for idle clients: {report:?}"
    );
    for client in &mut clients {
        let mut rest = Vec::new();
        assert_eq!(
            client.read_to_end(&mut rest).expect("end of file"),
            0,
            "a parked connection is closed when the server closes"
        );
    }
}

#[test]
fn a_pools_workers_serve_parked_connections_while_the_loop_does_not_run() {
    // The pool takes the parked connections itself (leader/follower): its idle workers wait
    // for their next requests, so nothing goes through the serving loop. Here the loop runs
    // only for the first request (`handle_request`); the next ones are answered all the same.
    let mut server = TcpServer::<Http<Hello>, Pool>::bind("127.0.0.1:0").expect("bind");
    let address = server.server_address().as_inet().expect("an inet address");
    let mut client = connect(address);
    send(&mut client, "/0");
    assert_eq!(
        server.handle_request().expect("handle_request"),
        Waited::Handled
    );
    assert_eq!(
        response(&mut client).map(|r| r.1).as_deref(),
        Some("hello /0")
    );
    for i in 1..4 {
        send(&mut client, &format!("/{i}"));
        assert_eq!(
            response(&mut client).map(|r| r.1),
            Some(format!("hello /{i}")),
            "request {i} on the parked connection, with no serving loop running"
        );
    }
    // Each request is counted as its worker finishes, which may be just after its reply.
    let counted = util::eventually(util::PATIENCE, || server.stats().succeeded == 4);
    assert!(counted, "{:?}", server.stats());
    server.close();
    let mut rest = Vec::new();
    assert!(
        matches!(client.read_to_end(&mut rest), Ok(0)),
        "closed with the server"
    );
}

#[test]
fn new_clients_are_not_starved_by_keep_alive_clients_that_are_always_ready() {
    // One worker; BUSY keep-alive clients send their next request as soon as they have an
    // answer, so some parked connection is always ready. NEW clients then arrive at once. The
    // worker must take queued new connections in turn with the ready parked ones: before it
    // did, the queue's notifications were one item among the ready connections, and each new
    // client waited for a round of all the busy ones (about BUSY x NEW busy requests in all).
    // Counted in requests, not time, so a slow machine cannot fail it.
    const BUSY: usize = 40;
    const NEW: usize = 40;
    // A queue with room for every new client, so that the serving loop takes them all as
    // soon as it runs: how fast a loaded machine schedules the loop does not enter the count.
    let server = TcpServer::<Http<Hello>, Pool>::builder()
        .strategy(Pool::new().workers(1).queue(BUSY + NEW))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    let served = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..BUSY)
        .map(|i| {
            let (served, done) = (Arc::clone(&served), Arc::clone(&done));
            let mut client = connect(address);
            thread::spawn(move || {
                // Bounded: at most 100,000 requests each, and each read by PATIENCE.
                for _ in 0..100_000 {
                    if done.load(Ordering::Relaxed) {
                        return true;
                    }
                    send(&mut client, &format!("/busy/{i}"));
                    if response(&mut client).is_none() {
                        return false;
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
                true
            })
        })
        .collect();
    // Every busy client is going before the new ones come.
    assert!(util::eventually(util::PATIENCE, || served
        .load(Ordering::Relaxed)
        >= 10 * BUSY as u64));
    let mut new: Vec<_> = (0..NEW).map(|_| connect(address)).collect();
    let before = served.load(Ordering::Relaxed);
    for (i, client) in new.iter_mut().enumerate() {
        send(client, &format!("/new/{i}"));
    }
    for (i, client) in new.iter_mut().enumerate() {
        assert_eq!(
            response(client).map(|r| r.1),
            Some(format!("hello /new/{i}")),
            "new client {i}"
        );
    }
    let meanwhile = served.load(Ordering::Relaxed) - before;
    done.store(true, Ordering::Relaxed);
    for client in busy {
        assert!(
            client.join().expect("busy client"),
            "a busy client went unanswered"
        );
    }
    let bound = 5 * (BUSY + NEW) as u64;
    println!(
        "{NEW} new clients answered while {BUSY} busy ones were served {meanwhile} times \
         (bound {bound}; about {} when new clients waited for rounds of the busy ones)",
        BUSY * NEW
    );
    assert!(
        meanwhile <= bound,
        "{meanwhile} busy requests before {NEW} new clients were answered"
    );
    running.stop().close();
}

#[test]
fn a_serial_server_answers_a_second_client_while_the_first_keeps_alive() {
    let server = TcpServer::<Http<Hello>, Serial>::bind("127.0.0.1:0").expect("bind");
    let running = util::serve(server);
    let mut first = connect(running.inet());
    send(&mut first, "/first");
    assert_eq!(
        response(&mut first).map(|r| r.1).as_deref(),
        Some("hello /first")
    );
    // The first client keeps its connection open and says nothing (the keep-alive timeout
    // is 30 s). Python's http.client is the second client.
    let started = Instant::now();
    let output = Command::new("python3")
        .args([
            "-c",
            "import http.client, sys\n\
             c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10)\n\
             c.request('GET', '/second')\n\
             r = c.getresponse()\n\
             print(r.status, r.read().decode())",
            &running.inet().port().to_string(),
        ])
        .output()
        .expect("python3");
    let took = started.elapsed();
    println!("second client answered in {took:?} while the first kept alive");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "200 hello /second",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The first connection was parked, not closed: it is served again.
    send(&mut first, "/again");
    assert_eq!(
        response(&mut first).map(|r| r.1).as_deref(),
        Some("hello /again")
    );
    running.stop().close();
}

#[test]
fn a_parked_connection_is_closed_at_its_idle_timeout() {
    let server = TcpServer::<Http<Brief>, Pool>::bind("127.0.0.1:0").expect("bind");
    let running = util::serve(server);
    let mut client = connect(running.inet());
    send(&mut client, "/");
    assert!(response(&mut client).is_some());
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = client.read_to_end(&mut rest);
    let took = started.elapsed();
    println!("idle connection closed after {took:?} (timeout 1 s)");
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "closed too late: {took:?}");
    let server = running.stop();
    assert_eq!(server.stats().open, 0, "{:?}", server.stats());
    server.close();
}

#[test]
fn a_parked_connection_holds_its_place_under_max_connections_until_it_closes() {
    // The cap counts open connections, parked or busy: a parked client still has its place.
    let server = TcpServer::<Http<Hello>, Pool>::builder()
        .max_connections(Some(3))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let mut a = connect(running.inet());
    let mut b = connect(running.inet());
    for (client, name) in [(&mut a, "/a"), (&mut b, "/b")] {
        send(client, name);
        assert!(response(client).is_some());
    }
    // A third client asks what the server counts while it is served: the two others parked
    // (a worker parks a connection just after its response is out), and three open.
    let mut seen = String::new();
    let counted = util::eventually(Duration::from_secs(5), || {
        let mut c = connect(running.inet());
        c.get_mut()
            .write_all(b"GET /stats HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .expect("send");
        seen = response(&mut c).map(|r| r.1).unwrap_or_default();
        seen == "parked=2 open=3"
    });
    println!("with two parked clients and one served: {seen} (want parked=2 open=3)");
    assert!(counted, "{seen}");
    running.stop().close();
    for client in [&mut a, &mut b] {
        let mut rest = Vec::new();
        assert!(matches!(client.read_to_end(&mut rest), Ok(0)));
    }
}

#[test]
fn threading_parks_when_asked_and_serves_the_same() {
    let server = TcpServer::<Http<Hello>, Threading>::builder()
        .strategy(Threading::new().park_idle(true))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let mut client = connect(running.inet());
    for i in 0..20 {
        send(&mut client, &format!("/{i}"));
        assert_eq!(
            response(&mut client).map(|r| r.1),
            Some(format!("hello /{i}"))
        );
    }
    // Pipelined: both requests in one write are answered in order.
    client
        .get_mut()
        .write_all(b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\nGET /p2 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(
        response(&mut client).map(|r| r.1).as_deref(),
        Some("hello /p1")
    );
    assert_eq!(
        response(&mut client).map(|r| r.1).as_deref(),
        Some("hello /p2")
    );
    let server = running.stop();
    let stats = server.stats();
    println!("{stats:?}");
    assert_eq!(stats.failed, 0);
    server.close();
}

/// New connections whose clients send nothing yet wait for their first request parked: on
/// `Serial` and on a pool of one worker, four silent clients hold no worker, and a fifth
/// client is answered at once (it used to wait for the first silent one's 30 s timeout).
#[test]
fn silent_new_connections_hold_no_worker_on_serial_or_a_pool() {
    fn check<S: socketserver::Strategy + Default>(strategy: S, name: &str) {
        let server = TcpServer::<Http<Hello>, S>::builder()
            .strategy(strategy)
            .bind("127.0.0.1:0")
            .expect("bind");
        let running = util::serve(server);
        let silent: Vec<_> = (0..4).map(|_| connect(running.inet())).collect();
        let mut asking = connect(running.inet());
        let started = Instant::now();
        send(&mut asking, "/stats");
        let answer = response(&mut asking);
        let took = started.elapsed();
        println!("{name}: answered beside 4 silent new connections in {took:?}: {answer:?}");
        let (status, body) = answer.expect("an answer, not the silent clients' timeout");
        assert_eq!(status, "HTTP/1.1 200 OK");
        // The four silent ones are parked (the asking one is being served).
        assert!(body.starts_with("parked=4 "), "{body}");
        // They leave (a stop would give each the grace period for its first request).
        drop(silent);
        let report = running.stop().close();
        assert_eq!(report.abandoned, 0, "{report:?}");
    }
    check(Serial, "serial");
    check(Pool::new().workers(1), "a pool of 1 worker");
}

/// A new connection parked while waiting for its first request is a request on its way, not
/// an idle connection: a stop serves it within the grace period.
#[test]
fn a_new_connection_parked_before_its_first_request_is_served_at_a_stop() {
    let server = TcpServer::<Http<Hello>, Pool>::builder()
        .strategy(Pool::new().workers(1))
        .close_timeout(Some(util::PATIENCE))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    let mut late = connect(address);
    assert!(
        util::eventually(util::PATIENCE, || {
            let mut asking = connect(address);
            send(&mut asking, "/stats");
            response(&mut asking).is_some_and(|(_, body)| body.starts_with("parked=1 "))
        }),
        "the new connection is parked"
    );
    let handle = running.handle.clone();
    let closing = thread::spawn(move || running.stop().close());
    assert!(util::eventually(util::PATIENCE, || handle.is_closing()));
    send(&mut late, "/late");
    assert_eq!(
        response(&mut late),
        Some(("HTTP/1.1 200 OK".into(), "hello /late".into()))
    );
    let report = closing.join().expect("close");
    assert_eq!(report.abandoned, 0, "{report:?}");
}

/// `Serial` runs requests on the closing thread, so its close never waits: new connections
/// parked before their first request are closed with the idle ones, not served one after
/// another for up to their 30 s timeout each.
#[test]
fn a_serial_server_closes_at_once_with_new_connections_parked() {
    let server = TcpServer::<Http<Hello>, Serial>::builder()
        .close_timeout(Some(Duration::from_secs(1)))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    let mut silent: Vec<_> = (0..2).map(|_| connect(address)).collect();
    assert!(
        util::eventually(util::PATIENCE, || {
            let mut asking = connect(address);
            send(&mut asking, "/stats");
            response(&mut asking).is_some_and(|(_, body)| body.starts_with("parked=2 "))
        }),
        "the two new connections are parked"
    );
    let started = Instant::now();
    let report = running.stop().close();
    let took = started.elapsed();
    println!("serial: closed with 2 parked new connections in {took:?}: {report:?}");
    assert!(took < Duration::from_secs(1), "close took {took:?}");
    for client in &mut silent {
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).expect("end of file"), 0);
    }
}
