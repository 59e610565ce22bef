//! Guide, chapter 2: length-prefixed messages, the framing most binary protocols use.
//!
//! Run it:
//!
//! ```text
//! cargo run --example guide-framing -- 127.0.0.1:9001
//! ```
//!
//! and talk to it:
//!
//! ```text
//! python3 -c "
//! import socket, struct
//! s = socket.create_connection(('127.0.0.1', 9001))
//! msg = 'héllo'.encode()
//! s.sendall(struct.pack('!I', len(msg)) + msg)
//! f = s.makefile('rb')
//! n, = struct.unpack('!I', f.read(4))
//! print(f.read(n).decode())"
//! ```
//!
//! A message is 4 bytes of length (big-endian, Python's `struct.pack('!I', n)`) followed by
//! that many bytes of UTF-8 text. Each is answered with the text upper-cased, in the same
//! framing. A message over the size limit, or that is not UTF-8, is answered with a message
//! starting `error: `, and the connection closes: after a bad length there is no telling where
//! the next message would start. The length is checked *before* anything is allocated, since
//! the client chose it.
//!
//! Limits:
//!
//! | bound | default | flag |
//! |---|---|---|
//! | one message | 64 KiB | `--max-message BYTES` |
//! | wait for a client's next bytes | 30 s | `--read-timeout SECS` |
//! | wait to send a reply | 30 s | `--write-timeout SECS` |
//! | clients served at once | 64 | `--max-connections N` |
//!
//! Stop it with Ctrl-C or SIGTERM; see `Server::serve_until_signal` for how connections
//! still open are given time to finish.

use std::io::{self, ErrorKind, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use socketserver::{
    HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "../common/cli.rs"]
mod cli;
use cli::{exit_code, serve, Defaults, ServerLimits};

/// Length-prefixed messages, answered upper-cased.
#[derive(Parser, Debug)]
#[command(name = "guide-framing")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "30", write_timeout: "30", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    /// The longest message accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_message: u32,
    #[command(flatten)]
    limits: ServerLimits,
}

/// What every connection shares: the size limit.
struct Settings {
    max_message: u32,
}

/// The handler, made fresh for every connection.
#[derive(Handler)]
#[handler(state = Settings)]
struct Upper {
    #[handler(state)]
    settings: Arc<Settings>,
}

impl StreamRequestHandler for Upper {
    fn handle(&mut self, request: &mut StreamRequest<'_, Settings>) -> HandleResult {
        loop {
            // The length: 4 bytes, big-endian. End-of-file here is a clean goodbye.
            let mut prefix = [0; 4];
            match request.rfile.read_exact(&mut prefix) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let length = u32::from_be_bytes(prefix);
            if length > self.settings.max_message {
                let limit = self.settings.max_message;
                send(
                    request,
                    &format!("error: {length} bytes is over the limit of {limit}"),
                )?;
                return Ok(());
            }
            // The payload: exactly `length` bytes, however they are split on the wire.
            let mut payload = vec![0; length as usize];
            request.rfile.read_exact(&mut payload)?;
            match String::from_utf8(payload) {
                Ok(text) => send(request, &text.to_uppercase())?,
                Err(_) => {
                    send(request, "error: the message is not UTF-8")?;
                    return Ok(());
                }
            }
        }
    }
}

/// Sends `text` as one message: the prefix and the payload in one buffer, one write.
fn send(request: &mut StreamRequest<'_, Settings>, text: &str) -> io::Result<()> {
    let length = u32::try_from(text.len())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "reply too long"))?;
    let mut frame = Vec::with_capacity(4 + text.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(text.as_bytes());
    request.wfile.write_all(&frame)
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("guide-framing", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let settings = Settings {
        max_message: args.max_message,
    };
    let builder = TcpServer::<Upper, Threading>::with_state(settings)
        .close_timeout(Some(Duration::from_secs(2)));
    let server = args.limits.apply(builder).bind(&args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves.
    serve(server)
}
