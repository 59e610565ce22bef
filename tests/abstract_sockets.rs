//! Linux abstract Unix sockets: `bind("@name")` on both Unix transports, served to Python
//! clients that connect to `"\0name"`; the server reports `@name`, no file appears, and closing
//! the server frees the name.

#[path = "util/activation.rs"]
mod activation;
mod util;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::Path;

use activation::{abstract_names, python, unique_name, EchoDatagrams, EchoLines, PY_STREAM_ECHO};
use socketserver::{Address, Error, UnixAddress, UnixDatagramServer, UnixStreamServer};
use util::{eventually, serve, PATIENCE};

fn abstract_address(name: &str) -> Address {
    Address::Unix(UnixAddress::Abstract(name.as_bytes().to_vec()))
}

/// Whether the kernel lists `@name` among its Unix sockets.
fn bound(name: &str) -> bool {
    abstract_names().iter().any(|n| n[1..] == *name)
}

#[test]
fn stream_server_binds_an_abstract_name() {
    let name = unique_name("stream");
    let at = format!("@{name}");
    let server = UnixStreamServer::<EchoLines>::builder()
        .backlog(16)
        .bind(&at)
        .expect("bind @name");
    assert_eq!(server.server_address(), &abstract_address(&name));
    assert_eq!(server.server_address().to_string(), at);
    assert!(
        !Path::new(&at).exists(),
        "a file named {at} appeared in the working directory"
    );
    assert!(bound(&name), "the kernel does not list {at}");

    let running = serve(server);
    let reply = python(PY_STREAM_ECHO, &[&at, "hello over @"]);
    assert_eq!(reply, "hello over @\n");
    running.stop().close();

    assert!(
        eventually(PATIENCE, || !bound(&name)),
        "{at} is still bound after close"
    );
    assert!(!Path::new(&at).exists());
    // The name is free again: a new server binds it.
    let again = UnixStreamServer::<EchoLines>::bind(&at).expect("bind @name again");
    again.close();
}

#[test]
fn datagram_server_binds_an_abstract_name() {
    let name = unique_name("dgram");
    let at = format!("@{name}");
    let server = UnixDatagramServer::<EchoDatagrams>::bind(&at).expect("bind @name");
    assert_eq!(server.server_address(), &abstract_address(&name));
    assert_eq!(server.server_address().to_string(), at);
    assert!(!Path::new(&at).exists());
    let running = serve(server);

    // The client binds an abstract name of its own, to be answered.
    let reply = python(
        r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(10)
s.bind("\0" + sys.argv[1][1:] + "-client")
s.sendto(b"ping over @", "\0" + sys.argv[1][1:])
data, sender = s.recvfrom(4096)
print(data.decode(), sender)
"#,
        &[&at],
    );
    // Python shows the server's abstract address with its NUL byte.
    assert_eq!(reply.trim_end(), format!("ping over @ b'\\x00{name}'"));
    running.stop().close();
    assert!(
        eventually(PATIENCE, || !bound(&name)),
        "{at} is still bound after close"
    );
}

#[test]
fn a_taken_abstract_name_is_addr_in_use() {
    let name = unique_name("taken");
    let at = format!("@{name}");
    let first = UnixStreamServer::<EchoLines>::bind(&at).expect("bind");
    match UnixStreamServer::<EchoLines>::bind(&at) {
        Err(Error::AddrInUse { addr, .. }) => assert_eq!(addr, abstract_address(&name)),
        Err(e) => panic!("expected AddrInUse, got {e}"),
        Ok(_) => panic!("two servers bound {at}"),
    }
    first.close();
}

#[test]
fn abstract_names_refuse_socket_mode_and_the_empty_name() {
    let at = format!("@{}", unique_name("mode"));
    match UnixStreamServer::<EchoLines>::builder()
        .socket_mode(0o600)
        .bind(&at)
    {
        Err(Error::InvalidOption { option, reason }) => {
            assert_eq!(option, "socket_mode");
            assert!(reason.contains("no permissions"), "{reason}");
        }
        Err(e) => panic!("expected InvalidOption, got {e}"),
        Ok(_) => panic!("socket_mode was ignored on {at}"),
    }
    match UnixDatagramServer::<EchoDatagrams>::bind("@") {
        Err(Error::InvalidAddress { addr, .. }) => assert_eq!(addr, "@"),
        Err(e) => panic!("expected InvalidAddress, got {e}"),
        Ok(_) => panic!("\"@\" bound"),
    }
}

#[test]
fn an_adopted_abstract_listener_reports_its_name() {
    let name = unique_name("adopted");
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap())
        .expect("bind an abstract listener");
    let server = UnixStreamServer::<EchoLines>::builder()
        .from_listener(listener)
        .expect("adopt");
    assert_eq!(server.server_address().to_string(), format!("@{name}"));
    let running = serve(server);
    let reply = python(PY_STREAM_ECHO, &[&format!("@{name}"), "adopted"]);
    assert_eq!(reply, "adopted\n");
    running.stop().close();
}
