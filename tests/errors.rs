//! Bad input gets a clear, typed error that names what and where, and the server loses nothing:
//! busy ports, live/stale/foreign socket paths, bad options, oversized datagrams, clients that
//! cannot be answered, adopted sockets.

mod util;

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};

use crossbeam_channel::{unbounded, Sender};
use socketserver::{
    Address, DatagramRequest, DatagramRequestHandler, Error, HandleResult, Handler, RequestError,
    ServerContext, StreamRequest, StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer,
};
use util::{serve, temp_dir, udp_client, PATIENCE};

#[derive(Handler)]
struct Nothing;

impl StreamRequestHandler for Nothing {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        request.wfile.write_all(b"ok")?;
        Ok(())
    }
}

/// Echoes datagrams and forwards every reported error as text.
#[derive(Handler)]
#[handler(state = Sender<String>)]
struct Reporting;

impl DatagramRequestHandler for Reporting {
    fn handle(&mut self, request: &mut DatagramRequest<'_, Sender<String>>) -> HandleResult {
        request.wfile.write_all(request.packet())?;
        Ok(())
    }
}

/// The `handle_error` hook: forwards every reported error as text.
fn reporting_error(server: &ServerContext<Sender<String>>, error: &RequestError) {
    let kind = match error {
        RequestError::Truncated { capacity, .. } => format!("dropped: over {capacity}"),
        RequestError::UnboundClient { len } => format!("unbound client, {len} bytes"),
        other => other.to_string(),
    };
    let _ = server.state().send(kind);
}

#[test]
fn a_busy_tcp_port_is_addr_in_use_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    // reuse_address does not let a second listener in while the first listens.
    let err = TcpServer::<Nothing>::bind(addr).unwrap_err();
    assert!(
        matches!(&err, Error::AddrInUse { addr: a, .. } if *a == Address::Inet(addr)),
        "{err:?}"
    );
    assert_eq!(err.to_string(), format!("address {addr} is already in use"));
    assert!(
        std::error::Error::source(&err).is_some(),
        "the OS error is kept as source"
    );
}

#[test]
fn a_busy_udp_port_is_addr_in_use() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = UdpServer::<Reporting>::with_state(unbounded().0)
        .handle_error(reporting_error)
        .bind(addr)
        .unwrap_err();
    assert!(matches!(err, Error::AddrInUse { .. }), "{err:?}");
}

