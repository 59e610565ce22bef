//! A WebSocket chat room: `GET /` serves a page, `GET /ws` switches the connection to the
//! WebSocket protocol (RFC 6455), and every text message goes to everyone in the room.
//!
//! Run it:
//!
//! ```text
//! cargo run --example websocket -- 127.0.0.1:8003
//! ```
//!
//! (`-- --help` lists the flags that change its limits), then open <http://127.0.0.1:8003/> in
//! two browser tabs and chat, or join from Python (`pip install websockets`):
//!
//! ```text
//! python3 - <<'EOF'
//! from websockets.sync.client import connect
//! with connect("ws://127.0.0.1:8003/ws") as ws:
//!     ws.send("hi")
//!     print(ws.recv())
//! EOF
//! ```
//!
//! In production: `--mode prefork --workers N` serves from N supervised worker processes
//! (`--worker-mode`, `--max-requests`: see `--help`); each worker process has its own chat room, so
//! clients on different workers do not see each other's messages: use one process for this chat.
//! Started by systemd with a socket (`LISTEN_FDS`, see `examples/deploy/`), it serves that socket
//! and ignores ADDRESS.
//!
//! # Limits
//!
//! Every byte a client can make the server hold is bounded, and so is every wait:
//!
//! | Bound | Default | Flag |
//! | --- | --- | --- |
//! | Clients connected at once (more wait in the listen backlog, or get `503` and are closed, or are closed) | 128, wait | `--max-connections`, `--overload wait\|reject\|close` |
//! | Connections from one client address at once | no limit | `--per-client N` |
//! | Metrics scrapers at once, and the time each may take (with `--metrics`) | 16, 5 s | (fixed) |
//! | Time for an HTTP request to arrive, and an idle HTTP keep-alive connection | 30 s | `--read-timeout` |
//! | Time for the client to take what is queued for it (else it is dropped) | 10 s | `--write-timeout` |
//! | One message (and so one frame) from a client; a larger one is refused with close code 1009 | 1 MiB | `--max-message` |
//! | Silence after the upgrade: pinged at half of it, closed (1001) at all of it | 60 s | `--idle-timeout` |
//! | Time for a frame or a fragmented message, once begun, to be finished (else 1008) | 60 s | `--idle-timeout` |
//! | Messages waiting for one client (else it is dropped) | 256 | `--queue-messages` |
//! | Bytes waiting for one client, including what is being written (else it is dropped) | 2 MiB | `--queue-bytes` |
//! | Reading what a client still sends after the server closed, so it gets the close frame | 2 s | (fixed) |
//! | A TLS handshake (with `--tls-cert`), in all | 10 s | (fixed: `ServerBuilder::tls_handshake_timeout`) |
//! | HTTP request head and body (the HTTP layer's own limits; a handshake with a body gets 400) | 64 KiB, 1 MiB | (fixed) |
//!
//! So one client holds at most about `--queue-bytes` + `--max-message` (3 MiB), and the whole
//! server at most `--max-connections` times that (384 MiB), less in practice: a broadcast is
//! encoded once and every client's queue holds the same bytes.
//!
//! # What it shows
//!
//! - One port, two protocols. The HTTP layer serves the page and answers the upgrade request
//!   with `101 Switching Protocols`; from then on the connection is a raw byte stream
//!   ([`Upgraded`]) that `tungstenite` speaks WebSocket on, blocking, on the connection's own
//!   thread (the `Threading` strategy gives each client one).
//! - Text messages are broadcast to every client, the sender included; binary messages are
//!   echoed to the sender only; pings get pongs and a close is answered with a close
//!   (tungstenite does both).
//! - A slow client costs only itself, as in production chat hubs: a broadcast never writes to
//!   a socket. It puts the frame (encoded once, shared by everyone) in each client's own
//!   bounded queue, wakes that client's thread (a byte on its wake-up pair) and moves on.
//!   Each connection's thread is the only one that writes to it: it sleeps in `poll(2)` on
//!   its socket and its wake-up pair, and empties its queue onto its socket when woken. (Over
//!   TLS this is a must: a TLS connection has one owner; another thread cannot write to it.)
//!   A client whose queue is full, or that does not take what is queued within the write
//!   timeout, is dropped from the room and disconnected (logged at info).
//! - A client joins the room when its handshake is accepted, before the `101` goes out, so a
//!   message sent the moment its handshake completes still reaches it: its queue fills until
//!   its thread starts writing, under the same bounds.
//! - Idle clients: after half the idle timeout of silence the server sends a ping (browsers
//!   and Python's `websockets` answer it by themselves); a client that sends nothing at all,
//!   not even that pong, is closed at the idle timeout.
//! - A client that vanishes (its socket fails a read or a write) is dropped from the room, and
//!   the others never notice.
//!
//! Over TLS: `--tls-cert chain.pem --tls-key key.pem` serves the page over `https://` and the
//! chat over `wss://` (the page picks the scheme it was loaded with); from Python,
//! `connect("wss://localhost:8003/ws", ssl=ssl.create_default_context(cafile="ca.pem"))`.
//! With `--mode prefork`, SIGHUP reloads the certificate files; in one process, restart. The
//! TLS flags come with the `tls` feature (on by default).
//!
//! `RUST_LOG=info` shows clients joining and leaving.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use parking_lot::Mutex;
use socketserver::http::{Http, HttpHandler, Request, Response, Upgraded};
use socketserver::{Connection, HandleResult, Handler, ServerContext, TcpServer};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

