//! A JSON REST API over an in-memory collection, on the library's HTTP layer and a threaded TCP
//! server: Python's `ThreadingHTTPServer` with a `BaseHTTPRequestHandler`, in Rust.
//!
//! Run it:
//!
//! ```text
//! cargo run --example rest -- 127.0.0.1:8000
//! ```
//!
//! and try it:
//!
//! ```text
//! curl -i -X POST -d '{"name": "apple"}' http://127.0.0.1:8000/items     # 201, Location: /items/1
//! curl -i http://127.0.0.1:8000/items/1                                   # 200
//! curl -i -X PUT -d '{"name": "pear"}' http://127.0.0.1:8000/items/1      # 200
//! curl -i -X DELETE http://127.0.0.1:8000/items/1                         # 204
//! curl -i -X PATCH http://127.0.0.1:8000/items                            # 405, Allow: GET, HEAD, POST
//! ```
//!
//! What it shows:
//!
//! - The three parts again: the handler (`Api`, an [`HttpHandler`]), the transport (TCP) and
//!   the strategy (`Threading`: a thread per connection, so clients are served in parallel and
//!   a slow one holds up nobody).
//! - The HTTP layer (`socketserver::http`) does everything that is HTTP: parsing, keep-alive,
//!   `Content-Length`, the 1 MiB body limit (413), timeouts and malformed requests (400). The
//!   handler only routes: a `match` on the method and the path segments.
//! - Shared state (`Store`) lives in the server and is reached through `server.state()`;
//!   a `parking_lot::Mutex` guards the map because requests run on many threads at once.
//!
//! Stop it with Ctrl-C: it stops accepting at once and gives open connections 2 s to finish.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

/// One stored item: a JSON object with its integer `id`.
type Item = Map<String, Value>;

/// The collection every request shares.
#[derive(Default)]
struct Store {
    items: Mutex<Items>,
}

#[derive(Default)]
struct Items {
    by_id: BTreeMap<u64, Item>,
    last_id: u64,
}

/// The handler. One is made per connection; it has no fields of its own.
#[derive(Handler)]
#[handler(state = Store)]
struct Api;

impl HttpHandler for Api {
    fn respond(&mut self, request: &Request, server: &ServerContext<Store>) -> Response {
        let store = server.state();
        let segments: Vec<&str> = request.path().split('/').skip(1).collect();
        match (request.method(), segments.as_slice()) {
            // The collection.
            ("GET" | "HEAD", ["items"]) => {
                let items = store.items.lock();
                let all: Vec<&Item> = items.by_id.values().collect();
                json_response(200, &json!(all))
            }
            ("POST", ["items"]) => match json_object(request) {
                Err(bad) => bad,
                Ok(mut item) => {
                    let mut items = store.items.lock();
                    items.last_id += 1;
                    let id = items.last_id;
                    item.insert("id".into(), json!(id));
                    items.by_id.insert(id, item.clone());
                    json_response(201, &Value::Object(item))
                        .with_header("Location", format!("/items/{id}"))
                }
            },
            (_, ["items"]) => method_not_allowed("GET, HEAD, POST"),

            // One item. An id that is not a number names no item: 404.
            (method, ["items", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return not_found();
                };
                match method {
                    "GET" | "HEAD" => match store.items.lock().by_id.get(&id) {
                        Some(item) => json_response(200, &Value::Object(item.clone())),
                        None => not_found(),
                    },
                    "PUT" => match json_object(request) {
                        Err(bad) => bad,
                        Ok(mut item) => {
                            let mut items = store.items.lock();
                            match items.by_id.get_mut(&id) {
                                None => not_found(),
                                Some(stored) => {
                                    item.insert("id".into(), json!(id));
                                    *stored = item.clone();
                                    json_response(200, &Value::Object(item))
                                }
                            }
                        }
                    },
                    "DELETE" => match store.items.lock().by_id.remove(&id) {
                        Some(_) => Response::new(204),
                        None => not_found(),
                    },
                    _ => method_not_allowed("GET, HEAD, PUT, DELETE"),
                }
            }
            _ => not_found(),
        }
    }
}

/// The request's body as a JSON object, or the 400 response that says why it is not one.
fn json_object(request: &Request) -> Result<Item, Response> {
    match serde_json::from_slice::<Value>(request.body()) {
        Ok(Value::Object(item)) => Ok(item),
        Ok(_) => Err(error(400, "the body must be a JSON object")),
        Err(e) => Err(error(400, &format!("invalid JSON: {e}"))),
    }
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::new(status)
        .with_content_type("application/json")
        .with_body(value.to_string())
}

/// Errors are JSON too: `{"error": "..."}`.
fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

fn not_found() -> Response {
    error(404, "not found")
}

/// RFC 9110: a 405 must say which methods the resource supports.
fn method_not_allowed(allow: &str) -> Response {
    error(405, "method not allowed").with_header("Allow", allow)
}

fn main() -> ExitCode {
    env_logger::init();
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: rest ADDRESS (for example 127.0.0.1:8000)");
        return ExitCode::FAILURE;
    };
    match run(&address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    // Python: ThreadingHTTPServer((host, port), Api).
    let server = TcpServer::<Http<Api>, Threading>::builder()
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
