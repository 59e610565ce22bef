//! A WebSocket chat room: `GET /` serves a page, `GET /ws` switches the connection to the
//! WebSocket protocol (RFC 6455), and every text message goes to everyone in the room.
//!
//! Run it:
//!
//! ```text
//! cargo run --example websocket -- 127.0.0.1:8003
//! ```
//!
//! then open <http://127.0.0.1:8003/> in two browser tabs and chat, or join from Python
//! (`pip install websockets`):
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
//! What it shows:
//!
//! - One port, two protocols. The HTTP layer serves the page and answers the upgrade request
//!   with `101 Switching Protocols`; from then on the connection is a raw byte stream
//!   ([`Upgraded`]) that `tungstenite` speaks WebSocket on, blocking, on the connection's own
//!   thread (the `Threading` strategy gives each client one).
//! - Text messages are broadcast to every client, the sender included; binary messages are
//!   echoed to the sender only; pings get pongs and a close is answered with a close
//!   (tungstenite does both).
//! - Writing from other threads: a broadcast runs on the *sender's* thread and writes to every
//!   client's socket. Each client's socket is cloned once into a `Peer` whose mutex makes every
//!   write a whole number of frames, whoever writes. A server's frames are never masked, so a
//!   broadcast is encoded once and the same bytes go to everyone.
//! - A client joins the room when its handshake is accepted, before the `101` goes out, so a
//!   message sent the moment its handshake completes still reaches it: frames for it wait
//!   until its connection is handed over, then follow the `101`.
//! - A client that vanishes (its socket fails a read or a write) is dropped from the room, and
//!   the others never notice.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use socketserver::http::{Http, HttpHandler, Request, Response, Upgraded};
use socketserver::{Connection, HandleResult, Handler, ServerContext, TcpServer, Threading};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

// The opening handshake; the fuzz target includes the same file.
#[path = "protocol/websocket.rs"]
mod protocol;
use protocol::handshake;

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
  const socket = new WebSocket(`ws://${location.host}/ws`);
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

/// One client in the room, written to from any thread: a clone of its socket once the
/// connection is handed over, frames waiting for it until then.
struct Peer {
    out: Mutex<Out>,
}

enum Out {
    Waiting(Vec<u8>),
    Open(Connection),
}

impl Peer {
    /// A client whose `101` has not gone out yet.
    fn waiting() -> Peer {
        Peer {
            out: Mutex::new(Out::Waiting(Vec::new())),
        }
    }

    /// Writes whole frames; the lock keeps two writers' frames from interleaving.
    fn send(&self, frames: &[u8]) -> io::Result<()> {
        match &mut *self.out.lock() {
            Out::Waiting(queued) => {
                queued.extend_from_slice(frames);
                Ok(())
            }
            Out::Open(socket) => socket.write_all(frames),
        }
    }

    /// Hands over the connection, after its `101`: what waited goes out first.
    fn open(&self, mut socket: Connection) -> io::Result<()> {
        let mut out = self.out.lock();
        if let Out::Waiting(queued) = &*out {
            socket.write_all(queued)?;
        }
        *out = Out::Open(socket);
        Ok(())
    }

    /// Wakes the client's thread if it is blocked reading.
    fn shut_down(&self) {
        if let Out::Open(socket) = &*self.out.lock() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// Everyone connected, by a number given at join.
#[derive(Default)]
struct Room {
    peers: Mutex<BTreeMap<u64, Arc<Peer>>>,
    next_id: AtomicU64,
}

impl Room {
    fn join(&self, peer: Arc<Peer>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut peers = self.peers.lock();
        peers.insert(id, peer);
        log::info!("client {id} joined; {} in the room", peers.len());
        id
    }

    fn leave(&self, id: u64) {
        let removed = self.peers.lock().remove(&id);
        if let Some(peer) = removed {
            peer.shut_down();
            log::info!("client {id} left");
        }
    }

    /// Sends a text message to everyone; a client whose socket fails is dropped.
    fn broadcast(&self, text: &str) {
        let mut frame = Vec::new();
        let encoded = Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true)
            .format(&mut frame);
        if encoded.is_err() {
            return;
        }
        // Write outside the room's lock, so one slow client delays no join or leave.
        let peers: Vec<(u64, Arc<Peer>)> = self
            .peers
            .lock()
            .iter()
            .map(|(id, peer)| (*id, Arc::clone(peer)))
            .collect();
        for (id, peer) in peers {
            if let Err(e) = peer.send(&frame) {
                log::info!("client {id} vanished: {e}");
                self.leave(id);
            }
        }
    }
}

/// What tungstenite reads from and writes to: reads come from the upgraded connection,
/// writes go through the peer's lock (each write is whole frames: tungstenite hands over its
/// buffer of complete frames at once).
struct Duplex<'r> {
    reader: Upgraded<'r>,
    peer: Arc<Peer>,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.peer.send(buf).map(|()| buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection: a page request, or a client in the room from its handshake on.
#[derive(Handler)]
#[handler(state = Room)]
struct Chat {
    #[handler(state)]
    room: Arc<Room>,
    /// Its number and place in the room, once its handshake was accepted.
    member: Option<(u64, Arc<Peer>)>,
}

/// Leaves the room when the connection ends, however it ends (even if the `101` could not be
/// sent).
impl Drop for Chat {
    fn drop(&mut self) {
        if let Some((id, _)) = self.member.take() {
            self.room.leave(id);
        }
    }
}

impl HttpHandler for Chat {
    fn respond(&mut self, request: &Request, _: &ServerContext<Room>) -> Response {
        match (request.method(), request.path()) {
            ("GET" | "HEAD", "/") => Response::html(200, PAGE),
            ("GET", "/ws") => {
                let response = handshake(request);
                if response.status() == 101 {
                    let peer = Arc::new(Peer::waiting());
                    self.member = Some((self.room.join(Arc::clone(&peer)), peer));
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
        let Some((id, peer)) = self.member.clone() else {
            return Ok(());
        };
        let socket = stream.connection().try_clone()?;
        // A client that stops reading holds up a broadcast at most this long, then is dropped.
        socket.set_write_timeout(Some(Duration::from_secs(5)))?;
        peer.open(socket)?;
        let room = &self.room;
        let config = WebSocketConfig::default().max_message_size(Some(1 << 20));
        let mut ws = WebSocket::from_raw_socket(
            Duplex {
                reader: stream,
                peer,
            },
            Role::Server,
            Some(config),
        );
        loop {
            match ws.read() {
                Ok(Message::Text(text)) => room.broadcast(text.as_str()),
                Ok(Message::Binary(data)) => ws.send(Message::Binary(data))?,
                // Pings are answered (and closes acknowledged) by tungstenite itself, on the
                // next read.
                Ok(_) => {}
                // The close handshake is complete, or the client vanished: not an error.
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => break,
                Err(WsError::Protocol(e)) => {
                    log::info!("client {id}: {e}");
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: websocket ADDRESS (for example 127.0.0.1:8003)");
        return ExitCode::FAILURE;
    };
    match run(&address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("websocket: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    // A thread per connection: a chat client stays connected for as long as it likes.
    // On Ctrl-C, chats still open are given 2 s, then left behind as the process exits.
    let server = TcpServer::<Http<Chat>, Threading>::builder()
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)))
        .bind(address)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "serving on {}", server.server_address())?;
    stdout.flush()?;
    drop(stdout);
    server.serve_until_signal()?;
    Ok(())
}
