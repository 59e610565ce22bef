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
//! curl -i 'http://127.0.0.1:8000/items?after=10'                          # the items after id 10
//! curl -i http://127.0.0.1:8000/whoami                                     # {"client": "127.0.0.1:PORT"}
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
//! - Items are kept as their JSON text, not as `serde_json::Value`s: a `Value` object costs
//!   about 700 bytes however short its text, so a 1 MiB body of small objects took 150 MB,
//!   kept for as long as the item.
//!
//! In production: `--mode prefork --workers N` serves from N supervised worker processes
//! (`--worker-mode`, `--max-requests`: see `--help`); each worker process has its own store, so use
//! it for stateless serving only (or put the store in a database). Started by systemd with a socket
//! (`LISTEN_FDS`, see `examples/deploy/`), it serves that socket and ignores ADDRESS. Behind
//! HAProxy (`send-proxy-v2`) or nginx's `stream` proxy (`proxy_protocol on;`), run it with
//! `--proxy-protocol v2` (or `v1`, or `any`): `GET /whoami` then answers the client's address,
//! not the balancer's (`--trusted-proxy CIDR`, repeatable, names the balancers; loopback by
//! default).
//!
//! Over HTTPS: `--tls-cert chain.pem --tls-key key.pem` (PEM files), then
//! `curl --cacert ca.pem https://localhost:8000/items`. The HTTP layer is the same over TLS
//! (keep-alive included). With `--mode prefork`, SIGHUP reloads the certificate files; in one
//! process, restart to change them. The TLS flags come with the `tls` feature (on by default).
//!
//! # Limits
//!
//! What clients can make the server hold, and how to change it.
//!
//! | bound | default | flag |
//! |---|---|---|
//! | request body (larger: `413`, unread) | 1 MiB | (the HTTP layer's `max_body`) |
//! | request bodies held at once, over all connections (more: `503`, `Retry-After: 1`) | 64 MiB | (the HTTP layer's `max_bodies_total`) |
//! | JSON values in one body (more: `413`) | 10,000 | `--max-values N` |
//! | items stored (more: `507 Insufficient Storage`) | 10,000 | `--max-items N` |
//! | bytes stored, as JSON text (more: `507`) | 64 MiB | `--max-store-bytes BYTES` |
//! | bytes in one page of `GET /items` (the rest: `Link: <...>; rel="next"`) | 2 MiB | `--max-page-bytes BYTES` |
//! | a connection with nothing to read is closed after | 10 s | `--read-timeout SECS` |
//! | a client that stops reading its answer is dropped after | 10 s | `--write-timeout SECS` |
//! | connections served at once; more wait in the listen backlog, or get `503` (`Retry-After: 1`) and are closed, or are closed | 64, wait | `--max-connections N`, `--overload wait\|reject\|close` |
//! | connections from one client address at once | no limit | `--per-client N` |
//! | metrics scrapers at once, and the time each may take (with `--metrics`) | 16, 5 s | none |
//! | a connection whose PROXY header has not all arrived is closed after (with `--proxy-protocol`) | 5 s | `--proxy-header-timeout SECS` |
//! | a TLS handshake (with `--tls-cert`) must end within, in all | 10 s | none (`ServerBuilder::tls_handshake_timeout`) |
//!
//! `GET /items` lists items in id order, from the first id after `?after=ID` (default 0), until
//! the page is full; a page always holds at least one item (one item is at most 1 MiB), and
//! when items remain, a `Link` header (RFC 8288) names the next page, as GitHub's API does.
//! A request costs at most its body, about 700 bytes per JSON value while it is decoded, its
//! text, and its answer (one page, or one item). Ten 1 MiB bodies of small objects, ten 1 MiB
//! items stored and four clients listing them at once peak at 54 MiB (`tests/rest.rs`);
//! before these limits, the same took 1540 MiB and kept it.
//!
//! Stop it with Ctrl-C: it stops accepting at once and gives open connections 2 s to finish.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};
use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "common/cli.rs"]
mod cli;
use cli::{
    at_least_one, bind_tcp, exit_code, Defaults, Operations, ProcessFlags, ProxyFlags, ServerLimits,
};

/// The collection every request shares, and its limits.
struct Store {
    items: Mutex<Items>,
    limits: Limits,
}

/// The limits of the table above.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_values: usize,
    max_items: usize,
    max_store_bytes: usize,
    max_page_bytes: usize,
}

/// The items, each as its JSON text (with its `id`), and the bytes they hold.
#[derive(Default)]
struct Items {
    /// `Arc`, so that an answer is copied out after the lock is released.
    by_id: BTreeMap<u64, Arc<str>>,
    bytes: usize,
    last_id: u64,
}

