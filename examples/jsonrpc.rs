//! A JSON-RPC 2.0 server over HTTP: `POST /` with a request (or a batch of them) as the body.
//!
//! Run it:
//!
//! ```text
//! cargo run --example jsonrpc -- 127.0.0.1:8001
//! ```
//!
//! and call it:
//!
//! ```text
//! curl -d '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}' http://127.0.0.1:8001/
//! curl -d '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 2}' http://127.0.0.1:8001/
//! curl -i -d '{"jsonrpc": "2.0", "method": "update", "params": [1, 2]}' http://127.0.0.1:8001/    # 204, a notification
//! ```
//!
//! What it shows: a protocol on top of HTTP, as Python's `xmlrpc.server` sits on
//! `http.server`. The HTTP layer frames the bytes; this file only decodes JSON, dispatches to a
//! method, and encodes the answer, following the specification (<https://www.jsonrpc.org/specification>):
//!
//! - A request has `"jsonrpc": "2.0"`, a string `method`, optional `params` (an array or an
//!   object) and an `id`. Without an `id` it is a *notification*: it runs, and nothing is sent
//!   back, not even an error. A POST of notifications only is answered `204 No Content`.
//! - A batch is an array of requests; the answers come back in an array (in any order, which
//!   the specification allows). An empty array is itself an invalid request.
//! - Errors carry the specification's codes: -32700 parse error, -32600 invalid request,
//!   -32601 method not found, -32602 invalid params, -32603 internal error (here: an integer
//!   result that does not fit in 64 bits).
//!
//! Methods: `subtract(minuend, subtrahend)` (positional or named), `add(a, b)`, `sum(...)`,
//! `echo(...)` (returns its params), `get_data()`, and the notifications `update`,
//! `notify_hello`, `notify_sum`, whose calls are counted by `notifications()`.
//!
//! In production: `--mode prefork --workers N` serves from N supervised worker processes
//! (`--worker-mode`, `--max-requests`: see `--help`); the counters are per worker process. Started
//! by systemd with a socket (`LISTEN_FDS`, see `examples/deploy/`), it serves that socket and
//! ignores ADDRESS.
//!
//! # Limits
//!
//! What one client can make the server hold, and how to change it. A request is weighed
//! (values and batch calls counted, nothing decoded) before any of it runs; answers are
//! written straight into the response body, which has a cap of its own.
//!
//! | bound | default | flag |
//! |---|---|---|
//! | request body (larger: `413`, unread) | 1 MiB | (the HTTP layer's `max_body`) |
//! | request bodies held at once, over all connections (more: `503`, `Retry-After: 1`) | 64 MiB | (the HTTP layer's `max_bodies_total`) |
//! | calls in one batch (more: one -32600 error, no call runs) | 100 | `--max-batch N` |
//! | JSON values in one request (more: one -32600 error) | 10,000 | `--max-values N` |
//! | answer bytes (an answer that would pass it: -32603 with its id) | 2 MiB | `--max-answer BYTES` |
//! | a connection with nothing to read is closed after | 10 s | `--read-timeout SECS` |
//! | a client that stops reading its answer is dropped after | 10 s | `--write-timeout SECS` |
//! | connections served at once; more wait in the listen backlog, or get `503` (`Retry-After: 1`) and are closed, or are closed | 64, wait | `--max-connections N`, `--overload wait\|reject\|close` |
//! | connections from one client address at once | no limit | `--per-client N` |
//! | metrics scrapers at once, and the time each may take (with `--metrics`) | 16, 5 s | none |
//!
//! So a request costs at most its body, about 700 bytes per JSON value decoded (an object is
//! the dearest value: a `serde_json` map node), and its answer. The dearest requests seen
//! (an `echo` of a 1 MiB string, or of 3,300 small objects) cost about 5 MiB each: 16 at once
//! peaked at 85 MiB, so the 64 connections of the default cap stay near 320 MiB. Four 1 MiB
//! batches and four 1 MiB calls of small objects at once peak at 9 MiB (`tests/jsonrpc.rs`);
//! before these limits, one 1 MiB batch of `1`s took 855 MB.

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

// The decoding and the methods; the fuzz target includes the same file.
#[path = "protocol/jsonrpc.rs"]
mod protocol;
use protocol::{rpc, Counters, Limits};

/// What every connection shares: the notification counter and the limits.
struct State {
    counters: Counters,
    limits: Limits,
}

#[derive(Handler)]
#[handler(state = State)]
struct JsonRpc;

impl HttpHandler for JsonRpc {
    fn respond(&mut self, request: &Request, server: &ServerContext<State>) -> Response {
        let state = server.state();
        match (request.method(), request.path()) {
            ("POST", "/") => match rpc(request.body(), &state.counters, &state.limits) {
                Some(answer) => Response::new(200)
                    .with_content_type("application/json")
                    .with_body(answer),
                None => Response::new(204),
            },
            (_, "/") => Response::text(405, "JSON-RPC is POST /\n").with_header("Allow", "POST"),
            _ => Response::text(404, "not found\n"),
        }
    }
}

/// A JSON-RPC 2.0 server over HTTP.
#[derive(Parser, Debug)]
#[command(name = "jsonrpc")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port), for example 127.0.0.1:8001.
    address: String,
    /// The most calls in one batch.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_batch, value_parser = at_least_one)]
    max_batch: usize,
    /// The most JSON values in one request.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_values, value_parser = at_least_one)]
    max_values: usize,
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
    exit_code("jsonrpc", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let state = State {
        counters: Counters::default(),
        limits: Limits {
            max_batch: args.max_batch,
            max_values: args.max_values,
            max_answer: args.max_answer,
        },
    };
    let builder = TcpServer::<Http<JsonRpc>>::with_state(state)
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
