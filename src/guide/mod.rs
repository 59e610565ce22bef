//! Most people reach this crate from Python's socket tutorials: first a bare `socket`, then
//! bytes and framing, then `socketserver`, then HTTP, RPC and WebSockets on top. The guide
//! walks the same road. Every chapter puts the Python you know beside the Rust that does the
//! same thing, every Rust block is a doc-test that really runs (on `127.0.0.1:0`, so nothing
//! clashes), and every chapter ends in a program under `examples/guide/` that you can run and
//! talk to from Python.
//!
//! | chapter | what it covers | its example |
//! |---|---|---|
//! | [1. Sockets](crate::guide::ch01_sockets) | `socket`, `bind`, `listen`, `accept`, `recv`, `send`/`sendall`, `recvfrom`/`sendto`, timeouts, `setsockopt`, `fileno`, `connect_ex`; AF_UNIX against AF_INET | `guide-sockets`: an echo server on `std::net` alone |
//! | [2. Bytes](crate::guide::ch02_bytes) | `b'..'`, `encode`/`decode`, numbers to bytes, framing by length and by line | `guide-framing`: length-prefixed messages |
//! | [3. socketserver](crate::guide::ch03_socketserver) | the three parts (handler, transport, strategy) and the Python classes mapped | `guide-upper`: Python's `MyTCPHandler`, ported |
//! | [4. Recipes](crate::guide::ch04_recipes) | a server on a background thread, a broadcast chat, stopping with idle clients, logging | `guide-chat`: a chat room that a slow client cannot stall |
//! | [5. HTTP, RPC and WebSocket](crate::guide::ch05_protocols) | REST for `requests`, XML-RPC and JSON-RPC, a WebSocket from JavaScript | `guide-notes`: a small REST API |
//!
//! Run any example with `cargo run --example guide-<name> -- --help`; each one's opening
//! comment gives the command, a Python client to try, and the limits it runs with (timeouts
//! and a connection cap, each with a flag). `cargo test --test guide` runs all of them against
//! Python clients.
//!
//! The bigger examples (`echo`, `rest`, `jsonrpc`, `xmlrpc`, `websocket` under `examples/`) are
//! where the guide leads; the crate's [front page](crate) has the full table of Python names.
//!
//! The Python in the guide is Python 3.11's `socket` and `socketserver`.

pub mod ch01_sockets;
pub mod ch02_bytes;
pub mod ch03_socketserver;
pub mod ch04_recipes;
#[cfg(feature = "http")]
pub mod ch05_protocols;
