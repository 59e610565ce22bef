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
//!   -32600 not XML-RPC, -32601 no such method, -32602 bad parameters, -32603 internal), so
//!   Python raises `xmlrpc.client.Fault`; the server keeps serving.
//! - Differences from `SimpleXMLRPCServer`: faults carry those standard codes (Python uses 1
//!   and the exception's text), nesting deeper than 64 levels is refused rather than risking
//!   the stack, and `GET` is `405` with `Allow: POST` (Python: `501`).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

// The XML-RPC data model, decoding, methods and encoding; the fuzz target includes the same
// file.
#[path = "protocol/xmlrpc.rs"]
mod protocol;
use protocol::answer;

/// The handler: routes HTTP, then dispatches the call.
#[derive(Handler)]
struct XmlRpc;

impl HttpHandler for XmlRpc {
    fn respond(&mut self, request: &Request, _server: &ServerContext) -> Response {
        match (request.method(), request.path()) {
            ("POST", "/RPC2" | "/") => Response::new(200)
                .with_content_type("text/xml")
                .with_body(answer(request.body())),
            (_, "/RPC2" | "/") => {
                Response::text(405, "XML-RPC is POST\n").with_header("Allow", "POST")
            }
            _ => Response::text(404, "not found\n"),
        }
    }
}

fn main() -> ExitCode {
    env_logger::init();
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: xmlrpc ADDRESS (for example 127.0.0.1:8002)");
        return ExitCode::FAILURE;
    };
    match run(&address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xmlrpc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Python: SimpleXMLRPCServer((host, port)), with ThreadingMixIn.
    let server = TcpServer::<Http<XmlRpc>, Threading>::builder()
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
