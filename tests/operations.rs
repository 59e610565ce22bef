//! What an operator sees and controls: request statistics, the peer's credentials on Unix
//! sockets, and the socket file's mode.

mod util;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crossbeam_channel::{unbounded, Sender};
use socketserver::{
    Address, HandleResult, Handler, PeerCredentials, ServerContext, StreamRequest,
    StreamRequestHandler, TcpServer, UnixStreamServer,
};
use util::{serve, tcp_client, temp_dir, PATIENCE};

/// Replies "ok", fails on "fail", reports the peer's credentials, rejects 127.0.0.2.
#[derive(Handler)]
#[handler(state = Sender<Option<PeerCredentials>>)]
struct Counted;

impl StreamRequestHandler for Counted {
    fn handle(
        &mut self,
        request: &mut StreamRequest<'_, Sender<Option<PeerCredentials>>>,
    ) -> HandleResult {
        let creds = request.connection().peer_credentials().ok();
        request.server().state().send(creds)?;
        let mut word = [0; 4];
        request.rfile.read_exact(&mut word)?;
        if &word == b"fail" {
            return Err("asked to fail".into());
        }
        request.wfile.write_all(b"ok")?;
        Ok(())
    }
}

/// The `verify_request` hook: the test connects from 127.0.0.2 to be rejected.
fn not_from_127_0_0_2(
    _: &ServerContext<Sender<Option<PeerCredentials>>>,
    client: &Address,
) -> bool {
    client
        .as_inet()
        .is_none_or(|a| a.ip() != std::net::Ipv4Addr::new(127, 0, 0, 2))
}

fn send(addr: std::net::SocketAddr, word: &[u8; 4]) -> String {
    let mut client = tcp_client(addr);
    client.write_all(word).unwrap();
    let mut reply = String::new();
    let _ = client.read_to_string(&mut reply);
    reply
}

#[test]
fn stats_count_succeeded_failed_and_rejected_requests() {
    let (tx, rx) = unbounded();
    let running = serve(
        TcpServer::<Counted>::with_state(tx)
            .verify_request(not_from_127_0_0_2)
            .handle_error(|_, _| {})
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(send(running.inet(), b"good"), "ok");
    assert_eq!(send(running.inet(), b"good"), "ok");
    assert_eq!(send(running.inet(), b"fail"), "");
    // A rejected client: verify_request refuses 127.0.0.2.
    let mut rejected = util::tcp_client_from(std::net::Ipv4Addr::new(127, 0, 0, 2), running.inet());
    let _ = rejected.read_to_end(&mut Vec::new());
    assert_eq!(rx.try_iter().count(), 3, "three handlers ran");
    let server = running.stop();
    let stats = server.stats();
    assert_eq!(
        (stats.active, stats.succeeded, stats.failed, stats.rejected),
        (0, 2, 1, 1),
        "{stats:?}"
    );
    assert_eq!(server.context().stats(), stats);
}

#[test]
fn a_unix_handler_sees_the_peers_credentials_and_tcp_has_none() {
    let dir = temp_dir();
    let path = dir.path().join("creds.sock");
    let (tx, rx) = unbounded();
    let running = serve(
        UnixStreamServer::<Counted>::with_state(tx.clone())
            .verify_request(not_from_127_0_0_2)
            .handle_error(|_, _| {})
            .bind(&path)
            .unwrap(),
    );
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"good").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ok");
    let creds = rx
        .recv_timeout(PATIENCE)
        .unwrap()
        .expect("unix peers have credentials");
    assert_eq!(creds.pid, std::process::id() as i32);
    assert_eq!(creds.uid, nix::unistd::getuid().as_raw());
    assert_eq!(creds.gid, nix::unistd::getgid().as_raw());
    running.stop();

    let running = serve(
        TcpServer::<Counted>::with_state(tx)
            .verify_request(not_from_127_0_0_2)
            .handle_error(|_, _| {})
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(send(running.inet(), b"good"), "ok");
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        None,
        "no credentials over TCP"
    );
    running.stop();
}

