//! An XML-RPC server, usable from Python's `xmlrpc.client.ServerProxy` as Python's own
//! `SimpleXMLRPCServer` is: `POST /RPC2` (or `/`) with a `<methodCall>`, answered with a
//! `<methodResponse>`.
//!
//! Run it:
//!
//! ```text
//! cargo run --example xmlrpc -- 127.0.0.1:8002
//! ```
//!
//! and call it:
//!
//! ```text
//! python3 -c "import xmlrpc.client as x; p = x.ServerProxy('http://127.0.0.1:8002/RPC2'); print(p.add(2, 3), p.system.listMethods())"
//! ```
//!
//! What it shows: Python's `xmlrpc.server` is `http.server` plus a dispatcher, and so is this
//! file. The HTTP layer frames the request; `quick-xml` reads the XML (never a hand-written
//! parser: entities, CDATA and malformed input are its job), `base64` decodes binary values,
//! and what is left is the XML-RPC data model ([`XmlValue`]) and a `match` on the method name.
//!
//! - Methods: `add(a, b)`, `echo(x)` (returns any value: int/i4/i8, boolean, double, string,
//!   base64, dateTime.iso8601, array, struct, nested, and `nil` for `allow_none` clients),
//!   `system.listMethods`, `system.methodHelp`, `system.methodSignature` and
//!   `system.multicall`.
//! - Failures are XML-RPC faults with the interoperability codes (-32700 not well-formed,
//!   -32600 not XML-RPC, -32601 no such method, -32602 bad parameters, -32603 internal, -32400
//!   over one of the limits below), so Python raises `xmlrpc.client.Fault`; the server keeps
//!   serving.
//! - Differences from `SimpleXMLRPCServer`: faults carry those standard codes (Python uses 1
//!   and the exception's text), nesting deeper than 64 levels is refused rather than risking
//!   the stack, and `GET` is `405` with `Allow: POST` (Python: `501`).
//!
//! # Limits
//!
//! What one client can make the server hold, and how to change it. Requests over a limit get
//! a fault with code -32400 ("system error") that names the limit; the server keeps serving.
//!
//! | bound | default | flag |
//! |---|---|---|
//! | request body (larger: `413`, unread) | 1 MiB | (the HTTP layer's `max_body`) |
//! | request bodies held at once, over all connections (more: `503`, `Retry-After: 1`) | 64 MiB | (the HTTP layer's `max_bodies_total`) |
//! | XML elements in one request | 10,000 | `--max-elements N` |
//! | calls in one `system.multicall` (more: a fault, no call runs) | 100 | `--max-calls N` |
//! | answer bytes (a result that would pass it: a fault in its place) | 2 MiB | `--max-answer BYTES` |
//! | nesting depth (deeper: a -32700 fault, as for malformed XML) | 64 | (fixed) |
//! | a connection with nothing to read is closed after | 10 s | `--read-timeout SECS` |
//! | a client that stops reading its answer is dropped after | 10 s | `--write-timeout SECS` |
//! | connections served at once; more wait in the listen backlog | 64 | `--max-connections N` |
//!
//! So a request costs at most its body, about 200 bytes per element decoded, its text decoded
//! (twice, for a moment), and its answer: an estimated 6 MiB at worst with the defaults. Eight 1 MiB multicalls and eight 1 MiB calls of empty
//! elements at once peak at 20 MiB (`tests/xmlrpc.rs`); before these limits, the same took
//! 499 MB.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

// The XML-RPC data model, decoding, methods and encoding; the fuzz target includes the same
// file.
#[path = "protocol/xmlrpc.rs"]
mod protocol;
use protocol::{answer, Limits};

/// The handler: routes HTTP, then dispatches the call.
#[derive(Handler)]
#[handler(state = Limits)]
struct XmlRpc;

impl HttpHandler for XmlRpc {
    fn respond(&mut self, request: &Request, server: &ServerContext<Limits>) -> Response {
        match (request.method(), request.path()) {
            ("POST", "/RPC2" | "/") => Response::new(200)
                .with_content_type("text/xml")
                .with_body(answer(request.body(), server.state())),
            (_, "/RPC2" | "/") => {
                Response::text(405, "XML-RPC is POST\n").with_header("Allow", "POST")
            }
            _ => Response::text(404, "not found\n"),
        }
    }
}

/// An XML-RPC server over HTTP.
#[derive(Parser, Debug)]
#[command(name = "xmlrpc")]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port), for example 127.0.0.1:8002.
    address: String,
    /// The most XML elements in one request.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_elements, value_parser = at_least_one)]
    max_elements: usize,
    /// The most calls in one system.multicall.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_calls, value_parser = at_least_one)]
    max_calls: usize,
    /// The most bytes in one answer.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_answer, value_parser = at_least_one)]
    max_answer: usize,
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    read_timeout: Duration,
    /// Drop a client that does not take its answer for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    write_timeout: Duration,
    /// The most connections served at once; more wait their turn.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = at_least_one)]
    max_connections: usize,
}

/// Parses a count flag: a whole number, at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses a timeout flag: seconds, fractions allowed, more than zero.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than zero seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmlrpc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let limits = Limits {
        max_calls: args.max_calls,
        max_elements: args.max_elements,
        max_answer: args.max_answer,
    };
    // Python: SimpleXMLRPCServer((host, port)), with ThreadingMixIn.
    let mut server = TcpServer::<Http<XmlRpc>, Threading>::with_state(limits)
        .nodelay(true)
        .read_timeout(Some(args.read_timeout))
        .write_timeout(Some(args.write_timeout))
        .max_connections(Some(args.max_connections))
        .close_timeout(Some(Duration::from_secs(2)))
        .bind(args.address.as_str())?;
    // Announced once the server really serves (its signal handlers installed), so a SIGTERM
    // sent on seeing this line is a graceful stop.
    server.on_ready(|address| {
        let mut stdout = io::stdout().lock();
        // Nobody reading stdout is no reason to stop serving.
        let _ = writeln!(stdout, "serving on {address}").and_then(|()| stdout.flush());
    });
    server.serve_until_signal()?;
    Ok(())
}