// The opening handshake and the frame watcher; the fuzz target includes the same file.
#[path = "protocol/websocket.rs"]
mod protocol;
use protocol::{handshake, FrameWatch};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "common/cli.rs"]
mod cli;
use cli::{bind_tcp, exit_code, seconds, Defaults, Operations, ProcessFlags, ServerLimits};

/// The page: connects to `/ws`, shows what arrives, sends what is typed.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>socketserver chat</title>
<h1>Chat</h1>
<p id="status">connecting…</p>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<ul id="log"></ul>
<script>
  // wss: when the page came over https (--tls-cert), ws: otherwise.
  const socket = location.protocol === "https:"
    ? new WebSocket(`wss://${location.host}/ws`)
    : new WebSocket(`ws://${location.host}/ws`);
  const status = document.getElementById("status");
  socket.onopen = () => { status.textContent = "connected"; };
  socket.onclose = () => { status.textContent = "disconnected"; };
  socket.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    document.getElementById("log").append(item);
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const text = document.getElementById("text");
    if (text.value) socket.send(text.value);
    text.value = "";
  };
</script>
</html>
"#;

/// After the server closes a WebSocket, how long it reads (and discards) what the client
/// still sends, so the client reads the close frame instead of a connection reset.
const LINGER: Duration = Duration::from_secs(2);

/// A chat room over WebSocket, safe against clients that do not read.
#[derive(Parser, Debug, Clone)]
#[command(name = "websocket")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "30", write_timeout: "10", max_connections: "128" }.flags()))]
// Here the read timeout bounds only the HTTP side: after the upgrade, --idle-timeout does.
#[command(mut_arg("read_timeout", |arg| arg.help(
    "Seconds an HTTP request may take to arrive (and an idle keep-alive connection may wait)"
)))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    #[command(flatten)]
    limits: ServerLimits,
    // --mode threading|prefork, --workers, --worker-mode, --max-requests.
    #[command(flatten)]
    process: ProcessFlags,
    // --metrics ADDRESS, --drain-delay SECS.
    #[command(flatten)]
    operations: Operations,
    /// Seconds of silence after which a client is closed (it is pinged at half of it); also
    /// the longest a frame or fragmented message may stay unfinished.
    #[arg(long, default_value = "60", value_parser = seconds)]
    idle_timeout: Duration,
    /// The largest message (and frame) a client may send, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_message: usize,
    /// The most messages waiting for one client before it is dropped.
    #[arg(long, default_value_t = 256)]
    queue_messages: usize,
    /// The most bytes waiting for one client before it is dropped (at least --max-message
    /// plus 14, so that one largest message fits).
    #[arg(long, default_value_t = 2 << 20)]
    queue_bytes: usize,
    // --tls-cert and --tls-key: https:// and wss:// (with the `tls` feature, a default one).
    #[cfg(feature = "tls")]
    #[command(flatten)]
    tls: cli::TlsFlags,
}

