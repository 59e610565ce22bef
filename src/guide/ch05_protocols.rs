//! Chapter 5: HTTP for `requests`, RPC, and a WebSocket driven from JavaScript.
//!
//! Python stacks its protocols on `socketserver`: `http.server.HTTPServer` is a `TCPServer`,
//! `BaseHTTPRequestHandler` is a `StreamRequestHandler`, and `xmlrpc.server` sits on
//! `http.server`. This crate stacks them the same way. The HTTP layer,
//! [`socketserver::http`](crate::http), is a stream handler: an
//! [`HttpHandler`](crate::http::HttpHandler) answers one parsed
//! [`Request`](crate::http::Request) with a [`Response`](crate::http::Response), and
//! [`Http<H>`](crate::http::Http) serves it on any stream server, with any strategy.
//!
//! # REST, for Python's `requests`
//!
//! Python's handler writes its answer piece by piece (`send_response`, `send_header`,
//! `end_headers`, `wfile.write`), and must remember `Content-Length` itself. Here `respond`
//! *returns* the answer; the layer writes it with the right framing, keeps the connection alive
//! between requests, and refuses what a client should not send (too big, malformed, too slow)
//! before your code runs. One method sees every HTTP method, and a `match` on the method and
//! the path is the router.
//!
//! ```python
//! import json
//! from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
//!
//! class Api(BaseHTTPRequestHandler):
//!     def do_GET(self):
//!         if self.path != "/hello":
//!             self.send_error(404)
//!             return
//!         body = json.dumps({"hello": "world"}).encode()
//!         self.send_response(200)
//!         self.send_header("Content-Type", "application/json")
//!         self.send_header("Content-Length", str(len(body)))
//!         self.end_headers()
//!         self.wfile.write(body)
//!
//! ThreadingHTTPServer(("127.0.0.1", 8000), Api).serve_forever()
//! ```
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use socketserver::http::{Http, HttpHandler, Request, Response};
//! use socketserver::{Handler, ServerContext, TcpServer, Threading};
//!
//! #[derive(Handler)]
//! struct Api;
//!
//! impl HttpHandler for Api {
//!     fn respond(&mut self, request: &Request, _server: &ServerContext) -> Response {
//!         match (request.method(), request.path()) {
//!             ("GET" | "HEAD", "/hello") => Response::new(200)
//!                 .with_content_type("application/json")
//!                 .with_body(r#"{"hello": "world"}"#),
//!             (_, "/hello") => Response::new(405).with_header("Allow", "GET, HEAD"),
//!             _ => Response::text(404, "not found\n"),
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // ThreadingHTTPServer, with the timeouts and the cap every server should have.
//! let mut server = TcpServer::<Http<Api>, Threading>::builder()
//!     .read_timeout(Some(Duration::from_secs(30)))
//!     .write_timeout(Some(Duration::from_secs(30)))
//!     .max_connections(Some(64))
//!     .bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.serve_forever());
//!
//! // What requests.get(f"http://{address}/hello") sends, and reads back.
//! let mut client = std::net::TcpStream::connect(address)?;
//! client.write_all(b"GET /hello HTTP/1.1\r\nHost: guide\r\nConnection: close\r\n\r\n")?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(answer.contains("Content-Type: application/json\r\n"));
//! assert!(answer.ends_with("\r\n\r\n{\"hello\": \"world\"}"));
//!
//! stop.shutdown();
//! serving.join().expect("serving thread")?;
//! # Ok(())
//! # }
//! ```
//!
//! From Python, with `requests`:
//!
//! ```python
//! import requests
//! r = requests.get("http://127.0.0.1:8000/hello", timeout=5)
//! assert r.status_code == 200 and r.json() == {"hello": "world"}
//! ```
//!
//! The layer's limits (body size, head size, the time a request may take to arrive) are
//! [`Limits`](crate::http::Limits), set per handler through
//! [`HttpHandler::limits`](crate::http::HttpHandler::limits); the module's documentation lists
//! everything it checks. This chapter's example, `guide-notes`, is a small REST API with every
//! limit stated; the `rest` example (`examples/rest.rs`) is a bigger one.
//!
//! # RPC: XML-RPC and JSON-RPC
//!
//! Python's `xmlrpc.server.SimpleXMLRPCServer` answers `POST` on `/` and `/RPC2`, and
//! `xmlrpc.client.ServerProxy` calls it as if its methods were local. The `xmlrpc` example is
//! such a server: an `HttpHandler` that decodes a `<methodCall>`, dispatches on the method name,
//! and encodes a `<methodResponse>` (or a fault, which Python raises as `xmlrpc.client.Fault`).
//! Python's client works against it unchanged:
//!
//! ```python
//! # Python's own server, for comparison:
//! #   from xmlrpc.server import SimpleXMLRPCServer
//! #   server = SimpleXMLRPCServer(("127.0.0.1", 8002)); server.register_function(pow)
//! import xmlrpc.client
//! proxy = xmlrpc.client.ServerProxy("http://127.0.0.1:8002/RPC2")
//! print(proxy.add(2, 3))                  # 5
//! print(proxy.system.listMethods())
//! ```
//!
//! ```text
//! cargo run --example xmlrpc -- 127.0.0.1:8002
//! ```
//!
//! JSON-RPC 2.0 is the same idea with JSON bodies; Python has no server for it in the standard
//! library. The `jsonrpc` example serves it on `POST /`, with notifications, batches and the
//! specification's error codes; any HTTP client is a JSON-RPC client:
//!
//! ```python
//! import requests
//! r = requests.post("http://127.0.0.1:8001/", timeout=5,
//!                   json={"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1})
//! print(r.json()["result"])                # 19
//! ```
//!
//! ```text
//! cargo run --example jsonrpc -- 127.0.0.1:8001
//! ```
//!
//! # A WebSocket, driven from JavaScript
//!
//! A WebSocket starts as an HTTP request asking to switch protocols. The HTTP layer answers it
//! with `101 Switching Protocols` ([`Response::switching_protocols`](crate::http::Response::switching_protocols))
//! and then hands the raw connection to
//! [`HttpHandler::upgraded`](crate::http::HttpHandler::upgraded), where a WebSocket library
//! (the example uses `tungstenite`) speaks the protocol on the connection's own thread. So one
//! port serves both the page and the socket. In the browser:
//!
//! ```text
//! const socket = new WebSocket(`ws://${location.host}/ws`);
//! socket.onmessage = (event) => console.log(event.data);
//! socket.onopen = () => socket.send("hello, room");
//! ```
//!
//! The `websocket` example (`examples/websocket.rs`) is a chat room with its page: run it, open
//! `http://127.0.0.1:8003/` in two tabs, and type. Its room is chapter 4's broadcast pattern
//! over WebSocket. From Python, the `websockets` package speaks to it:
//!
//! ```python
//! from websockets.sync.client import connect
//! with connect("ws://127.0.0.1:8003/ws") as ws:
//!     ws.send("hi")
//!     print(ws.recv())
//! ```
//!
//! ```text
//! cargo run --example websocket -- 127.0.0.1:8003
//! ```
//!
//! # The example
//!
//! `examples/guide/notes.rs` (`guide-notes`): a REST API of short notes for `requests`
//! (`GET`/`POST /notes`, `GET`/`DELETE /notes/<id>`), with `201` and `Location`, `404`,
//! `405` with `Allow`, `400` for bad JSON, and limits on bodies, notes, time and connections.
//!
//! ```text
//! cargo run --example guide-notes -- 127.0.0.1:8010
//! python3 -c "
//! import requests
//! r = requests.post('http://127.0.0.1:8010/notes', json={'text': 'buy milk'})
//! print(r.status_code, r.headers['Location'], r.json())"
//! ```
