//! A handler that misbehaves on request (floods a client that vanishes, panics), and the fault
//! scenarios every strategy must survive: resets, half-closed connections, clients that vanish
//! mid-reply.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};

use super::tcp_client;

/// Its first line says what to do: `echo` copies the rest back until end-of-file, `flood`
/// writes 32 MiB (giving up quietly when the client is gone, so that a child that survives
/// exits with status 0), `floodv` does the same with vectored writes to the connection,
/// `panic` panics.
#[derive(Handler)]
pub struct Faulty;

/// The panic message of `panic` requests; the panic hook of tests/panics.rs keeps it quiet.
pub const ASKED: &str = "asked to panic";

impl StreamRequestHandler for Faulty {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut command = String::new();
        request.rfile.read_line(&mut command)?;
        match command.trim_end() {
            "echo" => {
                io::copy(&mut request.rfile, &mut request.wfile)?;
            }
            "flood" => {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..512 {
                    if request.wfile.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
            "floodv" => {
                // Vectored writes straight to the connection (`writev`-like).
                let chunk = vec![b'v'; 32 * 1024];
                let mut connection = request.connection();
                for _ in 0..1024 {
                    let slices = [io::IoSlice::new(&chunk), io::IoSlice::new(&chunk)];
                    if !matches!(connection.write_vectored(&slices), Ok(n) if n > 0) {
                        break;
                    }
                }
            }
            "panic" => panic!("{ASKED}"),
            _ => {}
        }
        Ok(())
    }
}

/// `echo` round trip: sends `text`, half-closes, reads everything back.
pub fn echo(addr: SocketAddr, text: &str) -> String {
    let mut client = tcp_client(addr);
    client
        .write_all(format!("echo\n{text}").as_bytes())
        .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

/// Closes `client` with a reset (`SO_LINGER` 0) instead of a FIN.
pub fn reset(client: TcpStream) {
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
}

/// Five requests: two echoes, one reset mid-request (fails), one half-closed echo, and one
/// flood whose client resets after the first 64 KiB (succeeds: the handler gives up quietly).
pub fn fault_scenarios(addr: SocketAddr) {
    assert_eq!(echo(addr, "before"), "before");

    // An abrupt reset while the handler reads.
    let mut client = tcp_client(addr);
    client.write_all(b"echo\npartial").unwrap();
    let mut back = [0u8; 7];
    client.read_exact(&mut back).unwrap();
    reset(client);

    // Half-closed: the client is done sending, but still reads the whole reply.
    let text = "line one\nline two\n".repeat(1000);
    assert_eq!(echo(addr, &text), text);

    // The client vanishes while the server writes a large reply: no SIGPIPE death.
    let mut client = tcp_client(addr);
    client.write_all(b"flood\n").unwrap();
    let mut first = vec![0u8; 64 * 1024];
    client.read_exact(&mut first).unwrap();
    reset(client);

    assert_eq!(echo(addr, "after"), "after");
}

/// The requests of [`fault_scenarios`] as (succeeded, failed).
pub const FAULT_OUTCOMES: (u64, u64) = (4, 1);
