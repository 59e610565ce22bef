//! `#[derive(Handler)]` in every shape it accepts, each served over a real socket: named, tuple
//! and unit structs, stream and datagram handlers, generics with a `where` clause, shared state,
//! `default = expr` fields and a `crate = path` alias. The mistakes it rejects are in
//! `tests/derive_ui.rs`.

mod util;

use std::io::{BufRead, Read, Write};
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use socketserver::{
    DatagramRequest, DatagramRequestHandler, HandleResult, Handler, StreamRequest,
    StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer, UnixStreamServer,
};
use util::{serve, tcp_client, temp_dir, udp_client, PATIENCE};

/// Sends `request`, closes the writing half, and returns everything the server sent back.
fn exchange(mut client: impl Read + Write, request: &str, close: impl FnOnce()) -> String {
    client.write_all(request.as_bytes()).unwrap();
    close();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

/// One TCP request: sends `request`, returns the whole reply.
fn tcp_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let client = tcp_client(addr);
    exchange(&client, request, || {
        client.shutdown(Shutdown::Write).unwrap()
    })
}

// --- A stream handler with named fields, all made with `Default` ---

/// Numbers the lines of one connection. Its fields start from `Default` for every request.
#[derive(Handler)]
struct LineNumbers {
    count: usize,
    line: String,
}

impl StreamRequestHandler for LineNumbers {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        while request.rfile.read_line(&mut self.line)? > 0 {
            self.count += 1;
            write!(request.wfile, "{} {}", self.count, self.line)?;
            self.line.clear();
        }
        Ok(())
    }
}

#[test]
fn stream_handler_with_named_fields_over_tcp() {
    let running = serve(TcpServer::<LineNumbers>::bind("127.0.0.1:0").unwrap());
    assert_eq!(tcp_exchange(running.inet(), "a\nb\n"), "1 a\n2 b\n");
    // A fresh handler, so a fresh count.
    assert_eq!(tcp_exchange(running.inet(), "c\n"), "1 c\n");
    running.stop();
}

// --- A datagram handler ---

/// Replies to each datagram with its bytes reversed. `reply` starts empty for every datagram;
/// were it kept, the second reply would carry the first.
#[derive(Handler)]
struct Reverse {
    reply: Vec<u8>,
}

impl DatagramRequestHandler for Reverse {
    fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
        self.reply.extend(request.packet().iter().rev());
        request.wfile.write_all(&self.reply)?;
        Ok(())
    }
}

#[test]
fn datagram_handler_over_udp() {
    let running = serve(UdpServer::<Reverse>::bind("127.0.0.1:0").unwrap());
    let client = udp_client(running.inet());
    let mut buf = [0; 16];
    for (ask, answer) in [(&b"abc"[..], &b"cba"[..]), (b"hello", b"olleh")] {
        client.send_to(ask, running.inet()).unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (answer, running.inet()));
    }
    running.stop();
}

// --- Generics: a type parameter with a bound, a const parameter, a `where` clause ---

/// What a `Prefixed` handler puts before each line.
trait Prefix {
    const PREFIX: &'static str;
}

struct Info;
impl Prefix for Info {
    const PREFIX: &'static str = "info";
}

struct Warn;
impl Prefix for Warn {
    const PREFIX: &'static str = "warn";
}

/// Replies with the first line, after `P::PREFIX` written `TIMES` times.
#[derive(Handler)]
struct Prefixed<P: Prefix, const TIMES: usize>
where
    P: 'static,
{
    prefix: PhantomData<fn() -> P>,
}

impl<P: Prefix, const TIMES: usize> StreamRequestHandler for Prefixed<P, TIMES>
where
    P: 'static,
{
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        write!(request.wfile, "{}: {line}", P::PREFIX.repeat(TIMES))?;
        Ok(())
    }
}

#[test]
fn generic_handler_with_where_clause() {
    let info = serve(TcpServer::<Prefixed<Info, 1>>::bind("127.0.0.1:0").unwrap());
    let warn = serve(TcpServer::<Prefixed<Warn, 2>>::bind("127.0.0.1:0").unwrap());
    assert_eq!(tcp_exchange(info.inet(), "up\n"), "info: up\n");
    assert_eq!(tcp_exchange(warn.inet(), "disk\n"), "warnwarn: disk\n");
    info.stop();
    warn.stop();
}

// --- A tuple struct, with each kind of field ---

/// The shared state of `Tagged`: a tag set when the server is built.
struct Tag(String);

/// Replies `<tag> <number> <line>`: the state, a `default = expr`, and a `Default` field.
#[derive(Handler)]
#[handler(state = Tag)]
struct Tagged(
    #[handler(state)] Arc<Tag>,
    #[handler(default = 7)] u32,
    String,
);

impl StreamRequestHandler for Tagged {
    fn handle(&mut self, request: &mut StreamRequest<'_, Tag>) -> HandleResult {
        request.rfile.read_line(&mut self.2)?;
        write!(request.wfile, "{} {} {}", self.0 .0, self.1, self.2)?;
        Ok(())
    }
}

