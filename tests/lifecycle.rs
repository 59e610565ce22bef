//! The server's lifecycle over real sockets: shutdown (idle, from a handler, before serving),
//! `handle_request` and its timeout, `verify_request`, and the handler lifecycle when handlers
//! fail, panic or lose their client. Ported in spirit from CPython's `test_socketserver`.

mod util;

use std::io::{BufRead, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use socketserver::{
    Address, HandleResult, Handler, RequestError, ServerContext, Stage, StreamRequest,
    StreamRequestHandler, TcpServer, Waited,
};
use util::{ask, serve, tcp_client, PATIENCE};

/// What the probe handlers report.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Setup,
    Handle(String),
    Finish,
    Error(Stage, String),
    Panic(Stage, String),
    Timeout,
}

/// The probes' shared state: where to report, and what to do with each line.
struct Probe {
    events: Sender<Event>,
}

fn probe() -> (Probe, Receiver<Event>) {
    let (events, rx) = unbounded();
    (Probe { events }, rx)
}

fn report(server: &ServerContext<Probe>, error: &RequestError) {
    let event = match error {
        RequestError::Handler { stage, source, .. } => Event::Error(*stage, source.to_string()),
        RequestError::Panic { stage, message, .. } => Event::Panic(*stage, message.clone()),
        other => Event::Error(Stage::Handle, other.to_string()),
    };
    let _ = server.state().events.send(event);
}

/// Reads one line and acts on it: `panic`, `fail`, `shutdown`, or echo it back.
#[derive(Handler)]
#[handler(state = Probe)]
struct Scripted;

impl StreamRequestHandler for Scripted {
    fn setup(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        request.server().state().events.send(Event::Setup)?;
        Ok(())
    }

    fn handle(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        request
            .server()
            .state()
            .events
            .send(Event::Handle(line.clone()))?;
        match line.as_str() {
            "panic" => panic!("told to panic"),
            "fail" => Err("told to fail".into()),
            "shutdown" => {
                request.server().shutdown();
                request.wfile.write_all(b"stopping\n")?;
                Ok(())
            }
            _ => {
                request.wfile.write_all(format!("{line}\n").as_bytes())?;
                Ok(())
            }
        }
    }

    fn finish(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        request.server().state().events.send(Event::Finish)?;
        Ok(())
    }
}

/// The `verify_request` hook: the verify_request test connects from 127.0.0.2 to be rejected.
fn not_from_127_0_0_2(_server: &ServerContext<Probe>, client_address: &Address) -> bool {
    client_address
        .as_inet()
        .is_none_or(|a| a.ip() != std::net::Ipv4Addr::new(127, 0, 0, 2))
}

/// The `handle_timeout` hook.
fn timeout_event(server: &ServerContext<Probe>) {
    let _ = server.state().events.send(Event::Timeout);
}

fn events(rx: &Receiver<Event>, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| rx.recv_timeout(PATIENCE).expect("event"))
        .collect()
}

#[test]
fn shutdown_while_idle_returns_promptly_without_polling() {
    let (state, _rx) = probe();
    // A poll interval of an hour: only the waker can stop the loop in time.
    let server = TcpServer::<Scripted>::with_state(state)
        .verify_request(not_from_127_0_0_2)
        .handle_error(report)
        .handle_timeout(timeout_event)
        .poll_interval(Duration::from_secs(3600))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    assert_eq!(
        ask(running.inet(), "hi"),
        "hi\n",
        "serving before the shutdown"
    );
    let started = Instant::now();
    running.stop();
    assert!(
        started.elapsed() < PATIENCE,
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_from_a_handler_does_not_deadlock() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "shutdown"), "stopping\n");
    // serve_forever returns by itself: nobody else called shutdown.
    let server = running.join();
    assert_eq!(
        events(&rx, 3),
        [
            Event::Setup,
            Event::Handle("shutdown".into()),
            Event::Finish
        ]
    );
    server.close();
}

#[test]
fn shutdown_before_serving_makes_serve_forever_return_at_once() {
    let (state, _rx) = probe();
    let mut server = TcpServer::<Scripted>::with_state(state)
        .verify_request(not_from_127_0_0_2)
        .handle_error(report)
        .handle_timeout(timeout_event)
        .bind("127.0.0.1:0")
        .unwrap();
    server.shutdown_handle().shutdown();
    server.serve_forever().unwrap();
    // The request was used up: the server can serve again and be stopped again.
    let running = serve(server);
    assert_eq!(ask(running.inet(), "again"), "again\n");
    running.stop();
}

#[test]
fn handle_request_serves_one_then_times_out_and_calls_handle_timeout() {
    let (state, rx) = probe();
    let mut server = TcpServer::<Scripted>::with_state(state)
        .verify_request(not_from_127_0_0_2)
        .handle_error(report)
        .handle_timeout(timeout_event)
        .timeout(Some(Duration::from_millis(50)))
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.server_address().as_inet().unwrap();
    let client = std::thread::spawn(move || ask(addr, "one"));
    assert_eq!(server.handle_request().unwrap(), Waited::Handled);
    assert_eq!(client.join().unwrap(), "one\n");
    assert_eq!(server.handle_request().unwrap(), Waited::TimedOut);
    assert_eq!(events(&rx, 4).last(), Some(&Event::Timeout));
    assert!(rx.try_recv().is_err(), "handle_timeout ran once");
}

