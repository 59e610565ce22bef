//! Chapter 4: recipes users asked for.
//!
//! # A server on a background thread, stopped from the main one
//!
//! Python's documentation runs `serve_forever` on a thread and stops it with `shutdown()`
//! from another; `server_close()` then releases the socket. The same three steps here, with two
//! differences: the stop lives on a [`ShutdownHandle`](crate::ShutdownHandle) that you clone and
//! send anywhere (so it cannot deadlock, even called from a handler), and
//! [`close`](crate::Server::close) also waits for requests still running, at most the
//! builder's [`close_timeout`](crate::ServerBuilder::close_timeout).
//!
//! ```python
//! server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
//! thread = threading.Thread(target=server.serve_forever)
//! thread.start()
//! ...                      # use server.server_address
//! server.shutdown()        # from this thread: the loop stops, the thread ends
//! thread.join()
//! server.server_close()
//! ```
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::thread;
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading};
//!
//! #[derive(Handler)]
//! struct Hello;
//!
//! impl StreamRequestHandler for Hello {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         request.wfile.write_all(b"hello\n")?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<Hello, Threading>::bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle(); // take the handle before the server moves
//! let serving = thread::spawn(move || -> socketserver::Result<_> {
//!     server.serve_forever()?;
//!     Ok(server.close()) // server_close(): stop listening, wait for running requests
//! });
//!
//! let mut reply = String::new();
//! TcpStream::connect(address)?.read_to_string(&mut reply)?;
//! assert_eq!(reply, "hello\n");
//!
//! stop.shutdown(); // returns once the loop has stopped
//! let report = serving.join().expect("serving thread")?;
//! assert_eq!(report.abandoned, 0);
//! # Ok(())
//! # }
//! ```
//!
//! To know when a server started elsewhere is really serving (to print its address, or tell a
//! supervisor), register [`Server::on_ready`](crate::Server::on_ready) before serving.
//!
//! # A broadcast chat
//!
//! Every chat server tutorial keeps a list of clients and, for each message, writes to every
//! socket in a loop, often under a lock on the list. One client that stops reading then fills
//! its socket buffers, the write to it blocks, and with it every other client's message, and
//! every other sender waiting for the lock. The Python version is the same:
//!
//! ```python
//! clients = set(); lock = threading.Lock()
//!
//! class Chat(socketserver.StreamRequestHandler):
//!     def handle(self):
//!         with lock: clients.add(self.wfile)
//!         for line in self.rfile:
//!             with lock:
//!                 for out in clients:
//!                     out.write(line)       # blocks on a client that does not read
//! ```
//!
//! The fix, which production chat hubs use: give each client a **bounded queue** and a
//! **writer of its own**. Broadcasting puts the message in every queue without waiting
//! (`try_send`); a client whose queue is full is not keeping up, and is dropped. Only its own
//! writer ever waits on its socket, so a slow client costs only itself, and what it can make the
//! server hold is bounded by the queue's length times the longest message.
//!
//! ```
//! use std::sync::Arc;
//! use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
//! use parking_lot::Mutex;
//!
//! type Message = Arc<[u8]>; // encoded once, shared by every queue
//!
//! #[derive(Default)]
//! struct Room {
//!     queues: Mutex<Vec<Sender<Message>>>,
//! }
//!
//! impl Room {
//!     fn join(&self, depth: usize) -> Receiver<Message> {
//!         let (queue, outbox) = bounded(depth);
//!         self.queues.lock().push(queue);
//!         outbox // the client's writer thread writes what comes out of here
//!     }
//!
//!     /// Never blocks: the lock is held only for `try_send`.
//!     fn broadcast(&self, message: Message) {
//!         self.queues.lock().retain(|queue| match queue.try_send(Arc::clone(&message)) {
//!             Ok(()) => true,
//!             Err(TrySendError::Full(_)) => false, // too slow: dropped (its writer sees the end)
//!             Err(TrySendError::Disconnected(_)) => false, // gone
//!         });
//!     }
//! }
//!
//! let room = Room::default();
//! let reader = room.join(2); // reads what it is sent
//! let stalled = room.join(2); // never reads
//! for text in ["a", "b", "c"] {
//!     room.broadcast(Arc::from(text.as_bytes()));
//!     assert_eq!(&*reader.recv().expect("message"), text.as_bytes());
//! }
//! assert_eq!(room.queues.lock().len(), 1); // the stalled client was dropped at the third
//! assert_eq!(stalled.len(), 2); // and holds no more than its queue
//! ```
//!
//! The example `guide-chat` (below) is this room on a [`Threading`](crate::Threading) server, with
//! a writer thread per client that cuts its connection off when a write fails; the `websocket`
//! example runs the same pattern over WebSocket.
//!
//! # Stopping with idle clients
//!
//! A thread serving a connection spends most of its time blocked in a read, waiting for the
//! client. Python's `server_close()` on a threading server joins those threads with no timeout,
//! so one idle client keeps it waiting until the client hangs up. Here three tools keep a stop
//! short:
//!
//! 1. **A read timeout** ([`ServerBuilder::read_timeout`](crate::ServerBuilder::read_timeout)):
//!    no connection stays silent longer, stopping or not.
//! 2. **Idle marks** ([`StreamRequest::set_idle`](crate::StreamRequest::set_idle)): a handler
//!    that waits for the client's next request marks its connection idle; a stop closes idle
//!    connections at once, and the pending read returns end-of-file. It returns `false` once the
//!    server is stopping, and [`ServerContext::is_closing`](crate::ServerContext::is_closing)
//!    says the same anywhere. The HTTP layer does this between keep-alive requests.
//! 3. **A deadline** ([`close_timeout`](crate::ServerBuilder::close_timeout)): requests still
//!    running when it passes have the reading side of their connection shut down, so a handler
//!    blocked reading sees end-of-file and ends.
//!
//! ```
//! use std::io::{BufRead, Write};
//! use std::net::TcpStream;
//! use std::time::{Duration, Instant};
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading};
//!
//! #[derive(Handler)]
//! struct Lines;
//!
//! impl StreamRequestHandler for Lines {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         let mut line = String::new();
//!         // Idle while waiting for a line; a stop ends the wait with end-of-file.
//!         while request.set_idle(true) && request.rfile.read_line(&mut line)? > 0 {
//!             request.set_idle(false);
//!             request.wfile.write_all(line.as_bytes())?;
//!             line.clear();
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<Lines, Threading>::builder()
//!     .read_timeout(Some(Duration::from_secs(300)))
//!     .close_timeout(Some(Duration::from_secs(5)))
//!     .bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || -> socketserver::Result<_> {
//!     server.serve_forever()?;
//!     Ok(server.close())
//! });
//!
//! // A client says one line, then nothing.
//! let mut idle = TcpStream::connect(address)?;
//! idle.write_all(b"hi\n")?;
//! let mut echo = String::new();
//! std::io::BufReader::new(&idle).read_line(&mut echo)?;
//! assert_eq!(echo, "hi\n");
//!
//! let start = Instant::now();
//! stop.shutdown();
//! let report = serving.join().expect("serving thread")?;
//! assert!(start.elapsed() < Duration::from_secs(5)); // not the read timeout, not the deadline
//! assert_eq!(report.abandoned, 0); // the idle connection was closed, its handler ended
//! # Ok(())
//! # }
//! ```
//!
//! [`serve_until_signal`](crate::Server::serve_until_signal) puts these together for a program
//! that runs until Ctrl-C. On the first SIGINT or SIGTERM it stops taking requests, closes idle
//! connections at once, and gives running requests a **grace period** to finish: the
//! `close_timeout`, or [`DEFAULT_GRACE_PERIOD`](crate::DEFAULT_GRACE_PERIOD) (10 s) when that is
//! not set; when it passes, the connections still open have their reading side shut down. A
//! **second** signal stops at once. Afterwards SIGINT and SIGTERM work as they did before.
//! A [`Serial`](crate::Serial) handler blocked reading on the serving thread is reached the same
//! way. Forked children are not: give them a read timeout.
//!
//! # Logging
//!
//! Python's `socketserver` logs nothing; its `handle_error` prints a traceback to stderr. This
//! crate reports through the [`log`](https://docs.rs/log) facade and never installs a logger
//! itself: the program chooses one. The examples use `env_logger`, configured by the
//! `RUST_LOG` environment variable (Python: `logging.basicConfig(level=...)`):
//!
//! ```python
//! import logging
//! logging.basicConfig(level=logging.DEBUG)
//! ```
//!
//! ```
//! // In main(), once, before the server starts (env_logger is a dependency of the program):
//! let _ = env_logger::try_init(); // init() panics if a logger is already set
//! log::info!("starting");
//! ```
//!
//! ```text
//! RUST_LOG=info cargo run --example guide-chat -- 127.0.0.1:9002           # start, stop, errors
//! RUST_LOG=socketserver=debug,info cargo run --example guide-chat -- ...  # and every connection
//! ```
//!
//! The library's records use targets under `socketserver::` (`socketserver::server` for start
//! and stop, `socketserver::accept`, `socketserver::handler` for failed requests,
//! `socketserver::threading`, `socketserver::pool`, `socketserver::forking`), so
//! `RUST_LOG=socketserver::handler=error` keeps only failed requests. Levels: `error` for a
//! failed request, `warn` for trouble the server survives (no descriptors left, a datagram too
//! long), `info` for starting and stopping, `debug` for each connection.
//!
//! # The example
//!
//! `examples/guide/chat.rs` (`guide-chat`): the broadcast room, with idle marks for a quick
//! stop, and a limit on every byte a client can make it hold.
//!
//! ```text
//! RUST_LOG=info cargo run --example guide-chat -- 127.0.0.1:9002
//! python3 -c "
//! import socket, sys, threading
//! s = socket.create_connection(('127.0.0.1', 9002))
//! threading.Thread(target=lambda: [print(l.decode(), end='') for l in s.makefile('rb')], daemon=True).start()
//! for line in sys.stdin: s.sendall(line.encode())"
//! ```