#[test]
fn tuple_struct_handler_over_unix_stream() {
    let dir = temp_dir();
    let path = dir.path().join("tagged.sock");
    let running = serve(
        UnixStreamServer::<Tagged>::with_state(Tag("unix".into()))
            .bind(&path)
            .unwrap(),
    );
    let client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let reply = exchange(&client, "hi\n", || {
        client.shutdown(Shutdown::Write).unwrap()
    });
    assert_eq!(reply, "unix 7 hi\n");
    running.stop().close();
    assert!(!path.exists());
}

// --- A unit struct ---

/// Answers every datagram with `pong`.
#[derive(Handler)]
struct Ping;

impl DatagramRequestHandler for Ping {
    fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
        request.wfile.write_all(b"pong")?;
        Ok(())
    }
}

#[test]
fn unit_struct_handler_over_unix_datagram() {
    let dir = temp_dir();
    let path = dir.path().join("ping.sock");
    let client_path = dir.path().join("client.sock");
    let running = serve(UnixDatagramServer::<Ping>::bind(&path).unwrap());
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"ping", &path).unwrap();
    let mut buf = [0; 8];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");
    running.stop().close();
}

// --- Shared state ---

/// State shared by every request of one server.
#[derive(Default)]
struct Counter {
    requests: AtomicUsize,
    total: AtomicUsize,
}

/// Adds the number it is sent to the shared total and replies with the total so far.
#[derive(Handler)]
#[handler(state = Counter)]
struct Add {
    #[handler(state)]
    counter: Arc<Counter>,
    line: String,
}

impl StreamRequestHandler for Add {
    fn handle(&mut self, request: &mut StreamRequest<'_, Counter>) -> HandleResult {
        request.rfile.read_line(&mut self.line)?;
        let n: usize = self.line.trim().parse()?;
        self.counter.requests.fetch_add(1, Ordering::SeqCst);
        let total = self.counter.total.fetch_add(n, Ordering::SeqCst) + n;
        writeln!(request.wfile, "{total}")?;
        Ok(())
    }
}

#[test]
fn shared_state_is_updated_by_every_request() {
    let running = serve(
        TcpServer::<Add>::with_state(Counter::default())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let mut expected = 0;
    for n in 1..=5 {
        expected += n;
        let reply = tcp_exchange(running.inet(), &format!("{n}\n"));
        assert_eq!(reply, format!("{expected}\n"), "the running total");
    }
    let server = running.stop();
    assert_eq!(server.state().requests.load(Ordering::SeqCst), 5);
    assert_eq!(server.state().total.load(Ordering::SeqCst), 15);
}

// --- `default = expr` fields ---

/// A number that changes on every call: shows `default = expr` runs once per request.
fn next_ticket() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(100);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Replies with its fields as the request found them.
#[derive(Handler)]
struct Defaults {
    #[handler(default = String::from("hello"))]
    greeting: String,
    #[handler(default = next_ticket())]
    ticket: u64,
    #[handler(default = vec![1, 2, 3])]
    numbers: Vec<u8>,
    #[handler(default = Some('x'))]
    mark: Option<char>,
    plain: u32,
}

impl StreamRequestHandler for Defaults {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        write!(
            request.wfile,
            "{} {} {:?} {:?} {}",
            self.greeting, self.ticket, self.numbers, self.mark, self.plain
        )?;
        // Changes that the next request must not see.
        self.greeting.push('!');
        self.numbers.clear();
        Ok(())
    }
}

#[test]
fn default_fields_are_evaluated_for_every_request() {
    let running = serve(TcpServer::<Defaults>::bind("127.0.0.1:0").unwrap());
    assert_eq!(
        tcp_exchange(running.inet(), ""),
        "hello 100 [1, 2, 3] Some('x') 0"
    );
    assert_eq!(
        tcp_exchange(running.inet(), ""),
        "hello 101 [1, 2, 3] Some('x') 0"
    );
    running.stop();
}

// --- `crate = path` with an alias ---

/// Uses the facade only through an alias, as a crate that renamed it would.
mod aliased {
    use std::io::Write;

    use socketserver as ss;

    #[derive(ss::Handler)]
    #[handler(crate = ss, state = String)]
    pub struct Hello {
        #[handler(state)]
        pub name: std::sync::Arc<String>,
    }

    impl ss::StreamRequestHandler for Hello {
        fn handle(&mut self, request: &mut ss::StreamRequest<'_, String>) -> ss::HandleResult {
            write!(request.wfile, "hello from {}", self.name)?;
            Ok(())
        }
    }
}

#[test]
fn crate_path_alias() {
    let running = serve(
        TcpServer::<aliased::Hello>::with_state("ss".to_owned())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(tcp_exchange(running.inet(), ""), "hello from ss");
    running.stop();
}