/// Why a frame was not queued for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Its queue was full: it has just been dropped.
    Full,
    /// It had already been dropped or has left.
    Gone,
}

/// What waits to be written to one client.
struct Outbox {
    frames: VecDeque<Arc<[u8]>>,
    /// Bytes queued plus those being written now.
    bytes: usize,
    /// `Open` until the connection ends (`Finishing`) or the client is dropped (`Dropped`).
    state: State,
    /// A clone of its socket, once handed over: shutting it down wakes its thread from `poll`
    /// or a read (a shutdown, never a write: the connection's own thread does every write).
    socket: Option<Connection>,
    /// The sending end of its thread's wake-up pair: a byte here says "frames are queued".
    wake: Option<UnixStream>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Finishing,
    Dropped,
}

/// One client in the room: its bounded outgoing queue, which any thread may add to and only
/// the connection's own thread empties, onto its socket (over TLS, the TLS connection has
/// one owner: no other thread may write to it).
struct Peer {
    id: u64,
    out: Mutex<Outbox>,
    max_messages: usize,
    max_bytes: usize,
}

impl Peer {
    /// Queues whole frames for the client and wakes its thread, or drops the client if its
    /// queue is full. Never blocks on the network: only this client's lock is taken, and only
    /// to touch the queue.
    fn push(&self, frames: Arc<[u8]>) -> Result<(), Refused> {
        let mut out = self.out.lock();
        if out.state != State::Open {
            return Err(Refused::Gone);
        }
        if out.frames.len() >= self.max_messages || out.bytes + frames.len() > self.max_bytes {
            log::info!(
                "client {} is not reading ({} messages, {} bytes waiting): dropped",
                self.id,
                out.frames.len(),
                out.bytes
            );
            drop_client(&mut out);
            return Err(Refused::Full);
        }
        out.bytes += frames.len();
        out.frames.push_back(frames);
        if let Some(mut wake) = out.wake.as_ref() {
            // Non-blocking: a full pair already holds a wake-up the thread has not seen.
            let _ = wake.write(&[1]);
        }
        Ok(())
    }

    /// Hands over a clone of the socket (for shutting it down) and the wake-up pair's sending
    /// end once the `101` went out; `false` if the client was dropped while it waited.
    fn open(&self, socket: Connection, wake: UnixStream) -> bool {
        let mut out = self.out.lock();
        out.socket = Some(socket);
        out.wake = Some(wake);
        out.state == State::Open
    }

    /// The connection is ending: what is queued still goes out (a close frame, say).
    fn finish(&self) {
        let mut out = self.out.lock();
        if out.state == State::Open {
            out.state = State::Finishing;
        }
    }

    /// Drops the client at once: its queue is emptied and its socket shut down.
    fn disconnect(&self) {
        drop_client(&mut self.out.lock());
    }

