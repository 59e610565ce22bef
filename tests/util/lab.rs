//! The strategy tests' in-process lab (threading, pool): a handler that counts how many
//! requests run at once, holds them until the test releases them, and panics or fails when told
//! to; the round trips every strategy's tests make.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use socketserver::{
    DatagramRequest, DatagramRequestHandler, HandleResult, Handler, RequestError, ServerContext,
    Strategy, StreamRequest, StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer,
};

use super::{ask, serve, tcp_client, temp_dir, udp_client, PATIENCE};

/// What the in-process handlers share with the test.
pub struct Lab {
    /// Handlers running now, and the most ever at once.
    now: AtomicUsize,
    peak: AtomicUsize,
    /// A `hold` request reports here, then waits for a token on `release`.
    entered: (Sender<()>, Receiver<()>),
    release: (Sender<()>, Receiver<()>),
    /// What `handle_error` was given, as text.
    errors: (Sender<String>, Receiver<String>),
}

impl Default for Lab {
    fn default() -> Lab {
        Lab {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            entered: unbounded(),
            release: unbounded(),
            errors: unbounded(),
        }
    }
}

impl Lab {
    /// Waits until `n` more `hold` requests are running.
    pub fn wait_entered(&self, n: usize) {
        for i in 0..n {
            self.entered
                .1
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("only {i} of {n} held requests started"));
        }
    }

    /// Lets `n` held requests finish.
    pub fn release(&self, n: usize) {
        for _ in 0..n {
            self.release.0.send(()).unwrap();
        }
    }

    pub fn next_error(&self) -> String {
        self.errors.1.recv_timeout(PATIENCE).expect("handle_error")
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Counts a running handler, even if it panics.
struct Busy<'a>(&'a Lab);

impl<'a> Busy<'a> {
    fn enter(lab: &'a Lab) -> Busy<'a> {
        let now = lab.now.fetch_add(1, Ordering::SeqCst) + 1;
        lab.peak.fetch_max(now, Ordering::SeqCst);
        Busy(lab)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads a line and acts on it: `panic`, `fail`, `hold` (wait for a release), `name` (reply with
/// the thread's name), `thread` (reply with the thread's id), or anything else (echo it).
/// Datagrams: `panic`, or echo.
#[derive(Handler)]
#[handler(state = Lab)]
pub struct Line;

impl StreamRequestHandler for Line {
    fn handle(&mut self, request: &mut StreamRequest<'_, Lab>) -> HandleResult {
        let lab = request.server().state();
        let _busy = Busy::enter(lab);
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        match line.trim_end() {
            "panic" => panic!("told to panic"),
            "fail" => Err("told to fail".into()),
            "hold" => {
                lab.entered.0.send(())?;
                lab.release.1.recv_timeout(PATIENCE)?;
                request.wfile.write_all(b"held\n")?;
                Ok(())
            }
            "name" => {
                let name = thread::current().name().unwrap_or("").to_owned();
                request.wfile.write_all(format!("{name}\n").as_bytes())?;
                Ok(())
            }
            "thread" => {
                let id = thread::current().id();
                request.wfile.write_all(format!("{id:?}\n").as_bytes())?;
                Ok(())
            }
            _ => {
                request.wfile.write_all(line.as_bytes())?;
                Ok(())
            }
        }
    }
}

impl DatagramRequestHandler for Line {
    fn handle(&mut self, request: &mut DatagramRequest<'_, Lab>) -> HandleResult {
        if request.packet() == b"panic" {
            panic!("told to panic");
        }
        request.wfile.extend_from_slice(request.packet());
        Ok(())
    }
}

/// The lab's `handle_error` hook: hands the error, as text, to the test.
pub fn report(server: &ServerContext<Lab>, error: &RequestError) {
    let _ = server.state().errors.0.send(error.to_string());
}

/// Sends `line` on each connection.
pub fn send_all(clients: &mut [TcpStream], line: &str) {
    for client in clients {
        client.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

pub fn read_reply(client: &mut TcpStream) -> String {
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

/// One round trip on each transport with a fresh strategy from `make`; returns what each
/// `name` request answered (the thread that served it).
pub fn every_transport<S: Strategy>(make: impl Fn() -> S) -> Vec<String> {
    let dir = temp_dir();
    let mut names = Vec::new();

    let running = serve(
        TcpServer::<Line>::with_state(Lab::default())
            .handle_error(report)
            .strategy(make())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "tcp"), "tcp\n");
    names.push(ask(running.inet(), "name"));
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UnixStreamServer::<Line>::with_state(Lab::default())
            .handle_error(report)
            .strategy(make())
            .bind(dir.path().join("stream.sock"))
            .unwrap(),
    );
    let mut client = std::os::unix::net::UnixStream::connect(running.path()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"unix\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "unix\n");
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UdpServer::<Line>::with_state(Lab::default())
            .handle_error(report)
            .strategy(make())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let client = udp_client(running.inet());
    client.send_to(b"udp", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"udp");
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UnixDatagramServer::<Line>::with_state(Lab::default())
            .handle_error(report)
            .strategy(make())
            .bind(dir.path().join("dgram.sock"))
            .unwrap(),
    );
    let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"unix datagram", running.path()).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"unix datagram");
    assert_eq!(running.stop().close().abandoned, 0);
    names
}

/// Connects 50 clients, then has each send at once (a barrier), and checks every answer.
pub fn fifty_at_once(addr: std::net::SocketAddr) {
    let clients: Vec<TcpStream> = (0..50).map(|_| tcp_client(addr)).collect();
    let barrier = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                client
                    .write_all(format!("client {i}\n").as_bytes())
                    .unwrap();
                assert_eq!(read_reply(&mut client), format!("client {i}\n"));
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
}

/// Binds a TCP server with `strategy`, returning it and a handle on its `Lab`.
pub fn lab_server<S: Strategy>(
    strategy: S,
    close_timeout: Option<Duration>,
) -> (
    socketserver::Server<socketserver::transport::Tcp, Line, S>,
    Arc<Lab>,
) {
    let server = TcpServer::<Line>::builder()
        .handle_error(report)
        .strategy(strategy)
        .close_timeout(close_timeout)
        .bind("127.0.0.1:0")
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    (server, lab)
}

/// Connects `n` clients that each send `hold`, and waits until `running_now` of them run.
pub fn hold(addr: std::net::SocketAddr, lab: &Lab, n: usize, running_now: usize) -> Vec<TcpStream> {
    let mut clients: Vec<TcpStream> = (0..n).map(|_| tcp_client(addr)).collect();
    send_all(&mut clients, "hold");
    lab.wait_entered(running_now);
    clients
}