#[test]
fn socket_mode_sets_the_socket_file_permissions() {
    let dir = temp_dir();
    let path = dir.path().join("private.sock");
    let server = UnixStreamServer::<Counted>::with_state(unbounded().0)
        .verify_request(not_from_127_0_0_2)
        .handle_error(|_, _| {})
        .socket_mode(0o600)
        .bind(&path)
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(server);
    assert!(!path.exists());
}

/// What a handler finds set on its connection: `TCP_NODELAY` and the read and write timeouts.
#[derive(Handler)]
#[handler(state = Sender<(bool, Option<Duration>, Option<Duration>)>)]
struct Options;

impl StreamRequestHandler for Options {
    fn handle(
        &mut self,
        request: &mut StreamRequest<'_, Sender<(bool, Option<Duration>, Option<Duration>)>>,
    ) -> HandleResult {
        let seen = match (
            request.connection().as_tcp(),
            request.connection().as_unix(),
        ) {
            (Some(tcp), _) => (tcp.nodelay()?, tcp.read_timeout()?, tcp.write_timeout()?),
            (_, Some(unix)) => (false, unix.read_timeout()?, unix.write_timeout()?),
            _ => return Err("neither TCP nor Unix".into()),
        };
        request.server().state().send(seen)?;
        Ok(())
    }
}

/// `nodelay` and the timeouts reach every connection, whether the server bound its socket or
/// adopted one, over IPv4, IPv6 and Unix sockets. (TCP connections get them from the listening
/// socket, set once; this is what checks that they really do.)
#[test]
fn connection_options_reach_every_connection() {
    let read = Some(Duration::from_millis(1500));
    let write = Some(Duration::from_millis(2500));
    let (tx, rx) = unbounded();
    let builder = || {
        TcpServer::<Options>::with_state(tx.clone())
            .nodelay(true)
            .read_timeout(read)
            .write_timeout(write)
    };
    let adopted = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let servers = [
        builder().bind("127.0.0.1:0").unwrap(),
        builder().bind("[::1]:0").unwrap(),
        builder().from_listener(adopted).unwrap(),
    ];
    for server in servers {
        let running = serve(server);
        for _ in 0..2 {
            drop(tcp_client(running.inet()));
            assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (true, read, write));
        }
        running.stop();
    }

    let dir = temp_dir();
    let path = dir.path().join("options.sock");
    let server = UnixStreamServer::<Options>::with_state(tx.clone())
        .read_timeout(read)
        .write_timeout(write)
        .bind(&path)
        .unwrap();
    let running = serve(server);
    drop(UnixStream::connect(&path).unwrap());
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (false, read, write));
    running.stop();

    // Not asked for: left as the system has them.
    let server = TcpServer::<Options>::with_state(tx)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    drop(tcp_client(running.inet()));
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), (false, None, None));
    running.stop();
}

#[test]
fn serve_connection_serves_one_accepted_connection_as_inetd_would() {
    // What inetd hands a program: a connection someone else accepted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = tcp_client(listener.local_addr().unwrap());
    let (accepted, _) = listener.accept().unwrap();
    client.write_all(b"fail").unwrap();
    let (tx, rx) = unbounded();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&errors);
    let ok = TcpServer::<Counted>::with_state(tx)
        .read_timeout(Some(PATIENCE))
        .handle_error(move |_, error| seen.lock().unwrap().push(error.to_string()))
        .serve_connection(socketserver::Connection::Tcp(accepted))
        .unwrap();
    assert!(!ok, "the handler failed on purpose");
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        None,
        "TCP has no credentials"
    );
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("asked to fail"), "{errors:?}");
    // The writing half was shut down: the client sees end-of-file, not a hang.
    let mut rest = String::new();
    client.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}
