//! Guide, chapter 1: an echo server on `std::net` alone, without this crate.
//!
//! Run it:
//!
//! ```text
//! cargo run --example guide-sockets -- 127.0.0.1:9000
//! ```
//!
//! and talk to it:
//!
//! ```text
//! python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 9000)); s.sendall(b'hi'); print(s.recv(2))"
//! ```
//!
//! It is the server of Python's socket HOWTO, made safe to leave running: one thread per
//! client, so a slow client holds up nobody; a read timeout, so a client that connects and
//! says nothing is let go; a write timeout, so a client that never reads cannot hold its
//! thread; and a cap on clients served at once, so a crowd cannot start a thread each. When
//! the cap is reached the accept loop waits for a client to leave, and new clients wait in the
//! kernel's listen backlog, where they cost nothing.
//!
//! Limits:
//!
//! | bound | default | flag |
//! |---|---|---|
//! | wait for a client's next bytes | 30 s | `--read-timeout SECS` |
//! | wait to send a reply | 30 s | `--write-timeout SECS` |
//! | clients served at once | 64 | `--max-connections N` |
//! | bytes held per client | 4 KiB (one buffer) | |
//!
//! Ctrl-C ends the process at once (the default for SIGINT, as Python's `KeyboardInterrupt`
//! does here); chapter 3's servers stop gracefully instead.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use parking_lot::{Condvar, Mutex};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections) and
// their parsers; this program applies the limits itself, below.
#[path = "../common/cli.rs"]
mod cli;
use cli::{announce, exit_code, Defaults, ServerLimits};

/// An echo server on std::net: a thread per client, timeouts and a cap.
#[derive(Parser, Debug)]
#[command(name = "guide-sockets")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "30", write_timeout: "30", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    #[command(flatten)]
    limits: ServerLimits,
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("guide-sockets", run(&Args::parse()))
}

/// How many clients are being served; the accept loop waits on `left` at the cap.
#[derive(Default)]
struct Slots {
    busy: Mutex<usize>,
    left: Condvar,
}

fn run(args: &Args) -> io::Result<()> {
    // socket() + bind() + listen(), in one call.
    let listener = TcpListener::bind(&args.address)?;
    announce(&listener.local_addr()?); // serving on ADDRESS
    let slots = Arc::new(Slots::default());
    loop {
        // Wait for a free slot before accepting, so the crowd waits in the backlog.
        {
            let mut busy = slots.busy.lock();
            while *busy >= args.limits.max_connections {
                slots.left.wait(&mut busy);
            }
            *busy += 1;
        }
        let (conn, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // A client that gave up before we accepted it, or no descriptors left:
                // report it and go on.
                log::warn!("accept failed: {e}");
                release(&slots);
                continue;
            }
        };
        let (read_timeout, write_timeout) = (args.limits.read_timeout, args.limits.write_timeout);
        let slots_for_client = Arc::clone(&slots);
        let spawned = thread::Builder::new()
            .name(format!("client {peer}"))
            .spawn(move || {
                match echo(conn, read_timeout, write_timeout) {
                    Ok(()) => log::debug!("{peer} hung up"),
                    Err(e) => log::info!("{peer} dropped: {e}"),
                }
                release(&slots_for_client);
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for {peer}: {e}");
            release(&slots);
        }
    }
}

fn release(slots: &Slots) {
    *slots.busy.lock() -= 1;
    slots.left.notify_one();
}

/// Sends back everything the client sends, until it hangs up or a timeout passes.
fn echo(mut conn: TcpStream, read_timeout: Duration, write_timeout: Duration) -> io::Result<()> {
    conn.set_read_timeout(Some(read_timeout))?; // settimeout(), for recv
    conn.set_write_timeout(Some(write_timeout))?; // settimeout(), for sendall
    let mut buf = [0; 4096];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => return Ok(()), // recv() == b'': the client closed its side
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(describe(e, "nothing received")),
        };
        conn.write_all(&buf[..n]) // sendall()
            .map_err(|e| describe(e, "reply not taken"))?;
    }
}

/// A timeout is reported as such (on Unix it comes back as `WouldBlock`).
fn describe(e: io::Error, what: &str) -> io::Error {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            io::Error::new(ErrorKind::TimedOut, format!("{what} within the timeout"))
        }
        _ => e,
    }
}
