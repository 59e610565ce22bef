//! Guide, chapter 5: a small REST API for Python's `requests`, on the HTTP layer.
//!
//! Run it:
//!
//! ```text
//! cargo run --example guide-notes -- 127.0.0.1:8010
//! ```
//!
//! and use it from Python (`pip install requests`):
//!
//! ```text
//! python3 -c "
//! import requests
//! base = 'http://127.0.0.1:8010'
//! r = requests.post(f'{base}/notes', json={'text': 'buy milk'})
//! print(r.status_code, r.headers['Location'], r.json())
//! print(requests.get(f'{base}/notes').json())
//! print(requests.delete(base + r.headers['Location']).status_code)"
//! ```
//!
//! The API: `GET /notes` lists the ids; `POST /notes` with `{"text": "..."}` stores a note and
//! answers `201 Created` with its `Location`; `GET /notes/<id>` and `DELETE /notes/<id>` read
//! and remove one (`404` when there is none). Other methods get `405` with an `Allow` header,
//! bodies that are not such JSON get `400`, and every answer is JSON. It is Python's
//! `ThreadingHTTPServer` with a `BaseHTTPRequestHandler`: the HTTP layer
//! (`socketserver::http`) parses, frames and keeps connections alive; the handler is a `match`
//! on the method and the path. The bigger `rest` example goes further.
//!
//! Limits (everything a client can make the server hold):
//!
//! | bound | default | flag |
//! |---|---|---|
//! | one request body (`413` above it) | 4 KiB | `--max-body BYTES` |
//! | notes stored (`503` when full) | 1000 | `--max-notes N` |
//! | the whole request to arrive; an idle keep-alive connection | 30 s | `--read-timeout SECS` |
//! | wait for a client to take the answer | 30 s | `--write-timeout SECS` |
//! | connections served at once | 64 | `--max-connections N` |
//!
//! So the store holds at most `max-notes × max-body` (4 MiB by default), and the largest answer
//! (the list of ids) is a few bytes per note. Stop it with Ctrl-C or SIGTERM: idle keep-alive
//! connections are closed at once, requests running get 2 s, and it exits 0.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use parking_lot::Mutex;
use serde_json::{json, Value};
use socketserver::http::{Http, HttpHandler, Limits, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "../common/cli.rs"]
mod cli;
use cli::{exit_code, serve, Defaults, ServerLimits};

/// A REST API of short notes.
#[derive(Parser, Debug)]
#[command(name = "guide-notes")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "30", write_timeout: "30", max_connections: "64" }.flags()))]
struct Args {
    /// HOST:PORT to listen on (port 0 picks a free port).
    address: String,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..))]
    max_body: u64,
    /// The most notes stored at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_notes: u64,
    #[command(flatten)]
    limits: ServerLimits,
}

/// The shared state: the notes and the limits.
struct Store {
    notes: Mutex<Notes>,
    max_notes: usize,
    max_body: usize,
}

#[derive(Default)]
struct Notes {
    by_id: BTreeMap<u64, String>,
    last_id: u64,
}

/// The handler; one is made per connection and answers every request on it.
#[derive(Handler)]
#[handler(state = Store)]
struct NotesApi {
    #[handler(state)]
    store: Arc<Store>,
}

impl HttpHandler for NotesApi {
    fn respond(&mut self, request: &Request, _server: &ServerContext<Store>) -> Response {
        let segments: Vec<&str> = request.path().split('/').skip(1).collect();
        match (request.method(), segments.as_slice()) {
            ("GET" | "HEAD", ["notes"]) => {
                let ids: Vec<u64> = self.store.notes.lock().by_id.keys().copied().collect();
                answer(200, &json!(ids))
            }
            ("POST", ["notes"]) => self.create(request),
            (_, ["notes"]) => {
                error(405, "method not allowed").with_header("Allow", "GET, HEAD, POST")
            }
            (method, ["notes", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return error(404, "no such note");
                };
                match method {
                    "GET" | "HEAD" => match self.store.notes.lock().by_id.get(&id) {
                        Some(text) => answer(200, &json!({ "id": id, "text": text })),
                        None => error(404, "no such note"),
                    },
                    "DELETE" => match self.store.notes.lock().by_id.remove(&id) {
                        Some(_) => Response::new(204),
                        None => error(404, "no such note"),
                    },
                    _ => error(405, "method not allowed").with_header("Allow", "GET, HEAD, DELETE"),
                }
            }
            _ => error(404, "not found"),
        }
    }

    /// Bodies over `--max-body` are refused with `413` before they are read.
    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_body = self.store.max_body;
        limits
    }
}

impl NotesApi {
    fn create(&self, request: &Request) -> Response {
        let text = match serde_json::from_slice::<Value>(request.body()) {
            Ok(Value::Object(mut fields)) => match fields.remove("text") {
                Some(Value::String(text)) => text,
                _ => return error(400, "the body must be {\"text\": \"...\"}"),
            },
            Ok(_) => return error(400, "the body must be {\"text\": \"...\"}"),
            Err(e) => return error(400, &format!("invalid JSON: {e}")),
        };
        let mut notes = self.store.notes.lock();
        if notes.by_id.len() >= self.store.max_notes {
            return error(503, "the store is full: delete a note first");
        }
        notes.last_id += 1;
        let id = notes.last_id;
        let answer_body = json!({ "id": id, "text": text });
        notes.by_id.insert(id, text);
        answer(201, &answer_body).with_header("Location", format!("/notes/{id}"))
    }
}

fn answer(status: u16, value: &Value) -> Response {
    Response::new(status)
        .with_content_type("application/json")
        .with_body(value.to_string())
}

fn error(status: u16, message: &str) -> Response {
    answer(status, &json!({ "error": message }))
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("guide-notes", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store {
        notes: Mutex::new(Notes::default()),
        max_notes: usize::try_from(args.max_notes)?,
        max_body: usize::try_from(args.max_body)?,
    };
    // Python: ThreadingHTTPServer((host, port), NotesApi).
    let builder = TcpServer::<Http<NotesApi>, Threading>::with_state(store)
        .nodelay(true)
        .close_timeout(Some(Duration::from_secs(2)));
    let server = args.limits.apply(builder).bind(&args.address)?;
    // Until Ctrl-C or SIGTERM, printing `serving on ADDRESS` once it serves.
    serve(server)
}