#[test]
fn invalid_and_unavailable_addresses_are_named() {
    let err = TcpServer::<Nothing>::bind("127.0.0.1:notaport").unwrap_err();
    assert!(matches!(err, Error::InvalidAddress { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("invalid address 127.0.0.1:notaport"),
        "{err}"
    );
    // TEST-NET-1 is never assigned to this machine.
    let err = TcpServer::<Nothing>::bind("192.0.2.1:0").unwrap_err();
    assert!(matches!(err, Error::AddrNotAvailable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "address 192.0.2.1:0 is not available on this machine"
    );
}

#[test]
fn a_live_unix_socket_path_is_refused_and_left_alone() {
    let dir = temp_dir();
    let path = dir.path().join("live.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let err = UnixStreamServer::<Nothing>::bind(&path).unwrap_err();
    assert!(
        matches!(&err, Error::UnixPathInUse { path: p } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains(path.to_str().unwrap()));
    assert!(path.exists(), "the live server's socket file is untouched");
    // A datagram server is refused there too (the probe gets EPROTOTYPE).
    let err = UnixDatagramServer::<Reporting>::with_state(unbounded().0)
        .handle_error(reporting_error)
        .bind(&path)
        .unwrap_err();
    assert!(matches!(err, Error::UnixPathInUse { .. }), "{err:?}");
}

#[test]
fn a_stale_unix_socket_file_is_replaced() {
    let dir = temp_dir();
    let path = dir.path().join("stale.sock");
    // std does not unlink on drop: this leaves a socket file nobody listens on.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let running = serve(UnixStreamServer::<Nothing>::bind(&path).unwrap());
    let mut reply = String::new();
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Read::read_to_string(&mut client, &mut reply).unwrap();
    assert_eq!(reply, "ok");
    running.stop().close();
    assert!(!path.exists());
}

#[test]
fn a_stale_unix_datagram_socket_file_is_replaced() {
    let dir = temp_dir();
    let path = dir.path().join("stale-dgram.sock");
    drop(UnixDatagram::bind(&path).unwrap());
    let server = UnixDatagramServer::<Reporting>::with_state(unbounded().0)
        .handle_error(reporting_error)
        .bind(&path)
        .unwrap();
    drop(server);
    assert!(
        !path.exists(),
        "dropping the server removes its socket file too"
    );
}

#[test]
fn a_path_that_is_not_a_socket_is_never_deleted() {
    let dir = temp_dir();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, "data").unwrap();
    let err = UnixStreamServer::<Nothing>::bind(&path).unwrap_err();
    assert!(matches!(err, Error::PathNotSocket { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[test]
fn a_socket_file_replaced_by_someone_else_is_not_removed_on_close() {
    let dir = temp_dir();
    let path = dir.path().join("moved.sock");
    let server = UnixStreamServer::<Nothing>::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let _successor = UnixListener::bind(&path).unwrap();
    server.close();
    assert!(
        path.exists(),
        "the successor's socket file survives our close"
    );
}

/// Asserts that binding failed with `InvalidOption` naming `option`.
fn assert_invalid_option<T: std::fmt::Debug>(bound: Result<T, Error>, option: &str) -> Error {
    let err = bound.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidOption { option: named, .. } if *named == option),
        "{err:?}"
    );
    err
}

#[test]
fn bad_options_are_rejected_by_name() {
    let dir = temp_dir();
    assert_invalid_option(
        UnixStreamServer::<Nothing>::builder()
            .reuse_port(true)
            .bind(dir.path().join("x.sock")),
        "reuse_port",
    );
    assert_invalid_option(
        TcpServer::<Nothing>::builder()
            .rbufsize(0)
            .bind("127.0.0.1:0"),
        "rbufsize",
    );
    // A zero timeout would mean none at all; `None` says that.
    let err = assert_invalid_option(
        TcpServer::<Nothing>::builder()
            .request_timeout(Some(std::time::Duration::ZERO))
            .bind("127.0.0.1:0"),
        "read_timeout",
    );
    assert!(err.to_string().contains("more than zero"), "{err}");
}

#[test]
fn reuse_port_lets_two_tcp_servers_share_a_port() {
    let first = TcpServer::<Nothing>::builder()
        .reuse_port(true)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = first.server_address().clone();
    let second = TcpServer::<Nothing>::builder()
        .reuse_port(true)
        .bind(addr.as_inet().unwrap())
        .unwrap();
    assert_eq!(second.server_address(), &addr);
}

#[test]
fn an_oversized_datagram_is_reported_not_truncated_and_serving_goes_on() {
    let (tx, rx) = unbounded();
    let server = UdpServer::<Reporting>::with_state(tx)
        .handle_error(reporting_error)
        .max_packet_size(16)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let client = udp_client(running.inet());
    client.send_to(&[7; 100], running.inet()).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), "dropped: over 16");
    client.send_to(b"small", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"small",
        "the first reply is the small one: nothing cut short was sent"
    );
    running.stop();
}

#[test]
fn an_oversized_unix_datagram_is_reported() {
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    let (tx, rx) = unbounded();
    let server = UnixDatagramServer::<Reporting>::with_state(tx)
        .handle_error(reporting_error)
        .max_packet_size(8)
        .bind(&path)
        .unwrap();
    let running = serve(server);
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(&[1; 9], &path).unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), "dropped: over 8");
    running.stop();
}

#[test]
fn an_unbound_unix_datagram_client_is_reported_and_serving_goes_on() {
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    let (tx, rx) = unbounded();
    let running = serve(
        UnixDatagramServer::<Reporting>::with_state(tx)
            .handle_error(reporting_error)
            .bind(&path)
            .unwrap(),
    );
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"hello", &path)
        .unwrap();
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        "unbound client, 5 bytes"
    );
    let bound = UnixDatagram::bind(dir.path().join("c.sock")).unwrap();
    bound.set_read_timeout(Some(PATIENCE)).unwrap();
    bound.send_to(b"again", &path).unwrap();
    let mut buf = [0; 16];
    let n = bound.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"again");
    running.stop();
}

#[test]
fn an_adopted_listener_is_served_and_a_bound_socket_is_activated() {
    // Python's bind_and_activate=False: bind elsewhere, let the server listen.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let fd: std::os::fd::OwnedFd = socket.into();
    let server = TcpServer::<Nothing>::builder().from_listener(fd).unwrap();
    let running = serve(server);
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut util::tcp_client(running.inet()), &mut reply).unwrap();
    assert_eq!(reply, "ok");
    running.stop();
    // A datagram socket is not a listener.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = TcpServer::<Nothing>::builder()
        .from_listener(std::os::fd::OwnedFd::from(udp))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongSocket {
                transport: "tcp",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn debug_reads_as_the_message_and_its_cause_for_main() {
    // `fn main() -> Result<(), socketserver::Error>` prints the error with `{:?}`.
    let first = socketserver::TcpServer::<Nothing>::bind("127.0.0.1:0").expect("bind");
    let taken = first.server_address().to_string();
    let error = socketserver::TcpServer::<Nothing>::bind(taken.as_str()).expect_err("port taken");
    let printed = format!("{error:?}");
    assert_eq!(
        printed.lines().next(),
        Some(format!("address {taken} is already in use").as_str()),
        "{printed}"
    );
    assert!(printed.contains("Caused by:\n    "), "{printed}");
    assert!(!printed.contains("AddrInUse {"), "{printed}");
}

#[test]
fn an_empty_unix_path_is_refused_instead_of_autobinding() {
    let stream = UnixStreamServer::<Nothing>::bind("").expect_err("empty path");
    assert!(matches!(stream, Error::InvalidAddress { .. }), "{stream:?}");
    assert_eq!(
        stream.to_string(),
        "invalid address \"\": a Unix socket path must not be empty"
    );
    let datagram = UnixDatagramServer::<Reporting>::with_state(unbounded().0)
        .handle_error(reporting_error)
        .bind("")
        .expect_err("empty path");
    assert!(
        matches!(datagram, Error::InvalidAddress { .. }),
        "{datagram:?}"
    );
}