impl Items {
    /// Whether `replaced` bytes can give way to `added` within the limits, counting one more
    /// item when nothing is replaced.
    fn room_for(&self, added: usize, replaced: Option<usize>, limits: &Limits) -> bool {
        let items = self.by_id.len() + usize::from(replaced.is_none());
        let bytes = self.bytes - replaced.unwrap_or(0) + added;
        items <= limits.max_items && bytes <= limits.max_store_bytes
    }
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
            // Who the server thinks the client is: behind a proxy (--proxy-protocol), the
            // client the proxy relays.
            ("GET" | "HEAD", ["whoami"]) => json_text(
                200,
                &json!({ "client": request.client_address().to_string() }).to_string(),
            ),
            // The collection.
            ("GET" | "HEAD", ["items"]) => list(request, store),
            ("POST", ["items"]) => match json_object(request, &store.limits) {
                Err(bad) => bad,
                Ok(mut item) => {
                    let mut items = store.items.lock();
                    let id = items.last_id + 1;
                    item.insert("id".into(), json!(id));
                    let text: Arc<str> = Value::Object(item).to_string().into();
                    if !items.room_for(text.len(), None, &store.limits) {
                        return full(&store.limits);
                    }
                    items.last_id = id;
                    items.bytes += text.len();
                    items.by_id.insert(id, text.clone());
                    drop(items);
                    json_text(201, &text).with_header("Location", format!("/items/{id}"))
                }
            },
            (_, ["items"]) => method_not_allowed("GET, HEAD, POST"),

            // One item. An id that is not a number names no item: 404.
            (method, ["items", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return not_found();
                };
                match method {
                    "GET" | "HEAD" => {
                        let item = store.items.lock().by_id.get(&id).cloned();
                        match item {
                            Some(text) => json_text(200, &text),
                            None => not_found(),
                        }
                    }
                    "PUT" => match json_object(request, &store.limits) {
                        Err(bad) => bad,
                        Ok(mut item) => {
                            item.insert("id".into(), json!(id));
                            let text: Arc<str> = Value::Object(item).to_string().into();
                            let mut items = store.items.lock();
                            let Some(old) = items.by_id.get(&id).map(|old| old.len()) else {
                                return not_found();
                            };
                            if !items.room_for(text.len(), Some(old), &store.limits) {
                                return full(&store.limits);
                            }
                            items.bytes = items.bytes - old + text.len();
                            items.by_id.insert(id, text.clone());
                            drop(items);
                            json_text(200, &text)
                        }
                    },
                    "DELETE" => {
                        let mut items = store.items.lock();
                        match items.by_id.remove(&id) {
                            Some(text) => {
                                items.bytes -= text.len();
                                Response::new(204)
                            }
                            None => not_found(),
                        }
                    }
                    _ => method_not_allowed("GET, HEAD, PUT, DELETE"),
                }
            }
            _ => not_found(),
        }
    }
}

/// `GET /items[?after=ID]`: one page of items, in id order, and a `Link` to the next.
fn list(request: &Request, store: &Store) -> Response {
    let mut after = 0;
    for pair in request.query().unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix("after=") {
            match value.parse::<u64>() {
                Ok(id) => after = id,
                Err(_) => return error(400, "after= takes an item id"),
            }
        }
    }
    // Under the lock, only `Arc`s are cloned; the page is copied out after.
    let mut page = Vec::new();
    let mut size = 2; // "[]"
    let mut more = false;
    {
        let items = store.items.lock();
        for (&id, text) in items.by_id.range(after.saturating_add(1)..) {
            let grown = size + text.len() + usize::from(!page.is_empty());
            if !page.is_empty() && grown > store.limits.max_page_bytes {
                more = true;
                break;
            }
            size = grown;
            page.push((id, Arc::clone(text)));
        }
    }
    let last = page.last().map(|(id, _)| *id);
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, (_, text)) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(text.as_bytes());
    }
    body.push(b']');
    let response = Response::new(200)
        .with_content_type("application/json")
        .with_body(body);
    match (more, last) {
        (true, Some(last)) => {
            response.with_header("Link", format!("</items?after={last}>; rel=\"next\""))
        }
        _ => response,
    }
}

