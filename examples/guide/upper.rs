//! Guide, chapter 3: Python's `MyTCPHandler`, made into a service with this crate.
//!
//! Run it:
//!
//! ```text
//! cargo run --example guide-upper -- 127.0.0.1:9999
//! ```
//!
//! and try it with the client from Python's `socketserver` documentation:
//!
//! ```text
//! python3 -c "
//! import socket
//! with socket.create_connection(('127.0.0.1', 9999)) as sock:
//!     sock.sendall(b'hello world\n')
//!     print(sock.makefile('rb').readline())"
//! ```
//!
//! Every line the client sends comes back upper-cased, until it hangs up. The three parts:
//! the handler (`MyTcpHandler`, below: all this program has to say), the transport (TCP) and the
//! strategy (`Threading`: a thread per client, so a slow one holds up nobody). Everything
//! chapter 1's hand-written server did, accepting, threads, timeouts, the cap, stopping, is
//! now the builder's options.
//!
//! Limits:
//!
//! | bound | default | flag |
//! |---|---|---|
//! | one line | 1 KiB | `--max-line BYTES` |
//! | wait for a client's next bytes | 30 s | `--read-timeout SECS` |
//! | wait to send a reply | 30 s | `--write-timeout SECS` |
//! | clients served at once | 64 | `--max-connections N` |
//!
//! A line over the limit is answered `error: line too long` and the connection closes. Stop
//! the server with Ctrl-C or SIGTERM: it stops accepting at once, clients waiting between lines
//! are let go at once, and it exits 0. `RUST_LOG=debug` shows every connection.

use std::io::{BufRead, Read, Write};
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

/// Upper-cases every line, on a thread per client.
#[derive(Parser, Debug)]
#[command(name = "guide-upper")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "30", write_timeout: "30", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    /// The longest line accepted, in bytes, newline included.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_line: u64,
    #[command(flatten)]
    limits: ServerLimits,
}

/// Shared by every connection: the line limit.
struct Settings {
    max_line: u64,
}

/// Python: `class MyTCPHandler(socketserver.StreamRequestHandler)`. One is made per client.
#[derive(Handler)]
#[handler(state = Settings)]
struct MyTcpHandler {
    #[handler(state)]
    settings: Arc<Settings>,
}

impl StreamRequestHandler for MyTcpHandler {
    fn handle(&mut self, request: &mut StreamRequest<'_, Settings>) -> HandleResult {
        let mut line = Vec::new();
        // Until the client hangs up, or the server stops. While nothing of the next line has
        // arrived, the connection is marked idle: a stop then ends the wait at once (the read
        // returns end-of-file) instead of waiting for the client. `set_idle` returns false
        // when the server is already stopping.
        while request.set_idle(request.rfile.buffer().is_empty()) {
            line.clear();
            // self.rfile.readline(limit): never more than max_line bytes held.
            (&mut request.rfile)
                .take(self.settings.max_line)
                .read_until(b'\n', &mut line)?;
            request.set_idle(false);
            if line.is_empty() {
                return Ok(()); // end-of-file: the client is done
            }
            if !line.ends_with(b"\n") && line.len() as u64 == self.settings.max_line {
                request.wfile.write_all(b"error: line too long\n")?;
                return Ok(());
            }
            log::debug!(
                "{} wrote {:?}",
                request.client_address(),
                String::from_utf8_lossy(&line)
            );
            // self.wfile.write(self.data.upper()): one write, so one line leaves in one piece.
            request.wfile.write_all(&line.to_ascii_uppercase())?;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("guide-upper", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Python: ThreadingTCPServer((host, port), MyTCPHandler), with the limits Python lacks.
    let settings = Settings {
        max_line: args.max_line,
    };
    let server = TcpServer::<MyTcpHandler, Threading>::with_state(settings)
        // The three limits, spelled out (the other examples call `args.limits.apply(builder)`).
        .read_timeout(Some(args.limits.read_timeout))
        .write_timeout(Some(args.limits.write_timeout))
        .max_connections(Some(args.limits.max_connections))
        .close_timeout(Some(Duration::from_secs(2)))
        .bind(&args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves.
    serve(server)
}