    /// Writes what is queued to the client, on the connection's own thread. Each batch must
    /// be taken by the client within `write_timeout`, in all (a client that reads a byte now
    /// and then cannot stretch it): else the error, and the caller drops the client.
    fn flush_to(&self, stream: &mut Upgraded<'_>, write_timeout: Duration) -> io::Result<()> {
        loop {
            let batch: Vec<Arc<[u8]>> = {
                let mut out = self.out.lock();
                if out.state == State::Dropped {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                if out.frames.is_empty() {
                    return Ok(());
                }
                out.frames.drain(..).collect()
            };
            let deadline = Instant::now() + write_timeout;
            let size: usize = batch.iter().map(|frames| frames.len()).sum();
            batch
                .iter()
                .try_for_each(|frames| write_by(stream, frames, deadline))?;
            let mut out = self.out.lock();
            out.bytes = out.bytes.saturating_sub(size);
        }
    }
}

fn drop_client(out: &mut Outbox) {
    out.state = State::Dropped;
    out.frames.clear();
    out.bytes = 0;
    if let Some(socket) = &out.socket {
        // Ends a write in progress and wakes the client's thread from its wait.
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// The most bytes written with one timeout: each piece must go out before `deadline`, and
/// the socket's write timeout is set to what is left before every piece, so partial progress
/// does not restart the clock.
const PIECE: usize = 16 * 1024;

/// Writes all of `bytes` to the client before `deadline`.
fn write_by(stream: &mut Upgraded<'_>, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    for piece in bytes.chunks(PIECE) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.connection().set_write_timeout(Some(left))?;
        stream.write_all(piece)?;
    }
    Ok(())
}

/// Everyone connected, by a number given at join, and the limits from the command line.
struct Room {
    peers: Mutex<BTreeMap<u64, Arc<Peer>>>,
    next_id: AtomicU64,
    args: Args,
}

impl Room {
    fn join(&self) -> Arc<Peer> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peer = Arc::new(Peer {
            id,
            out: Mutex::new(Outbox {
                frames: VecDeque::new(),
                bytes: 0,
                state: State::Open,
                socket: None,
                wake: None,
            }),
            max_messages: self.args.queue_messages,
            max_bytes: self.args.queue_bytes,
        });
        let mut peers = self.peers.lock();
        peers.insert(id, Arc::clone(&peer));
        log::info!("client {id} joined; {} in the room", peers.len());
        peer
    }

    fn leave(&self, id: u64) {
        let removed = self.peers.lock().remove(&id);
        if let Some(peer) = removed {
            peer.disconnect();
            log::info!("client {id} left");
        }
    }

    /// Sends a text message to everyone: one encoding, queued for each client. A client
    /// whose queue is full is dropped; no one is waited for.
    fn broadcast(&self, text: &str) {
        let mut frame = Vec::new();
        let encoded = Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true)
            .format(&mut frame);
        if encoded.is_err() {
            return;
        }
        let frame: Arc<[u8]> = frame.into();
        let peers: Vec<Arc<Peer>> = self.peers.lock().values().cloned().collect();
        for peer in peers {
            if peer.push(Arc::clone(&frame)).is_err() {
                self.leave(peer.id);
            }
        }
    }
}

/// What tungstenite reads from and writes to: reads come from the upgraded connection
/// (watched by a [`FrameWatch`]), writes go to the client's own queue. Each write is whole
/// frames: tungstenite hands over its buffer of complete frames at once.
///
/// A read that would wait sleeps in `poll(2)` on the socket and on the wake-up pair, so a
/// frame queued by a broadcast wakes the connection's thread to write it: the read then ends
/// with `WouldBlock`, the session loop writes the queue and reads on (tungstenite keeps what
/// it had read). Bytes already buffered (read along with the request, or decrypted by TLS)
/// are read at once: `poll` cannot see them.
struct Duplex<'r> {
    reader: Upgraded<'r>,
    watch: FrameWatch,
    /// The longest a frame or a fragmented message may stay unfinished.
    unfinished_limit: Duration,
    peer: Arc<Peer>,
    /// The receiving end of the wake-up pair (non-blocking).
    wake: UnixStream,
    /// The longest one wait lasts: then the session loop checks the idle limits.
    tick: Duration,
}

