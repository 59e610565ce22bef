//! Chapter 3: `socketserver`, the three parts, and the Python classes mapped.
//!
//! Chapter 1's server, written by hand, had to do the same things every server does: accept
//! in a loop, give each client a thread, set timeouts, cap the clients, close cleanly. Python's
//! `socketserver` does those once, so a program only says what happens on a connection. This
//! crate is the same design, with the same names.
//!
//! # The three parts
//!
//! Every server is three independent choices, and changing one never touches the others:
//!
//! | part | the question | Python | here |
//! |---|---|---|---|
//! | **handler** | what happens with one request (a connection, or a datagram)? | a `BaseRequestHandler` subclass, `RequestHandlerClass` | a type with [`#[derive(Handler)]`](derive@crate::Handler) implementing [`StreamRequestHandler`](crate::StreamRequestHandler) or [`DatagramRequestHandler`](crate::DatagramRequestHandler) |
//! | **transport** | which kind of socket? | `TCPServer`, `UDPServer`, `UnixStreamServer`, `UnixDatagramServer` | [`TcpServer`](crate::TcpServer), [`UdpServer`](crate::UdpServer), [`UnixStreamServer`](crate::UnixStreamServer), [`UnixDatagramServer`](crate::UnixDatagramServer) |
//! | **strategy** | where does a request run? | none (one at a time), `ThreadingMixIn`, `ForkingMixIn` | [`Serial`](crate::Serial) (the default), [`Threading`](crate::Threading), [`Forking`](crate::Forking), and a bounded thread [`Pool`](crate::Pool), which Python lacks |
//!
//! A server is the type `Server<Transport, Handler, Strategy>`; the aliases fix the transport,
//! so `TcpServer<MyHandler, Threading>` is Python's `ThreadingTCPServer` serving `MyHandler`
//! (and [`ThreadingTcpServer<MyHandler>`](crate::ThreadingTcpServer) spells it Python's way).
//!
//! # The handler
//!
//! The first example of Python's `socketserver` documentation:
//!
//! ```python
//! import socketserver
//!
//! class MyTCPHandler(socketserver.StreamRequestHandler):
//!     def handle(self):
//!         self.data = self.rfile.readline().strip()
//!         print(f"{self.client_address[0]} wrote: {self.data}")
//!         self.wfile.write(self.data.upper())
//!
//! with socketserver.TCPServer(("127.0.0.1", 0), MyTCPHandler) as server:
//!     server.handle_request()
//! ```
//!
//! The same in Rust. A Python handler is a class the server instantiates for each request; here
//! it is a type whose value the server makes for each request ([`Handler::new`](crate::Handler::new),
//! which the derive writes), and `handle` gets the request as an argument instead of through
//! `self`: `request.rfile`, `request.wfile`, `request.client_address()`, `request.server()`.
//! `handle` returns a [`HandleResult`](crate::HandleResult), so `?` works on any error; a
//! failure (or a panic) goes to the `handle_error` hook, which logs it, and the server goes on,
//! as Python's prints a traceback and goes on.
//!
//! ```
//! use std::io::{BufRead, Read, Write};
//! use std::net::TcpStream;
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! #[derive(Handler)]
//! struct MyTcpHandler;
//!
//! impl StreamRequestHandler for MyTcpHandler {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         let mut line = Vec::new();
//!         // readline(), bounded: at most 1 KiB is held for this client.
//!         (&mut request.rfile).take(1024).read_until(b'\n', &mut line)?;
//!         let data = line.trim_ascii();
//!         println!("{} wrote: {:?}", request.client_address(), String::from_utf8_lossy(data));
//!         request.wfile.write_all(&data.to_ascii_uppercase())?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<MyTcpHandler>::bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let client = std::thread::spawn(move || -> std::io::Result<String> {
//!     let mut sock = TcpStream::connect(address)?;
//!     sock.write_all(b"hello world\n")?;
//!     let mut reply = String::new();
//!     sock.read_to_string(&mut reply)?; // the server closes after handle()
//!     Ok(reply)
//! });
//! server.handle_request()?; // one request, on this thread
//! assert_eq!(client.join().expect("client")?, "HELLO WORLD");
//! # Ok(())
//! # }
//! ```
//!
//! When `handle` returns, the server flushes `wfile`, shuts down the writing side and closes the
//! connection, so the client sees end-of-file at once, as in Python. `wfile` is unbuffered by
//! default (Python's `wbufsize = 0`): every `write_all` is sent when it is called, so build a
//! reply in one buffer when it should leave in one piece.
//!
//! # The transport
//!
//! The Python documentation's UDP example: the handler gets the datagram and the socket, and
//! replies with `sendto`. Here the datagram is [`request.packet()`](crate::DatagramRequest::packet)
//! (or `rfile`) and what the handler writes to `wfile` goes back to the sender in one datagram.
//!
//! ```python
//! class MyUDPHandler(socketserver.BaseRequestHandler):
//!     def handle(self):
//!         data, socket = self.request
//!         socket.sendto(data.strip().upper(), self.client_address)
//!
//! with socketserver.UDPServer(("127.0.0.1", 0), MyUDPHandler) as server:
//!     server.handle_request()
//! ```
//!
//! ```
//! use std::io::Write;
//! use std::net::UdpSocket;
//! use socketserver::{DatagramRequest, DatagramRequestHandler, HandleResult, Handler, UdpServer};
//!
//! #[derive(Handler)]
//! struct MyUdpHandler;
//!
//! impl DatagramRequestHandler for MyUdpHandler {
//!     fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
//!         let reply = request.packet().trim_ascii().to_ascii_uppercase();
//!         request.wfile.write_all(&reply)?; // sent to the client after finish()
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = UdpServer::<MyUdpHandler>::bind("127.0.0.1:0")?;
//! let client = UdpSocket::bind("127.0.0.1:0")?;
//! client.send_to(b"hello\n", server.server_address().as_inet().expect("UDP address"))?;
//! server.handle_request()?;
//! let mut buf = [0; 64];
//! let (n, _) = client.recv_from(&mut buf)?;
//! assert_eq!(&buf[..n], b"HELLO");
//! # Ok(())
//! # }
//! ```
//!
//! A Unix server is the same handler on another transport: `UnixStreamServer::<MyTcpHandler>::bind(path)`.
//! Unlike Python's, it removes a stale socket file before binding, refuses a path a live server
//! holds, and removes its own file when it closes.
//!
//! # The strategy
//!
//! Python adds a mix-in; Rust adds a type parameter. Nothing else changes:
//!
//! ```python
//! class ThreadedTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
//!     pass
//!
//! server = ThreadedTCPServer(("127.0.0.1", 0), MyTCPHandler)
//! threading.Thread(target=server.serve_forever).start()
//! ```
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading};
//!
//! #[derive(Handler)]
//! struct Hello;
//!
//! impl StreamRequestHandler for Hello {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         let name = std::thread::current().name().map(str::to_owned);
//!         write!(request.wfile, "served on {}", name.as_deref().unwrap_or("a thread"))?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Class attributes become builder options; a server should always set these three.
//! let mut server = TcpServer::<Hello, Threading>::builder()
//!     .read_timeout(Some(Duration::from_secs(30)))
//!     .write_timeout(Some(Duration::from_secs(30)))
//!     .max_connections(Some(100))
//!     .bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.serve_forever());
//!
//! let mut reply = String::new();
//! TcpStream::connect(address)?.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("served on"));
//!
//! stop.shutdown(); // Python: server.shutdown(), from another thread
//! serving.join().expect("serving thread")?;
//! # Ok(())
//! # }
//! ```
//!
//! Which to choose: [`Serial`](crate::Serial) when each request is short and one at a time is
//! enough (most datagram servers); [`Threading`](crate::Threading) for connections that stay
//! open (chat, HTTP keep-alive), always with a read timeout and
//! [`max_connections`](crate::ServerBuilder::max_connections); [`Pool`](crate::Pool) for a fixed
//! number of threads with a bounded queue; [`Forking`](crate::Forking) to isolate each request in
//! its own process.
//!
//! # The Python classes mapped
//!
//! | Python | here |
//! |---|---|
//! | `socketserver.TCPServer(addr, H)` | `TcpServer::<H>::bind(addr)?`, or `::builder()` with options, then `.bind(addr)?` |
//! | `ThreadingTCPServer`, `ForkingUDPServer`, ... | `TcpServer<H, Threading>`, `UdpServer<H, Forking>`, ... (or the aliases `ThreadingTcpServer<H>` ...) |
//! | `allow_reuse_address`, `request_queue_size`, handler `timeout` | [`reuse_address`](crate::ServerBuilder::reuse_address), [`backlog`](crate::ServerBuilder::backlog), [`read_timeout`](crate::ServerBuilder::read_timeout) + [`write_timeout`](crate::ServerBuilder::write_timeout) |
//! | `BaseRequestHandler.setup`, `handle`, `finish` | the same methods on [`StreamRequestHandler`](crate::StreamRequestHandler) / [`DatagramRequestHandler`](crate::DatagramRequestHandler) |
//! | `self.request`, `self.client_address`, `self.server` | `request.connection()` (or `packet()`), `request.client_address()`, `request.server()` |
//! | attributes on the server, shared by handlers | the handler's `State`, in an `Arc`: `#[handler(state = T)]` (see the [front page](crate#sharing-state-between-requests)) |
//! | `serve_forever()`, `handle_request()` | [`serve_forever`](crate::Server::serve_forever), [`handle_request`](crate::Server::handle_request) |
//! | `server.shutdown()` | [`ShutdownHandle::shutdown`](crate::ShutdownHandle::shutdown): a handle you can clone and send; it never deadlocks, even from a handler |
//! | `server.server_close()`, `with ... as server` | [`close`](crate::Server::close), which also waits (with a deadline) for running requests; dropping the server stops listening without waiting |
//! | overriding `verify_request`, `handle_error`, `handle_timeout`, `service_actions` | closures given to the [`ServerBuilder`](crate::ServerBuilder) methods of the same names |
//! | `KeyboardInterrupt` ends `serve_forever` | [`serve_until_signal`](crate::Server::serve_until_signal): SIGINT and SIGTERM stop the server gracefully (chapter 4) |
//!
//! The [front page](crate#python-names) has the full table, and what differs and why.
//!
//! # The example
//!
//! `examples/guide/upper.rs` (`guide-upper`) is `MyTCPHandler` made into a service: it answers
//! every line of a connection (not only the first), on a thread per client, with line length,
//! timeouts and clients bounded, and it stops on Ctrl-C. Try it with the client from Python's
//! documentation:
//!
//! ```text
//! cargo run --example guide-upper -- 127.0.0.1:9999
//! python3 -c "
//! import socket
//! with socket.create_connection(('127.0.0.1', 9999)) as sock:
//!     sock.sendall(b'hello world\n')
//!     print(sock.makefile('rb').readline())"
//! ```
