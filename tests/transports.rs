//! A round trip over each transport, IPv4 and IPv6, with the client's and server's addresses as
//! the handler sees them.

mod util;

use std::io::{BufRead, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixDatagram, UnixStream};

use crossbeam_channel::{unbounded, Sender};
use socketserver::{
    Address, DatagramRequest, DatagramRequestHandler, HandleResult, Handler, StreamRequest,
    StreamRequestHandler, TcpServer, UdpServer, UnixAddress, UnixDatagramServer, UnixStreamServer,
};
use util::{serve, tcp_client, temp_dir, udp_client};

/// Replies to each line with the line upper-cased, and reports the client's address.
#[derive(Handler)]
#[handler(state = Sender<Address>)]
struct Upper {
    #[handler(state)]
    seen: std::sync::Arc<Sender<Address>>,
}

impl StreamRequestHandler for Upper {
    fn handle(&mut self, request: &mut StreamRequest<'_, Sender<Address>>) -> HandleResult {
        self.seen.send(request.client_address().clone())?;
        let mut line = String::new();
        while request.rfile.read_line(&mut line)? > 0 {
            request.wfile.write_all(line.to_uppercase().as_bytes())?;
            line.clear();
        }
        Ok(())
    }
}

impl DatagramRequestHandler for Upper {
    fn handle(&mut self, request: &mut DatagramRequest<'_, Sender<Address>>) -> HandleResult {
        self.seen.send(request.client_address().clone())?;
        request
            .wfile
            .write_all(&request.packet().to_ascii_uppercase())?;
        Ok(())
    }
}

fn stream_round_trip(mut client: impl Read + Write) -> String {
    client.write_all(b"hello\nworld\n").unwrap();
    let mut reply = vec![0; 12];
    client.read_exact(&mut reply).unwrap();
    String::from_utf8(reply).unwrap()
}

#[test]
fn tcp_ipv4_round_trip_on_port_zero() {
    let (tx, rx) = unbounded();
    let server = TcpServer::<Upper>::with_state(tx)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    assert_ne!(running.inet().port(), 0, "server_address has the real port");
    let client = tcp_client(running.inet());
    let local = client.local_addr().unwrap();
    assert_eq!(stream_round_trip(&client), "HELLO\nWORLD\n");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        (&client).read(&mut [0; 1]).unwrap(),
        0,
        "server closes after handle"
    );
    assert_eq!(rx.recv().unwrap(), Address::Inet(local));
    running.stop();
}

#[test]
fn tcp_ipv6_loopback_round_trip() {
    let (tx, rx) = unbounded();
    let server = TcpServer::<Upper>::with_state(tx).bind("[::1]:0").unwrap();
    let running = serve(server);
    assert!(running.inet().is_ipv6());
    let client = tcp_client(running.inet());
    assert_eq!(stream_round_trip(&client), "HELLO\nWORLD\n");
    assert_eq!(
        rx.recv().unwrap(),
        Address::Inet(client.local_addr().unwrap())
    );
    drop(client);
    running.stop();
}

#[test]
fn udp_ipv4_and_ipv6_round_trip() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let (tx, rx) = unbounded();
        let running = serve(UdpServer::<Upper>::with_state(tx).bind(bind).unwrap());
        let client = udp_client(running.inet());
        client.send_to(b"ping", running.inet()).unwrap();
        let mut buf = [0; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"PING");
        assert_eq!(from, running.inet());
        assert_eq!(
            rx.recv().unwrap(),
            Address::Inet(client.local_addr().unwrap())
        );
        running.stop();
    }
}

#[test]
fn unix_stream_round_trip_and_socket_file_removed_on_close() {
    let dir = temp_dir();
    let path = dir.path().join("upper.sock");
    let (tx, rx) = unbounded();
    let running = serve(
        UnixStreamServer::<Upper>::with_state(tx)
            .bind(&path)
            .unwrap(),
    );
    assert_eq!(running.path(), path);
    let client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(util::PATIENCE)).unwrap();
    assert_eq!(stream_round_trip(&client), "HELLO\nWORLD\n");
    assert_eq!(rx.recv().unwrap(), Address::Unix(UnixAddress::Unnamed));
    drop(client);
    let server = running.stop();
    assert!(path.exists(), "the file stays while the server is open");
    server.close();
    assert!(!path.exists(), "close removes the socket file");
}

#[test]
fn unix_datagram_round_trip_to_a_bound_client() {
    let dir = temp_dir();
    let path = dir.path().join("upper.sock");
    let client_path = dir.path().join("client.sock");
    let (tx, rx) = unbounded();
    let running = serve(
        UnixDatagramServer::<Upper>::with_state(tx)
            .bind(&path)
            .unwrap(),
    );
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(util::PATIENCE)).unwrap();
    client.send_to(b"ping", &path).unwrap();
    let mut buf = [0; 16];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"PING");
    assert_eq!(from.as_pathname(), Some(path.as_path()));
    assert_eq!(rx.recv().unwrap(), Address::from(client_path));
    running.stop().close();
    assert!(!path.exists());
}
