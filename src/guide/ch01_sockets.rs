//! Chapter 1: BSD sockets with `std`, before any framework.
//!
//! Python's `socket` module is a thin layer over the BSD socket calls; Rust's `std::net` and
//! `std::os::unix::net` are the same calls with types around them. One difference shapes
//! everything: Python has one `socket` object for every kind of socket, while Rust has a type
//! per role. A listening TCP socket is a [`TcpListener`](std::net::TcpListener), a connected
//! one a [`TcpStream`](std::net::TcpStream), a UDP socket a
//! [`UdpSocket`](std::net::UdpSocket), so calling `accept` on a connected socket, or `recv` on
//! a listening one, does not compile. A socket closes when its value is dropped, as a Python
//! socket does at the end of a `with` block.
//!
//! # socket, bind, listen, accept
//!
//! ```python
//! import socket
//!
//! with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
//!     server.bind(("127.0.0.1", 0))        # port 0: the system picks a free port
//!     server.listen()
//!     print(server.getsockname())          # ('127.0.0.1', 43817)
//!     conn, addr = server.accept()
//!     with conn:
//!         data = conn.recv(1024)           # b'' when the client has closed
//!         conn.sendall(data)
//! ```
//!
//! In Rust, [`TcpListener::bind`](std::net::TcpListener::bind) is `socket`, `bind` and `listen`
//! in one call (with `SO_REUSEADDR` set, and a backlog of 128: the same as Python's `listen()`
//! without an argument on Linux). [`accept`](std::net::TcpListener::accept) returns the
//! connected stream and the client's address, as Python's does; `recv` is
//! [`Read::read`](std::io::Read::read) and `sendall` is
//! [`Write::write_all`](std::io::Write::write_all).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::thread;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = TcpListener::bind("127.0.0.1:0")?; // socket + bind + listen
//! let address = server.local_addr()?; // getsockname(): the port the system picked
//!
//! let serving = thread::spawn(move || -> std::io::Result<()> {
//!     let (mut conn, addr) = server.accept()?;
//!     assert!(addr.ip().is_loopback());
//!     let mut data = [0; 1024];
//!     let n = conn.read(&mut data)?; // recv(1024): Ok(0) when the client has closed
//!     conn.write_all(&data[..n])?; // sendall
//!     Ok(())
//! }); // conn and server are closed when dropped, at the end of the thread
//!
//! let mut client = TcpStream::connect(address)?; // socket.create_connection(address)
//! client.write_all(b"hello")?;
//! let mut reply = [0; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! serving.join().expect("server thread")?;
//! # Ok(())
//! # }
//! ```
//!
//! # send against sendall: write against write_all
//!
//! Python's `send` may send only part of its buffer and returns how much it sent; `sendall`
//! loops until everything is sent or an error is raised. Rust has the same pair:
//! [`write`](std::io::Write::write) returns how many bytes went (possibly fewer than asked),
//! and [`write_all`](std::io::Write::write_all) loops, retrying on `EINTR`. Use `write_all`
//! unless you are counting bytes yourself. On the reading side, `recv(n)` and
//! [`read`](std::io::Read::read) both return *up to* `n` bytes: whatever has arrived, possibly
//! half a message or two messages (chapter 2 is about that). To wait for exactly `n` bytes, Rust
//! has [`read_exact`](std::io::Read::read_exact); Python needs a loop (or
//! `sock.makefile('rb').read(n)`).
//!
//! # UDP: recvfrom and sendto
//!
//! ```python
//! sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
//! sock.bind(("127.0.0.1", 0))
//! data, addr = sock.recvfrom(1024)   # one datagram; the rest is discarded if it is longer
//! sock.sendto(data.upper(), addr)
//! ```
//!
//! ```
//! use std::net::UdpSocket;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = UdpSocket::bind("127.0.0.1:0")?;
//! let client = UdpSocket::bind("127.0.0.1:0")?;
//! client.send_to(b"ping", server.local_addr()?)?;
//!
//! let mut buf = [0; 1024];
//! let (n, addr) = server.recv_from(&mut buf)?; // one datagram, and who sent it
//! server.send_to(&buf[..n].to_ascii_uppercase(), addr)?;
//!
//! let (n, _) = client.recv_from(&mut buf)?;
//! assert_eq!(&buf[..n], b"PING");
//! # Ok(())
//! # }
//! ```
//!
//! As in Python, a datagram longer than the buffer is cut short and the rest is lost without
//! an error. The servers of this crate check for that (see
//! [`ServerBuilder::max_packet_size`](crate::ServerBuilder::max_packet_size)).
//!
//! # settimeout and setblocking
//!
//! Python's `settimeout(t)` bounds every blocking call on the socket (`recv`, `send`, `accept`,
//! `connect`) and raises `TimeoutError` when it passes; `setblocking(False)` makes them raise
//! `BlockingIOError` instead of waiting. Rust sets the two directions apart:
//! [`set_read_timeout`](std::net::TcpStream::set_read_timeout) and
//! [`set_write_timeout`](std::net::TcpStream::set_write_timeout) (the socket options
//! `SO_RCVTIMEO` and `SO_SNDTIMEO`), [`TcpStream::connect_timeout`](std::net::TcpStream::connect_timeout)
//! for connecting, and [`set_nonblocking`](std::net::TcpStream::set_nonblocking). A timeout
//! shows up as an error of kind [`WouldBlock`](std::io::ErrorKind::WouldBlock) on Unix
//! (`TimedOut` on Windows), and so does a non-blocking call with nothing to do. A zero timeout
//! is an error in Rust (`None` means "wait forever"), where Python's `settimeout(0)` means
//! non-blocking.
//!
//! ```python
//! conn.settimeout(0.05)
//! try:
//!     conn.recv(1024)
//! except TimeoutError:
//!     print("nothing for 50 ms")
//! ```
//!
//! ```
//! use std::io::{ErrorKind, Read};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let _client = TcpStream::connect(server.local_addr()?)?; // connected, and silent
//! let (mut conn, _) = server.accept()?;
//!
//! conn.set_read_timeout(Some(Duration::from_millis(50)))?; // settimeout, for reads
//! let timed_out = conn.read(&mut [0; 1024]).unwrap_err();
//! assert!(matches!(timed_out.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
//!
//! conn.set_nonblocking(true)?; // setblocking(False)
//! let would_block = conn.read(&mut [0; 1024]).unwrap_err();
//! assert_eq!(would_block.kind(), ErrorKind::WouldBlock);
//! # Ok(())
//! # }
//! ```
//!
//! A server should always set read and write timeouts: without them one client that connects
//! and says nothing holds its connection (and the thread serving it) for ever. The servers of
//! this crate take them as builder options,
//! [`read_timeout`](crate::ServerBuilder::read_timeout) and
//! [`write_timeout`](crate::ServerBuilder::write_timeout).
//!
//! # getpeername, getsockname, setsockopt, fileno
//!
//! `getpeername()` is [`peer_addr`](std::net::TcpStream::peer_addr) and `getsockname()` is
//! [`local_addr`](std::net::TcpStream::local_addr). `std` has methods for the common options
//! (`set_nodelay` for `TCP_NODELAY`, `set_ttl`); for the rest, the `socket2` crate's
//! [`SockRef`](https://docs.rs/socket2/latest/socket2/struct.SockRef.html) borrows any socket
//! and sets options on it, one method per option, named after it. `fileno()` is
//! [`as_raw_fd`](std::os::fd::AsRawFd::as_raw_fd); prefer
//! [`as_fd`](std::os::fd::AsFd::as_fd), which borrows the descriptor so it cannot outlive the
//! socket.
//!
//! ```python
//! conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
//! conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
//! print(conn.getpeername(), conn.getsockname(), conn.fileno())
//! ```
//!
//! ```
//! use std::net::{TcpListener, TcpStream};
//! use std::os::fd::{AsFd, AsRawFd};
//! use socket2::SockRef;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! assert!(SockRef::from(&server).reuse_address()?); // std's bind set SO_REUSEADDR
//! let client = TcpStream::connect(server.local_addr()?)?;
//! let (conn, _) = server.accept()?;
//!
//! assert_eq!(conn.peer_addr()?, client.local_addr()?); // getpeername / getsockname
//!
//! let options = SockRef::from(&conn); // borrows conn; setsockopt without owning it
//! options.set_keepalive(true)?; // SO_KEEPALIVE
//! assert!(options.keepalive()?); // getsockopt
//! conn.set_nodelay(true)?; // TCP_NODELAY, in std
//!
//! assert!(conn.as_raw_fd() >= 0); // fileno()
//! let _borrowed = conn.as_fd(); // a BorrowedFd: cannot outlive conn
//! # Ok(())
//! # }
//! ```
//!
//! # connect_ex: errors are values
//!
//! Python's `connect` raises and `connect_ex` returns the error number instead (`0` for
//! success). In Rust every call returns a [`Result`], so there is only one `connect`, and the
//! error is already a value: match on its [`kind`](std::io::Error::kind), or read the number
//! with [`raw_os_error`](std::io::Error::raw_os_error).
//!
//! ```python
//! errno = sock.connect_ex(("127.0.0.1", port))   # 111 (ECONNREFUSED) when nobody listens
//! ```
//!
//! ```
//! use std::io::ErrorKind;
//! use std::net::{TcpListener, TcpStream};
//!
//! # fn main() -> std::io::Result<()> {
//! // A port that was free a moment ago: bind one, note it, close it.
//! let address = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
//! match TcpStream::connect(address) {
//!     Ok(_) => println!("something else took the port meanwhile"),
//!     Err(e) => {
//!         assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
//!         assert_eq!(e.raw_os_error(), Some(111)); // ECONNREFUSED on Linux
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # AF_UNIX against AF_INET
//!
//! A Unix socket has a path for its address instead of a host and port, and otherwise works
//! like TCP (stream) or UDP (datagram), only on one machine: Python changes the family,
//! `socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)`; Rust has its own types in
//! [`std::os::unix::net`]: [`UnixListener`](std::os::unix::net::UnixListener),
//! [`UnixStream`](std::os::unix::net::UnixStream) and
//! [`UnixDatagram`](std::os::unix::net::UnixDatagram). In both languages `bind` creates the
//! file, closing the socket does **not** remove it, and binding again while it exists fails
//! with "address in use" (`EADDRINUSE`), so you remove it yourself. (This crate's Unix servers
//! do it for you: a stale file is replaced, a live one refused, and their own removed on
//! close.) Unix sockets also tell the server who the client is: see
//! [`Connection::peer_credentials`](crate::Connection::peer_credentials) (`SO_PEERCRED`).
//!
//! ```python
//! with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
//!     server.bind("/tmp/demo.sock")
//!     server.listen()
//!     ...
//! os.unlink("/tmp/demo.sock")
//! ```
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::{UnixListener, UnixStream};
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?; // a directory of our own, so no path clashes
//! let path = dir.path().join("demo.sock");
//! let server = UnixListener::bind(&path)?; // creates the file
//!
//! let mut client = UnixStream::connect(&path)?;
//! let (mut conn, _addr) = server.accept()?; // the client's address is usually unnamed
//! client.write_all(b"over a file")?;
//! let mut data = [0; 11];
//! conn.read_exact(&mut data)?;
//! assert_eq!(&data, b"over a file");
//!
//! drop(server);
//! assert!(path.exists()); // closing does not remove the file...
//! assert!(UnixListener::bind(&path).is_err()); // ...and it blocks the next bind
//! std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```
//!
//! # The example
//!
//! `examples/guide/sockets.rs` (`guide-sockets`) is an echo server on `std::net` alone: a
//! thread per client, read and write timeouts, and a cap on clients served at once. It is
//! everything a small server needs, written by hand, and about a hundred lines; chapter 3 writes
//! the same server with this crate.
//!
//! ```text
//! cargo run --example guide-sockets -- 127.0.0.1:9000
//! python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 9000)); s.sendall(b'hi'); print(s.recv(2))"
//! ```
