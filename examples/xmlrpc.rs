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
//! In production: `--mode prefork --workers N` serves from N supervised worker processes
//! (`--worker-mode`, `--max-requests`: see `--help`); each worker process answers on its own.
//! Started by systemd with a socket (`LISTEN_FDS`, see `examples/deploy/`), it serves that socket
//! and ignores ADDRESS.
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
//! | connections served at once; more wait in the listen backlog, or get `503` (`Retry-After: 1`) and are closed, or are closed | 64, wait | `--max-connections N`, `--overload wait\|reject\|close` |
//! | connections from one client address at once | no limit | `--per-client N` |
//! | metrics scrapers at once, and the time each may take (with `--metrics`) | 16, 5 s | none |
//!
//! So a request costs at most its body, about 200 bytes per element decoded, its text decoded
//! (twice, for a moment), and its answer: an estimated 6 MiB at worst with the defaults. Eight 1 MiB multicalls and eight 1 MiB calls of empty
//! elements at once peak at 20 MiB (`tests/xmlrpc.rs`); before these limits, the same took
//! 499 MB.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "common/cli.rs"]
mod cli;
use cli::{
    at_least_one, bind_tcp, exit_code, Defaults, Operations, ProcessFlags, Reload, ServerLimits,
};

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
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "64" }.flags()))]
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
    #[command(flatten)]
    limits: ServerLimits,
    // --mode threading|prefork, --workers, --worker-mode, --max-requests.
    #[command(flatten)]
    process: ProcessFlags,
    // --metrics ADDRESS, --drain-delay SECS.
    #[command(flatten)]
    operations: Operations,
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("xmlrpc", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let limits = Limits {
        max_calls: args.max_calls,
        max_elements: args.max_elements,
        max_answer: args.max_answer,
    };
    // Python: SimpleXMLRPCServer((host, port)), with ThreadingMixIn. Threads by default;
    // `--mode prefork` serves from worker processes instead.
    let builder = TcpServer::<Http<XmlRpc>>::with_state(limits)
        .strategy(args.process.strategy()?)
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)));
    // Binds ADDRESS, or serves the socket systemd passed (LISTEN_FDS).
    let builder = args.operations.apply(args.limits.apply(builder));
    let server = bind_tcp(builder, &args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves: in this process,
    // or from the worker processes of `--mode prefork` (SIGHUP replaces them; no files to reload).
    args.process
        .serve(server, &args.operations, &Reload::default())
}