impl Duplex<'_> {
    /// Sleeps until the client sends something (`true`), or frames are queued or the tick
    /// passes (`false`).
    fn wait(&mut self) -> io::Result<bool> {
        if self.reader.buffered() > 0 {
            return Ok(true);
        }
        let timeout = PollTimeout::try_from(self.tick).unwrap_or(PollTimeout::MAX);
        let (socket, woken) = {
            let connection = self.reader.connection();
            let mut fds = [
                PollFd::new(connection.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if woken {
            let mut drain = [0u8; 64];
            while matches!(self.wake.read(&mut drain), Ok(n) if n > 0) {}
        }
        Ok(socket)
    }
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self
            .watch
            .unfinished_for(Instant::now())
            .is_some_and(|d| d > self.unfinished_limit)
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a frame or message left unfinished",
            ));
        }
        if !self.wait()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.reader.read(buf)?;
        self.watch
            .feed(buf.get(..n).unwrap_or_default(), Instant::now());
        Ok(n)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.peer.push(buf.into()) {
            Ok(()) => Ok(buf.len()),
            Err(_) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why the server ends a WebSocket session.
enum End {
    /// The client closed, vanished or was dropped: nothing more to say.
    Quietly,
    /// The server closes with this code and reason.
    Close(CloseCode, &'static str),
}

/// One connection: a page request, or a client in the room from its handshake on.
#[derive(Handler)]
#[handler(state = Room)]
struct Chat {
    #[handler(state)]
    room: Arc<Room>,
    /// Its place in the room, once its handshake was accepted.
    member: Option<Arc<Peer>>,
}

/// Leaves the room when the connection ends, however it ends (even if the `101` could not be
/// sent).
impl Drop for Chat {
    fn drop(&mut self) {
        if let Some(peer) = self.member.take() {
            self.room.leave(peer.id);
        }
    }
}

impl HttpHandler for Chat {
    fn respond(&mut self, request: &Request, _: &ServerContext<Room>) -> Response {
        match (request.method(), request.path()) {
            ("GET" | "HEAD", "/") => Response::html(200, PAGE),
            ("GET", "/ws") => {
                let response = handshake(request);
                if response.status() == 101 && self.member.is_none() {
                    self.member = Some(self.room.join());
                }
                response
            }
            (_, "/" | "/ws") => Response::new(405).with_header("Allow", "GET"),
            _ => Response::text(404, "not found\n"),
        }
    }

    fn upgraded(
        &mut self,
        _request: &Request,
        stream: Upgraded<'_>,
        _: &ServerContext<Room>,
    ) -> HandleResult {
        let Some(peer) = self.member.clone() else {
            return Ok(());
        };
        let args = &self.room.args;
        let connection = stream.connection();
        // The wake-up pair: a broadcast writes a byte to one end, this thread sleeps on the
        // other along with the socket. Both ends non-blocking.
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        if !peer.open(connection.try_clone()?, wake_tx) {
            // Dropped while its `101` was going out: its queue filled up meanwhile.
            return Ok(());
        }
        // Reads wake at least every quarter of the idle timeout, to ping and check the limits.
        let tick = (args.idle_timeout / 4).max(Duration::from_millis(1));
        connection.set_read_timeout(Some(tick))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(args.max_message))
            .max_frame_size(Some(args.max_message));
        let duplex = Duplex {
            reader: stream,
            watch: FrameWatch::new(Instant::now()),
            unfinished_limit: args.idle_timeout,
            peer: Arc::clone(&peer),
            wake: wake_rx,
            tick,
        };
        let mut ws = WebSocket::from_raw_socket(duplex, Role::Server, Some(config));
        let end = self.session(&mut ws, peer.id);
        if let End::Close(code, reason) = end {
            log::info!("client {}: closing, {reason}", peer.id);
            let _ = ws.close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
        }
        peer.finish();
        // The close frame (and anything else still queued), then the client's own close.
        let duplex = ws.get_mut();
        let sent = duplex
            .peer
            .flush_to(&mut duplex.reader, args.limits.write_timeout);
        // Then the end of the writing side (after `close_notify` on TLS): a client waits for
        // the server to close first (RFC 6455), and reads it now.
        if sent.and_then(|()| duplex.reader.close_write()).is_ok() {
            if let End::Close(..) = end {
                linger(&mut duplex.reader);
            }
        }
        Ok(())
    }
}

impl Chat {
    /// Reads messages until the session ends, and says how it ends.
    fn session(&self, ws: &mut WebSocket<Duplex<'_>>, id: u64) -> End {
        let idle = self.room.args.idle_timeout;
        let write_timeout = self.room.args.limits.write_timeout;
        let mut last_ping: Option<Instant> = None;
        loop {
            let read = ws.read();
            // What was queued meanwhile (broadcasts, tungstenite's pongs and echoes) goes out
            // now, from this thread: the only one that writes to this connection.
            let duplex = ws.get_mut();
            if let Err(e) = duplex.peer.flush_to(&mut duplex.reader, write_timeout) {
                log::info!("client {id} is not taking its messages ({e}): dropped");
                duplex.peer.disconnect();
                return End::Quietly;
            }
            let error = match read {
                Ok(Message::Text(text)) => {
                    self.room.broadcast(text.as_str());
                    continue;
                }
                Ok(Message::Binary(data)) => match ws.send(Message::Binary(data)) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                // Pings are answered (and closes acknowledged) by tungstenite itself, on the
                // next read; a pong only shows the client is there.
                Ok(_) => continue,
                Err(e) => e,
            };
            return match error {
                // The read timeout: a quarter of the idle timeout passed without a byte.
                WsError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let silent = ws.get_ref().watch.silent_for(Instant::now());
                    if silent >= idle {
                        End::Close(CloseCode::Away, "idle for too long")
                    } else {
                        if silent >= idle / 2 && last_ping.is_none_or(|t| t.elapsed() >= idle / 2) {
                            last_ping = Some(Instant::now());
                            if ws.send(Message::Ping(Default::default())).is_err() {
                                return End::Quietly;
                            }
                        }
                        continue;
                    }
                }
                // From `Duplex::read`: a frame or a fragmented message was begun too long ago.
                WsError::Io(e) if e.kind() == io::ErrorKind::TimedOut => {
                    End::Close(CloseCode::Policy, "message not finished in time")
                }
                // A frame or message over --max-message, refused from its header alone.
                WsError::Capacity(e) => {
                    log::info!("client {id}: {e}");
                    End::Close(CloseCode::Size, "message too big")
                }
                WsError::Utf8(_) => End::Close(CloseCode::Invalid, "text is not UTF-8"),
                WsError::Protocol(e) => {
                    log::info!("client {id}: {e}");
                    End::Close(CloseCode::Protocol, "protocol error")
                }
                // The close handshake is complete, or the client vanished or was dropped.
                WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => End::Quietly,
                e => {
                    log::info!("client {id}: {e}");
                    End::Quietly
                }
            };
        }
    }
}