/// The request's body as a JSON object, or the 400 or 413 response that says why it is not
/// one.
///
/// The body is first walked without being decoded, counting its values: only one within
/// `--max-values` is turned into a `serde_json::Value`, which costs far more than its text.
fn json_object(request: &Request, limits: &Limits) -> Result<Map<String, Value>, Response> {
    let body = request.body();
    let counted = Cell::new(0);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let census = Count {
        values: &counted,
        max: limits.max_values,
    }
    .deserialize(&mut reader)
    .and_then(|()| reader.end());
    match census {
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return Err(error(
                413,
                &format!("a body holds at most {} JSON values", limits.max_values),
            ))
        }
        Err(e) => return Err(error(400, &format!("invalid JSON: {e}"))),
        Ok(()) => {}
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(item)) => Ok(item),
        Ok(_) => Err(error(400, "the body must be a JSON object")),
        Err(e) => Err(error(400, &format!("invalid JSON: {e}"))),
    }
}

/// Walks one JSON value without decoding it, counting values (each number, string, `null`,
/// boolean, array and object is one) and failing, as a data error, past `max`.
#[derive(Clone, Copy)]
struct Count<'c> {
    values: &'c Cell<usize>,
    max: usize,
}

impl Count<'_> {
    fn tick<E: de::Error>(self) -> Result<(), E> {
        self.values.set(self.values.get() + 1);
        if self.values.get() > self.max {
            return Err(E::custom("too many values"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.tick()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick::<A::Error>()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick::<A::Error>()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A stored item's text as the response body.
fn json_text(status: u16, text: &str) -> Response {
    Response::new(status)
        .with_content_type("application/json")
        .with_body(text.as_bytes().to_vec())
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

/// RFC 4918's `507 Insufficient Storage`: the request is fine, the store has no room for it.
fn full(limits: &Limits) -> Response {
    error(
        507,
        &format!(
            "the store is full: it holds at most {} items and {} bytes",
            limits.max_items, limits.max_store_bytes
        ),
    )
}

/// RFC 9110: a 405 must say which methods the resource supports.
fn method_not_allowed(allow: &str) -> Response {
    error(405, "method not allowed").with_header("Allow", allow)
}

/// A JSON REST API over an in-memory collection.
#[derive(Parser, Debug)]
#[command(name = "rest")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port), for example 127.0.0.1:8000.
    address: String,
    /// The most JSON values in one request body.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one)]
    max_values: usize,
    /// The most items stored.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one)]
    max_items: usize,
    /// The most bytes stored (the items' JSON text).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024, value_parser = at_least_one)]
    max_store_bytes: usize,
    /// The most bytes in one page of GET /items (a page holds at least one item).
    #[arg(long, value_name = "BYTES", default_value_t = 2 * 1024 * 1024, value_parser = at_least_one)]
    max_page_bytes: usize,
    #[command(flatten)]
    limits: ServerLimits,
    // --proxy-protocol, --trusted-proxy, --proxy-header-timeout: behind a load balancer.
    #[command(flatten)]
    proxy: ProxyFlags,
    // --tls-cert and --tls-key: HTTPS (with the `tls` feature, a default one).
    #[cfg(feature = "tls")]
    #[command(flatten)]
    tls: cli::TlsFlags,
    // --mode threading|prefork, --workers, --worker-mode, --max-requests.
    #[command(flatten)]
    process: ProcessFlags,
    // --metrics ADDRESS, --drain-delay SECS.
    #[command(flatten)]
    operations: Operations,
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("rest", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store {
        items: Mutex::new(Items::default()),
        limits: Limits {
            max_values: args.max_values,
            max_items: args.max_items,
            max_store_bytes: args.max_store_bytes,
            max_page_bytes: args.max_page_bytes,
        },
    };
    // Python: ThreadingHTTPServer((host, port), Api). Threads by default;
    // `--mode prefork` serves from worker processes instead.
    let builder = TcpServer::<Http<Api>>::with_state(store)
        .strategy(args.process.strategy()?)
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)));
    // --tls-cert and --tls-key: HTTPS (ALPN `http/1.1`), with the certificate loaded (or its
    // error named) now; under --mode prefork, SIGHUP reloads the files (`reload`).
    #[cfg(feature = "tls")]
    let (builder, reload) = args.tls.apply(builder, &["http/1.1"])?;
    #[cfg(not(feature = "tls"))]
    let reload = cli::Reload::default();
    // Binds ADDRESS, or serves the socket systemd passed (LISTEN_FDS).
    let builder = args
        .operations
        .apply(args.proxy.apply(args.limits.apply(builder)));
    let server = bind_tcp(builder, &args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves: in this process,
    // or from the worker processes of `--mode prefork`.
    args.process.serve(server, &args.operations, &reload)
}
