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

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

// The decoding and the methods; the fuzz target includes the same file.
#[path = "protocol/jsonrpc.rs"]
mod protocol;
use protocol::{rpc, Counters};

#[derive(Handler)]
#[handler(state = Counters)]
struct JsonRpc;

impl HttpHandler for JsonRpc {
    fn respond(&mut self, request: &Request, server: &ServerContext<Counters>) -> Response {
        match (request.method(), request.path()) {
            ("POST", "/") => match rpc(request.body(), server.state()) {
                Some(answer) => Response::new(200)
                    .with_content_type("application/json")
                    .with_body(answer.to_string()),
                None => Response::new(204),
            },
            (_, "/") => Response::text(405, "JSON-RPC is POST /\n").with_header("Allow", "POST"),
            _ => Response::text(404, "not found\n"),
        }
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: jsonrpc ADDRESS (for example 127.0.0.1:8001)");
        return ExitCode::FAILURE;
    };
    match run(&address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jsonrpc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let server = TcpServer::<Http<JsonRpc>, Threading>::builder()
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