/// After the server closed a session, reads and discards what the client still sends, until
/// it closes too or [`LINGER`] passes: closing a socket with unread data sends a reset, which
/// can destroy the close frame before the client reads it.
fn linger(reader: &mut Upgraded<'_>) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || reader.connection().set_read_timeout(Some(left)).is_err() {
            return;
        }
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    // One largest message (plus its frame header) must fit in a client's queue.
    if args.queue_messages == 0 || args.queue_bytes < args.max_message.saturating_add(14) {
        eprintln!(
            "websocket: --queue-messages must be at least 1, --queue-bytes at least --max-message + 14"
        );
        return ExitCode::FAILURE;
    }
    exit_code("websocket", run(args))
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // A thread per connection, which reads and writes its chat client: a chat client stays
    // connected for as long as it likes. On Ctrl-C, chats still open are given 2 s, then left
    // behind as the process exits.
    let room = Room {
        peers: Mutex::default(),
        next_id: AtomicU64::new(0),
        args: args.clone(),
    };
    let builder = TcpServer::<Http<Chat>>::with_state(room)
        .strategy(args.process.strategy()?)
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)));
    // --tls-cert and --tls-key: https:// and wss:// (ALPN http/1.1); under --mode prefork,
    // SIGHUP reloads the files (`reload`).
    #[cfg(feature = "tls")]
    let (builder, reload) = args.tls.apply(builder, &["http/1.1"])?;
    #[cfg(not(feature = "tls"))]
    let reload = cli::Reload::default();
    // Binds ADDRESS, or serves the socket systemd passed (LISTEN_FDS).
    let builder = args.operations.apply(args.limits.apply(builder));
    let server = bind_tcp(builder, &args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves: in this process,
    // or from the worker processes of `--mode prefork`.
    args.process.serve(server, &args.operations, &reload)
}
