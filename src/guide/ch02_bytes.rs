//! Chapter 2: strings against bytes, numbers to bytes, and framing.
//!
//! A socket carries bytes. Python 3 keeps `str` (text) and `bytes` apart and makes you
//! `encode` and `decode` between them; Rust does the same with [`String`]/`&str` (always valid
//! UTF-8) and `Vec<u8>`/`&[u8]` (any bytes). What Python checks when the program runs, Rust
//! checks when it compiles: `conn.write_all("hi")` does not compile, as `sock.sendall("hi")`
//! raises `TypeError`.
//!
//! # Literals, encode and decode
//!
//! | Python | Rust |
//! |---|---|
//! | `b'hello'` | `b"hello"` (a `&[u8; 5]`; `&b"hello"[..]` is a `&[u8]`) |
//! | `b'\x00\xff'` | `b"\x00\xff"` |
//! | `'héllo'.encode()` (UTF-8) | `"héllo".as_bytes()`, or `String::into_bytes` to keep the buffer |
//! | `data.decode()` | [`std::str::from_utf8(&data)`](std::str::from_utf8) (borrows) or [`String::from_utf8(data)`](String::from_utf8) (takes the `Vec`); both return `Err` on bad UTF-8, as Python raises `UnicodeDecodeError` |
//! | `data.decode(errors='replace')` | [`String::from_utf8_lossy(&data)`](String::from_utf8_lossy) |
//! | `data.upper()`, `data.strip()` on bytes | `data.to_ascii_uppercase()`, `data.trim_ascii()` |
//! | `len('é')` is 1, `len('é'.encode())` is 2 | `"é".chars().count()` is 1, `"é".len()` is 2: a Rust string's length is in bytes |
//!
//! ```python
//! data = "héllo".encode()
//! assert data == b"h\xc3\xa9llo"
//! assert data.decode() == "héllo"
//! assert b"\xff".decode(errors="replace") == "\ufffd"
//! ```
//!
//! ```
//! let data: &[u8] = "héllo".as_bytes(); // encode(): a view, no copy
//! assert_eq!(data, b"h\xc3\xa9llo");
//! assert_eq!(std::str::from_utf8(data), Ok("héllo")); // decode()
//! assert!(std::str::from_utf8(b"\xff").is_err()); // UnicodeDecodeError
//! assert_eq!(String::from_utf8_lossy(b"\xff"), "\u{fffd}"); // errors="replace"
//! assert_eq!(b" ping\r\n".trim_ascii().to_ascii_uppercase(), b"PING");
//! ```
//!
//! # Numbers to bytes
//!
//! Python has `int.to_bytes` and the `struct` module; Rust's integers have
//! [`to_be_bytes`](u32::to_be_bytes) and [`from_be_bytes`](u32::from_be_bytes) (and `le` for
//! little-endian). Network protocols are big-endian ("network order", `!` in `struct`).
//!
//! ```python
//! import struct
//! assert (1000).to_bytes(4, "big") == b"\x00\x00\x03\xe8"
//! assert struct.pack("!IH", 1000, 7) == b"\x00\x00\x03\xe8\x00\x07"
//! n, = struct.unpack("!I", b"\x00\x00\x03\xe8")
//! ```
//!
//! ```
//! assert_eq!(1000u32.to_be_bytes(), *b"\x00\x00\x03\xe8");
//!
//! let mut packet = Vec::new(); // struct.pack("!IH", 1000, 7)
//! packet.extend_from_slice(&1000u32.to_be_bytes());
//! packet.extend_from_slice(&7u16.to_be_bytes());
//! assert_eq!(packet, b"\x00\x00\x03\xe8\x00\x07");
//!
//! // struct.unpack("!I", ...): from a slice, check the length first.
//! let first: [u8; 4] = packet[..4].try_into().expect("4 bytes");
//! assert_eq!(u32::from_be_bytes(first), 1000);
//! ```
//!
//! # Framing: where does a message end?
//!
//! TCP carries a stream of bytes, not messages: one `recv` may return half of what the peer
//! sent with one `sendall`, or two of its messages run together. The protocol has to say where
//! a message ends. The two common answers are a length before each message and a delimiter
//! after it (usually a newline). Either way, **bound what you accept**: a length field is
//! chosen by the client, and a line ends when the client says so, so read no more than you are
//! willing to hold.
//!
//! ## A length prefix
//!
//! ```python
//! def recv_exact(sock, n):
//!     data = b""
//!     while len(data) < n:
//!         chunk = sock.recv(n - len(data))
//!         if not chunk:
//!             raise EOFError("peer closed mid-message")
//!         data += chunk
//!     return data
//!
//! def recv_message(sock, limit=64 * 1024):
//!     length, = struct.unpack("!I", recv_exact(sock, 4))
//!     if length > limit:
//!         raise ValueError(f"message of {length} bytes")
//!     return recv_exact(sock, length)
//!
//! sock.sendall(struct.pack("!I", len(payload)) + payload)
//! ```
//!
//! In Rust, [`read_exact`](std::io::Read::read_exact) is `recv_exact` (it fails with
//! `UnexpectedEof` if the peer closes early). The reader below is any [`Read`](std::io::Read):
//! a socket, a `StreamRequest`'s `rfile`, or bytes in memory, as here.
//!
//! ```
//! use std::io::{self, Read, Write};
//!
//! const LIMIT: u32 = 64 * 1024;
//!
//! fn send_message(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
//!     let length = u32::try_from(payload.len())
//!         .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
//!     // One buffer, one write_all: the prefix and the payload leave together.
//!     let mut frame = Vec::with_capacity(4 + payload.len());
//!     frame.extend_from_slice(&length.to_be_bytes());
//!     frame.extend_from_slice(payload);
//!     out.write_all(&frame)
//! }
//!
//! /// The next message, or `None` if the peer closed between messages.
//! fn recv_message(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
//!     let mut prefix = [0; 4];
//!     match input.read_exact(&mut prefix) {
//!         Ok(()) => {}
//!         Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
//!         Err(e) => return Err(e),
//!     }
//!     let length = u32::from_be_bytes(prefix);
//!     if length > LIMIT {
//!         // Checked before allocating: the client chose this number.
//!         return Err(io::Error::new(io::ErrorKind::InvalidData, "message too long"));
//!     }
//!     let mut payload = vec![0; length as usize];
//!     input.read_exact(&mut payload)?;
//!     Ok(Some(payload))
//! }
//!
//! # fn main() -> io::Result<()> {
//! let mut wire = Vec::new();
//! send_message(&mut wire, b"first")?;
//! send_message(&mut wire, "sécond".as_bytes())?;
//!
//! let mut input = &wire[..]; // two messages run together, as TCP may deliver them
//! assert_eq!(recv_message(&mut input)?.as_deref(), Some(&b"first"[..]));
//! assert_eq!(recv_message(&mut input)?.as_deref(), Some("sécond".as_bytes()));
//! assert_eq!(recv_message(&mut input)?, None);
//!
//! let mut hostile = &u32::MAX.to_be_bytes()[..]; // "4 GiB follow"
//! assert!(recv_message(&mut hostile).is_err()); // refused, nothing allocated
//! # Ok(())
//! # }
//! ```
//!
//! ## Lines
//!
//! Python reads lines through a file over the socket (`sock.makefile("rb")`, which is what
//! `socketserver`'s `self.rfile` is) and its `readline(limit)`. Rust wraps the socket in a
//! [`BufReader`](std::io::BufReader) (a `StreamRequest`'s `rfile` already is a buffered reader,
//! [`Rfile`](crate::Rfile), with the same methods) and uses
//! [`BufRead::read_line`](std::io::BufRead::read_line) for UTF-8 text or
//! [`read_until`](std::io::BufRead::read_until) for bytes. Neither has a limit of its own: put
//! one in front with [`Read::take`](std::io::Read::take), as `readline(limit)` does.
//!
//! ```python
//! rfile = conn.makefile("rb")
//! line = rfile.readline(1024)          # at most 1024 bytes
//! if line and not line.endswith(b"\n"):
//!     raise ValueError("line too long")
//! ```
//!
//! ```
//! use std::io::{self, BufRead, BufReader, Read};
//!
//! const MAX_LINE: u64 = 1024;
//!
//! /// The next line without its newline, `None` at the end, an error past `MAX_LINE` bytes.
//! fn next_line(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
//!     let mut line = Vec::new();
//!     input.take(MAX_LINE + 1).read_until(b'\n', &mut line)?;
//!     match line.last() {
//!         None => Ok(None),
//!         Some(b'\n') => {
//!             line.pop();
//!             Ok(Some(line))
//!         }
//!         Some(_) if line.len() as u64 > MAX_LINE => {
//!             Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
//!         }
//!         Some(_) => Ok(Some(line)), // the last line, without a newline
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! let mut input = BufReader::new(&b"one\ntwo\n"[..]);
//! assert_eq!(next_line(&mut input)?, Some(b"one".to_vec()));
//! assert_eq!(next_line(&mut input)?, Some(b"two".to_vec()));
//! assert_eq!(next_line(&mut input)?, None);
//!
//! let endless = io::repeat(b'x'); // a client that never sends a newline
//! assert!(next_line(&mut BufReader::new(endless)).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # The example
//!
//! `examples/guide/framing.rs` (`guide-framing`) serves length-prefixed messages: each
//! message is 4 bytes of length (big-endian) and that many bytes of UTF-8 text, answered with
//! the text upper-cased in the same framing. Messages over the size limit or that are not
//! UTF-8 get an error message and the connection closes. The server around it is chapter 3's
//! subject; here, read its `handle`.
//!
//! ```text
//! cargo run --example guide-framing -- 127.0.0.1:9001
//! python3 -c "
//! import socket, struct
//! s = socket.create_connection(('127.0.0.1', 9001))
//! msg = 'héllo'.encode()
//! s.sendall(struct.pack('!I', len(msg)) + msg)
//! f = s.makefile('rb')                  # read(n) waits for n bytes; recv(n) may return fewer
//! n, = struct.unpack('!I', f.read(4))
//! print(f.read(n).decode())"
//! ```
