//! The HTTP servers of the comparison, each serving TechEmpower's plaintext and JSON tests:
//! `GET /plaintext` -> `Hello, World!` (`text/plain`) and `GET /json` ->
//! `{"message":"Hello, World!"}` (`application/json`, serialised per request with
//! `serde_json`), keep-alive on. Each listens on loopback with a backlog of 1024, prints
//! `serving on ADDRESS` first and runs until killed. Python's peer is `bench/peers/py_http.py`.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;
use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, Pool, ServerContext, Strategy, TcpServer, Threading};

use crate::BoxError;

/// One of the HTTP servers this process can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HttpPeer {
    /// Ours: `Http<H>` on `TcpServer` with `Threading` (a thread per connection).
    OursThreading,
    /// Ours: `Http<H>` on `TcpServer` with `Pool::default()`.
    OursPool,
    /// Ours: `Http<H>` on `TcpServer` with a pool of one worker per CPU.
    OursPoolCores,
    /// hyper 1.x on tokio's multi-threaded runtime, HTTP/1 only, a task per connection.
    Hyper,
    /// actix-web 4 with its default workers (one per core).
    Actix,
    /// tiny_http 0.12 as its README runs it: one thread answers `incoming_requests()`.
    TinyHttp,
}

/// The listen backlog of every server (the library's default).
const BACKLOG: i32 = 1024;

/// The plaintext test's body.
const HELLO: &[u8] = b"Hello, World!";

/// The JSON test's message.
#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// The JSON test's body, serialised anew for each request as the test asks.
fn json_body() -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Message {
        message: "Hello, World!",
    })
}

fn announce(address: impl std::fmt::Display) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving on {address}")?;
    out.flush()?;
    Ok(())
}

/// Runs one server on `address` until the process is killed, or its parent (the harness) ends.
pub fn serve(peer: HttpPeer, address: &str) -> Result<(), BoxError> {
    // The harness kills its servers when it ends, but not when it is killed itself.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    match peer {
        HttpPeer::OursThreading => serve_ours(Threading::new(), address),
        HttpPeer::OursPool => serve_ours(Pool::default(), address),
        HttpPeer::OursPoolCores => {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            serve_ours(Pool::new().workers(cores), address)
        }
        HttpPeer::Hyper => serve_hyper(address),
        HttpPeer::Actix => serve_actix(address),
        HttpPeer::TinyHttp => serve_tiny(address),
    }
}

/// Our handler: one value per connection, answering every request on it.
#[derive(Handler)]
struct Bench;

impl HttpHandler for Bench {
    fn respond(&mut self, request: &Request, _server: &ServerContext) -> Response {
        match (request.method(), request.path()) {
            ("GET", "/plaintext") => Response::new(200)
                .with_content_type("text/plain")
                .with_body(HELLO),
            ("GET", "/json") => match json_body() {
                Ok(body) => Response::new(200)
                    .with_content_type("application/json")
                    .with_body(body),
                Err(e) => Response::text(500, e.to_string()),
            },
            _ => Response::text(404, "not found\n"),
        }
    }
}

fn serve_ours<S: Strategy>(strategy: S, address: &str) -> Result<(), BoxError> {
    // The timeouts and the cap a user's server sets (the examples' habit); the cap is above
    // the largest scenario so that it never turns a client away.
    let mut server = TcpServer::<Http<Bench>>::builder()
        .strategy(strategy)
        .backlog(BACKLOG)
        .max_connections(Some(4096))
        .nodelay(true)
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)))
        .bind(address)?;
    let local = server
        .server_address()
        .as_inet()
        .ok_or("not an inet address")?;
    announce(local)?;
    server.serve_forever()?;
    Ok(())
}

fn bind_std(address: &str) -> Result<TcpListener, BoxError> {
    let listener = TcpListener::bind(address)?;
    // std (and tokio) listen with a backlog of 128: listen again with ours.
    socket2::SockRef::from(&listener).listen(BACKLOG)?;
    Ok(listener)
}

fn serve_hyper(address: &str) -> Result<(), BoxError> {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::header::{HeaderValue, CONTENT_TYPE};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    async fn respond(
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
        let (status, content_type, body) = match request.uri().path() {
            "/plaintext" => (200, "text/plain", Bytes::from_static(HELLO)),
            "/json" => match json_body() {
                Ok(body) => (200, "application/json", Bytes::from(body)),
                Err(e) => (500, "text/plain", Bytes::from(e.to_string())),
            },
            _ => (404, "text/plain", Bytes::from_static(b"not found\n")),
        };
        let mut response = hyper::Response::new(Full::new(body));
        *response.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Ok(response)
    }

    let listener = bind_std(address)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        announce(listener.local_addr()?)?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(respond))
                    .await;
            });
        }
    })
}

fn serve_actix(address: &str) -> Result<(), BoxError> {
    use actix_web::{web, App, HttpResponse, HttpServer};

    async fn plaintext() -> HttpResponse {
        HttpResponse::Ok().content_type("text/plain").body(HELLO)
    }
    async fn json() -> HttpResponse {
        match json_body() {
            Ok(body) => HttpResponse::Ok()
                .content_type("application/json")
                .body(body),
            Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
        }
    }

    let listener = bind_std(address)?;
    let local = listener.local_addr()?;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route("/plaintext", web::get().to(plaintext))
                .route("/json", web::get().to(json))
        })
        // SIGTERM ends the process at once (the harness stops servers with it).
        .disable_signals()
        .listen(listener)?
        .run();
        announce(local)?;
        server.await?;
        Ok(())
    })
}

fn serve_tiny(address: &str) -> Result<(), BoxError> {
    use tiny_http::{Header, Response, Server};

    let listener = bind_std(address)?;
    let local = listener.local_addr()?;
    let server = Server::from_listener(listener, None)?;
    let plain: Header = "Content-Type: text/plain"
        .parse()
        .map_err(|()| "bad header")?;
    let json: Header = "Content-Type: application/json"
        .parse()
        .map_err(|()| "bad header")?;
    announce(local)?;
    for request in server.incoming_requests() {
        let response = match request.url() {
            "/plaintext" => Response::from_data(HELLO).with_header(plain.clone()),
            "/json" => match json_body() {
                Ok(body) => Response::from_data(body).with_header(json.clone()),
                Err(e) => Response::from_string(e.to_string()).with_status_code(500),
            },
            _ => Response::from_string("not found\n").with_status_code(404),
        };
        // A client that went away is its own business.
        let _ = request.respond(response);
    }
    Ok(())
}
