//! Guide, chapter 4: a broadcast chat room that a slow client cannot stall.
//!
//! Run it:
//!
//! ```text
//! RUST_LOG=info cargo run --example guide-chat -- 127.0.0.1:9002
//! ```
//!
//! and join from two terminals (each line you type goes to everyone, you included):
//!
//! ```text
//! python3 -c "
//! import socket, sys, threading
//! s = socket.create_connection(('127.0.0.1', 9002))
//! threading.Thread(target=lambda: [print(l.decode(), end='') for l in s.makefile('rb')], daemon=True).start()
//! for line in sys.stdin: s.sendall(line.encode())"
//! ```
//!
//! The rule that makes a chat server safe: **never write to a client while holding a lock
//! that other clients need, and never wait on a client's socket for anyone but that client.**
//! Each client here has a bounded queue of messages and a writer thread of its own that
//! empties it into the socket. Broadcasting only puts a message (encoded once, shared) into
//! every queue with `try_send`, which never blocks. A client whose queue is full is not
//! reading: it is dropped (its connection shut down) and the room goes on at full speed.
//!
//! On joining, a client gets `welcome, you are N`; each line it sends reaches everyone as
//! `N: line`.
//!
//! Limits:
//!
//! | bound | default | flag |
//! |---|---|---|
//! | one line | 1 KiB | `--max-line BYTES` |
//! | messages queued for one client | 256 | `--queue N` |
//! | wait for a client's next line (idle clients are let go) | 300 s | `--read-timeout SECS` |
//! | wait for a client to take bytes | 10 s | `--write-timeout SECS` |
//! | clients in the room | 64 | `--max-connections N` |
//!
//! So a client costs at most `queue × max-line` bytes of queue (256 KiB by default) plus its
//! socket buffers, and two threads. Stop it with Ctrl-C or SIGTERM: clients waiting between
//! lines are let go at once, one in the middle of a line gets the close timeout (2 s) to finish
//! it, and the server exits 0.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use socketserver::{
    Connection, HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "../common/cli.rs"]
mod cli;
use cli::{exit_code, serve, Defaults, ServerLimits};

/// A chat room on TCP: every line goes to every client.
#[derive(Parser, Debug)]
#[command(name = "guide-chat")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "300", write_timeout: "10", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    /// The longest line accepted, in bytes, newline included.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(2..))]
    max_line: u64,
    /// Messages queued for one client before it is dropped as too slow.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    queue: u64,
    #[command(flatten)]
    limits: ServerLimits,
}

/// A message, encoded once and shared by every queue it is in.
type Message = Arc<[u8]>;

/// One client as the room sees it: its queue, and its connection to cut it off.
struct Member {
    queue: Sender<Message>,
    connection: Connection,
}

/// The state every handler shares.
struct Room {
    members: Mutex<BTreeMap<u64, Member>>,
    next_id: AtomicU64,
    max_line: u64,
    queue: usize,
}

impl Room {
    /// Puts `message` in every member's queue. Never blocks: the lock is held only for
    /// `try_send`, and a member whose queue is full is dropped.
    fn broadcast(&self, message: Message) {
        let mut members = self.members.lock();
        members.retain(
            |id, member| match member.queue.try_send(Arc::clone(&message)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    log::warn!("client {id} is not reading: dropped");
                    // Wakes its reader and its writer, whatever they are blocked on.
                    let _ = member.connection.shutdown(Shutdown::Both);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        );
    }

    fn leave(&self, id: u64) {
        self.members.lock().remove(&id);
    }
}

/// One per client, on its own thread (the `Threading` strategy).
#[derive(Handler)]
#[handler(state = Room)]
struct Chat {
    #[handler(state)]
    room: Arc<Room>,
}

impl StreamRequestHandler for Chat {
    fn handle(&mut self, request: &mut StreamRequest<'_, Room>) -> HandleResult {
        let id = self.room.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (queue, outbox) = crossbeam_channel::bounded::<Message>(self.room.queue);

        // The writer: the only code that writes to this client's socket. It ends when the
        // queue is closed (the client left) or a write fails (then it cuts the client off).
        let mut out = request.connection().try_clone()?;
        let cut = request.connection().try_clone()?;
        let writer = thread::Builder::new()
            .name(format!("chat writer {id}"))
            .spawn(move || {
                for message in outbox {
                    if let Err(e) = out.write_all(&message) {
                        log::info!("client {id}: write failed ({e}): dropped");
                        let _ = out.shutdown(Shutdown::Both);
                        return;
                    }
                }
            })?;

        let welcome: Message = format!("welcome, you are {id}\n").into_bytes().into();
        // The queue is empty, so this cannot be refused.
        let _ = queue.try_send(welcome);
        self.room.members.lock().insert(
            id,
            Member {
                queue,
                connection: cut,
            },
        );
        log::info!("client {id} ({}) joined", request.client_address());

        let result = self.read_lines(id, request);

        self.room.leave(id); // drops the queue's sender: the writer finishes and ends
        let _ = writer.join();
        log::info!("client {id} left");
        result
    }
}

impl Chat {
    /// Broadcasts each line the client sends, until it hangs up or the server closes.
    fn read_lines(&self, id: u64, request: &mut StreamRequest<'_, Room>) -> HandleResult {
        let mut line = Vec::new();
        // Idle while nothing of the next line has arrived: a stop then ends the wait at once.
        // `set_idle` returns false when the server is already stopping.
        while request.set_idle(request.rfile.buffer().is_empty()) {
            line.clear();
            (&mut request.rfile)
                .take(self.room.max_line)
                .read_until(b'\n', &mut line)?;
            request.set_idle(false);
            if line.is_empty() {
                return Ok(()); // end-of-file
            }
            if !line.ends_with(b"\n") {
                if line.len() as u64 == self.room.max_line {
                    return Err(
                        format!("client {id}: line over {} bytes", self.room.max_line).into(),
                    );
                }
                line.push(b'\n'); // the last line, cut off by end-of-file
            }
            let mut message = format!("{id}: ").into_bytes();
            message.extend_from_slice(&line);
            self.room.broadcast(message.into());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("guide-chat", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let room = Room {
        members: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
        max_line: args.max_line,
        queue: usize::try_from(args.queue)?,
    };
    let builder = TcpServer::<Chat, Threading>::with_state(room)
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)));
    let server = args.limits.apply(builder).bind(&args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves.
    serve(server)
}