#[test]
fn verify_request_false_closes_the_connection_unhandled() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let mut rejected = util::tcp_client_from(std::net::Ipv4Addr::new(127, 0, 0, 2), running.inet());
    let mut buf = Vec::new();
    // End-of-file (or a reset if the server closed with unread data) and nothing else.
    let read = rejected.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "a rejected client gets no reply, got {buf:?} ({read:?})"
    );
    // The next client is served, and no handler ever ran for the rejected one.
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert_eq!(events(&rx, 1), [Event::Setup]);
    running.stop();
}

#[test]
fn a_panicking_handler_is_reported_finish_runs_and_the_next_client_is_served() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(
        ask(running.inet(), "panic"),
        "",
        "the panicking request's connection is closed"
    );
    assert_eq!(
        events(&rx, 4),
        [
            Event::Setup,
            Event::Handle("panic".into()),
            Event::Panic(Stage::Handle, "told to panic".into()),
            Event::Finish,
        ]
    );
    assert_eq!(ask(running.inet(), "after"), "after\n");
    running.stop();
}

#[test]
fn a_failing_handler_goes_to_handle_error_and_finish_still_runs() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "fail"), "");
    assert_eq!(
        events(&rx, 4),
        [
            Event::Setup,
            Event::Handle("fail".into()),
            Event::Error(Stage::Handle, "told to fail".into()),
            Event::Finish,
        ]
    );
    running.stop();
}

/// A handler whose setup fails: neither handle nor finish may run.
#[derive(Handler)]
#[handler(state = Probe)]
struct BadSetup;

impl StreamRequestHandler for BadSetup {
    fn setup(&mut self, _request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        Err("no setup today".into())
    }
    fn handle(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        request
            .server()
            .state()
            .events
            .send(Event::Handle(String::new()))?;
        Ok(())
    }
    fn finish(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        request.server().state().events.send(Event::Finish)?;
        Ok(())
    }
}

#[test]
fn a_failed_setup_skips_handle_and_finish() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<BadSetup>::with_state(state)
            .handle_error(report)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "x"), "");
    assert_eq!(
        events(&rx, 1),
        [Event::Error(Stage::Setup, "no setup today".into())]
    );
    running.stop();
    assert!(rx.try_recv().is_err(), "neither handle nor finish ran");
}

#[test]
fn an_abrupt_reset_mid_request_is_reported_and_serving_goes_on() {
    let (state, rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    // Half a line, then a reset (SO_LINGER 0 makes close send RST).
    let client = tcp_client(running.inet());
    (&client).write_all(b"no newline yet").unwrap();
    assert_eq!(events(&rx, 1), [Event::Setup]);
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    // The handler read what it could; the reset either ends the read or fails the reply.
    let mut seen = events(&rx, 2);
    if !matches!(seen[1], Event::Finish) {
        seen.extend(events(&rx, 1));
    }
    assert_eq!(
        seen.last(),
        Some(&Event::Finish),
        "finish runs after the reset: {seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Error(..))),
        "the reset is reported: {seen:?}"
    );
    assert_eq!(ask(running.inet(), "still here"), "still here\n");
    running.stop();
}

#[test]
fn half_closed_client_still_gets_its_reply() {
    let (state, _rx) = probe();
    let running = serve(
        TcpServer::<Scripted>::with_state(state)
            .verify_request(not_from_127_0_0_2)
            .handle_error(report)
            .handle_timeout(timeout_event)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let mut client = tcp_client(running.inet());
    client.write_all(b"half\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "half\n");
    running.stop();
}

/// Answers one line with it, upper-cased.
#[derive(Handler)]
struct Upper;

impl StreamRequestHandler for Upper {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        request.wfile.write_all(line.to_uppercase().as_bytes())?;
        Ok(())
    }
}

/// Clients that connected after `serve_forever` returned, and wait in the listen backlog, are
/// served by `close` instead of reset when the socket closes.
fn clients_in_the_backlog_are_served_on_close<S: socketserver::Strategy>(strategy: S) {
    let server = TcpServer::<Upper>::builder()
        .strategy(strategy)
        .read_timeout(Some(PATIENCE))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let address = running.inet();
    let server = running.stop();
    let clients: Vec<_> = (0..5)
        .map(|i| {
            let mut client = tcp_client(address);
            client
                .write_all(format!("client {i}\n").as_bytes())
                .unwrap();
            client
        })
        .collect();
    let report = server.close();
    for (i, mut client) in clients.into_iter().enumerate() {
        let mut reply = String::new();
        client
            .read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("client {i} was not served: {e}"));
        assert_eq!(reply, format!("CLIENT {i}\n"));
    }
    assert_eq!(report.abandoned, 0, "{report:?}");
}

#[test]
fn close_serves_the_backlog_with_threading() {
    clients_in_the_backlog_are_served_on_close(socketserver::Threading::new());
}

#[test]
fn close_serves_the_backlog_serially() {
    clients_in_the_backlog_are_served_on_close(socketserver::Serial);
}
