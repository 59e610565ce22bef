//! Helpers shared by the integration tests: run a server on a thread, stop it, wait for things.
#![allow(dead_code)]

pub mod child;
pub mod faulty;
pub mod isolation;
pub mod lab;
pub mod lines;

use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socketserver::transport::Transport;
use socketserver::{Address, Handler, Server, ShutdownHandle, Strategy};

/// Installs the test logger once.
pub fn init() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A server serving on its own thread.
pub struct Running<T: Transport, H: Handler, S: Strategy> {
    pub address: Address,
    pub handle: ShutdownHandle,
    thread: JoinHandle<(Server<T, H, S>, socketserver::Result<()>)>,
}

/// Starts `serve_forever` on a new thread.
pub fn serve<T: Transport, H: Handler + 'static, S: Strategy>(
    mut server: Server<T, H, S>,
) -> Running<T, H, S> {
    init();
    let address = server.server_address().clone();
    let handle = server.shutdown_handle();
    let thread = thread::spawn(move || {
        let result = server.serve_forever();
        (server, result)
    });
    Running {
        address,
        handle,
        thread,
    }
}

impl<T: Transport, H: Handler + 'static, S: Strategy> Running<T, H, S> {
    /// The bound internet address.
    pub fn inet(&self) -> std::net::SocketAddr {
        self.address.as_inet().expect("an internet server")
    }

    /// The socket path.
    pub fn path(&self) -> PathBuf {
        self.address.as_path().expect("a unix server").to_path_buf()
    }

    /// Stops the server, checks `serve_forever` returned `Ok`, and hands the server back.
    pub fn stop(self) -> Server<T, H, S> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits for `serve_forever` to return (it must have been asked to) and checks it was `Ok`.
    pub fn join(self) -> Server<T, H, S> {
        let (server, result) = self.thread.join().expect("serving thread panicked");
        result.expect("serve_forever failed");
        server
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::yield_now();
        thread::park_timeout(Duration::from_millis(5));
    }
}

/// A fresh temporary directory for socket files.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("socketserver-test")
        .tempdir()
        .expect("temp dir")
}

/// How long a test waits for something that should take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A TCP client whose reads fail after [`PATIENCE`] instead of hanging the test.
pub fn tcp_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let client = std::net::TcpStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    client
}

/// Sends `line` and a newline on a new connection and returns the whole reply, read until
/// the server closes ("" if it closes without one).
pub fn ask(addr: std::net::SocketAddr, line: &str) -> String {
    use std::io::{Read, Write};
    let mut client = tcp_client(addr);
    client.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

/// A UDP client on the loopback of `server`'s family, with a read timeout.
pub fn udp_client(server: std::net::SocketAddr) -> std::net::UdpSocket {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let client = std::net::UdpSocket::bind(local).expect("bind udp client");
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    client
}

/// A TCP client that connects from the loopback address `source` (such as 127.0.0.2, which
/// the tests' `verify_request` hooks reject), with a read timeout.
pub fn tcp_client_from(
    source: std::net::Ipv4Addr,
    server: std::net::SocketAddr,
) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .expect("bind the client's source address");
    socket.connect(&server.into()).expect("connect");
    let client: std::net::TcpStream = socket.into();
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    client
}
