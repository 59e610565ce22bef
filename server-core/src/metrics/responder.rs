//! A tiny non-blocking HTTP/1.x responder for a single-threaded loop that sleeps in `poll(2)`:
//! the process model's supervisor serves its metrics with it, as it must not start a thread
//! (it forks).
//!
//! It reads one request head per connection (`GET` or `HEAD`, at most [`MAX_HEAD`] bytes),
//! writes one answer with `Connection: close`, and closes. Nothing blocks: the loop polls the
//! descriptors from [`Responder::poll_fds`], then calls [`Responder::work`]. Every byte a
//! scraper can make the loop hold is bounded: [`MAX_SCRAPERS`] connections (more are closed at
//! once), [`MAX_HEAD`] bytes of request, and [`SCRAPE_TIMEOUT`] for the whole exchange.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Instant;

use nix::poll::PollFlags;
use socket2::{Domain, Socket, Type};

use super::{MAX_SCRAPERS, SCRAPE_TIMEOUT};

/// The longest request head read; a longer one is answered `431`.
const MAX_HEAD: usize = 8 * 1024;

/// What to answer: status, content type and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Reply {
    /// A `text/plain` answer.
    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// One scraper's connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    /// The request read so far; once answered, the answer's bytes not yet written.
    buf: Vec<u8>,
    /// How much of `buf` (the answer) is written.
    written: usize,
    answering: bool,
}

/// The listener and its connections.
#[derive(Debug)]
pub(crate) struct Responder {
    /// `None` once [`stop_listening`](Self::stop_listening) closed it.
    listener: Option<TcpListener>,
    /// Whether it takes scrapers from the listener: not yet for a listener handed over by an
    /// upgrade ([`adopt`](Self::adopt)), until [`start_accepting`](Self::start_accepting).
    accepting: bool,
    conns: Vec<Conn>,
}

impl Responder {
    /// Binds `address` (non-blocking), with `SO_REUSEADDR` (a restart binds again at once).
    /// Not `SO_REUSEPORT`: a second program on the same address is an error, not a silent
    /// half of the scrapes; a binary upgrade hands the socket itself over instead.
    pub(crate) fn bind<A: ToSocketAddrs>(address: A) -> io::Result<Responder> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
        for addr in address.to_socket_addrs()? {
            match bind_one(addr) {
                Ok(listener) => {
                    return Ok(Responder {
                        listener: Some(listener),
                        accepting: true,
                        conns: Vec::new(),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Serves `listener`, a listening socket handed over by the old program of an upgrade,
    /// which still answers on it: this one takes scrapers once
    /// [`start_accepting`](Self::start_accepting) says so.
    pub(crate) fn adopt(listener: TcpListener) -> io::Result<Responder> {
        listener.set_nonblocking(true)?;
        Ok(Responder {
            listener: Some(listener),
            accepting: false,
            conns: Vec::new(),
        })
    }

    /// Takes scrapers from now on; whether it did not before.
    pub(crate) fn start_accepting(&mut self) -> bool {
        !std::mem::replace(&mut self.accepting, true) && self.listener.is_some()
    }

    /// The address it listens on.
    pub(crate) fn address(&self) -> io::Result<SocketAddr> {
        match &self.listener {
            Some(listener) => listener.local_addr(),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The listening socket, while it has one.
    pub(crate) fn listener(&self) -> Option<BorrowedFd<'_>> {
        self.listener.as_ref().map(AsFd::as_fd)
    }

    /// Closes the listener, taking no more scrapers: the socket stays open in the new program
    /// of an upgrade, whose supervisor answers the scrapers queued on it. The connections
    /// already taken are still answered.
    pub(crate) fn stop_listening(&mut self) {
        self.listener = None;
    }

    /// Every descriptor it holds, which a forked worker closes.
    pub(crate) fn raw_fds(&self) -> Vec<RawFd> {
        self.listener
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain(self.conns.iter().map(|c| c.stream.as_raw_fd()))
            .collect()
    }

    /// What to poll: the listener (while listening), then each connection (readable while
    /// reading the request, writable while answering).
    pub(crate) fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.polled_listener()
            .into_iter()
            .map(|l| (l.as_fd(), PollFlags::POLLIN))
            .chain(self.conns.iter().map(|c| {
                let flags = if c.answering {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                (c.stream.as_fd(), flags)
            }))
            .collect()
    }

    /// The listener while it is polled.
    fn polled_listener(&self) -> Option<&TcpListener> {
        self.listener.as_ref().filter(|_| self.accepting)
    }

    /// The earliest connection deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|c| c.deadline).min()
    }

    /// Moves every connection on after a poll: `ready[i]` says whether the `i`th descriptor
    /// of [`poll_fds`](Self::poll_fds) had an event. Accepts new scrapers, reads requests,
    /// answers them with `answer(method_is_head, path)`, writes, and closes finished and
    /// late connections.
    pub(crate) fn work(&mut self, ready: &[bool], mut answer: impl FnMut(&str) -> Reply) {
        let now = Instant::now();
        let skip = usize::from(self.polled_listener().is_some());
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if ready.get(i + skip).copied().unwrap_or(false) {
                step(conn, &mut answer);
            }
        }
        self.conns.retain(|c| {
            let done = c.answering && c.written >= c.buf.len();
            if done {
                let _ = c.stream.shutdown(Shutdown::Write);
            } else if now >= c.deadline {
                log::debug!(target: "socketserver::metrics", "a scraper took longer than {SCRAPE_TIMEOUT:?}: closed");
            }
            !done && now < c.deadline
        });
        if skip == 1 && ready.first().copied().unwrap_or(false) {
            self.accept();
        }
    }

    /// Takes the scrapers waiting (a few per call, so a flood cannot keep the loop here);
    /// beyond [`MAX_SCRAPERS`] they are closed at once. Their requests are read on the next
    /// pass (they are usually there already: the next poll returns at once).
    fn accept(&mut self) {
        let Some(listener) = self.listener.as_ref().filter(|_| self.accepting) else {
            return;
        };
        for _ in 0..MAX_SCRAPERS {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!(target: "socketserver::metrics", "accepting a scraper: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_SCRAPERS || stream.set_nonblocking(true).is_err() {
                log::debug!(target: "socketserver::metrics", "{MAX_SCRAPERS} scrapers already: closed");
                continue;
            }
            self.conns.push(Conn {
                stream,
                deadline: Instant::now() + SCRAPE_TIMEOUT,
                buf: Vec::new(),
                written: 0,
                answering: false,
            });
        }
    }
}

/// Binds one address, non-blocking, with `SO_REUSEADDR`.
fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Reads what is there, answers a whole request head, writes what fits.
fn step(conn: &mut Conn, answer: &mut impl FnMut(&str) -> Reply) {
    if !conn.answering {
        let mut chunk = [0u8; 1024];
        loop {
            match conn.stream.read(&mut chunk) {
                // Closed before a whole request: nothing to answer.
                Ok(0) => {
                    conn.deadline = Instant::now();
                    return;
                }
                Ok(n) => {
                    conn.buf
                        .extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if conn.buf.windows(4).any(|w| w == b"\r\n\r\n") || conn.buf.len() > MAX_HEAD {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    conn.deadline = Instant::now();
                    return;
                }
            }
        }
        conn.buf = respond(&conn.buf, answer);
        conn.answering = true;
    }
    while conn.written < conn.buf.len() {
        match conn
            .stream
            .write(conn.buf.get(conn.written..).unwrap_or_default())
        {
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                conn.deadline = Instant::now();
                return;
            }
        }
    }
}

/// The answer's bytes to the request `head`.
fn respond(head: &[u8], answer: &mut impl FnMut(&str) -> Reply) -> Vec<u8> {
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let head_only = method == Some("HEAD");
    let reply = if head.len() > MAX_HEAD {
        Reply::text(431, "request header too large\n")
    } else {
        match (method, target, version) {
            (Some("GET" | "HEAD"), Some(target), Some(v)) if v.starts_with("HTTP/1.") => {
                let path = target.split('?').next().unwrap_or(target);
                answer(path)
            }
            (Some(_), Some(_), Some(v)) if v.starts_with("HTTP/1.") => {
                Reply::text(405, "only GET and HEAD\n")
            }
            _ => Reply::text(400, "bad request\n"),
        }
    };
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len(),
        if reply.status == 405 {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        },
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(head: &str) -> String {
        let bytes = respond(head.as_bytes(), &mut |path| Reply::text(200, path));
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn answers_get_head_and_refuses_the_rest() {
        let get = ask("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("Content-Length: 8\r\nConnection: close\r\n\r\n/metrics"));
        let head = ask("HEAD /readyz HTTP/1.0\r\n\r\n");
        assert!(
            head.ends_with("Content-Length: 7\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        assert!(ask("POST / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(ask("nonsense\r\n\r\n").starts_with("HTTP/1.1 400"));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(ask(&long).starts_with("HTTP/1.1 431"));
    }

    /// Runs `responder` until `client` has its whole answer (at most 5 s); the answer.
    fn exchange(responder: &mut Responder, client: &mut TcpStream, answer: &str) -> String {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let mut reply = Vec::new();
        let mut chunk = [0u8; 256];
        client.set_nonblocking(true).unwrap();
        while Instant::now() < deadline {
            let ready: Vec<bool> = {
                let fds = responder.poll_fds();
                let mut polls: Vec<_> = fds
                    .iter()
                    .map(|(fd, flags)| nix::poll::PollFd::new(*fd, *flags))
                    .collect();
                crate::sys::sleep_until(
                    &mut polls,
                    Some(Instant::now() + std::time::Duration::from_millis(50)),
                )
                .unwrap();
                polls
                    .iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            responder.work(&ready, |_| Reply::text(200, answer));
            match client.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8(reply).unwrap()
    }

    #[test]
    fn serves_scrapers_without_blocking_and_closes_past_the_cap() {
        let mut responder = Responder::bind("127.0.0.1:0").unwrap();
        let address = responder.address().unwrap();
        // A silent scraper holds a slot, not the loop.
        let silent = TcpStream::connect(address).unwrap();
        let mut asking = TcpStream::connect(address).unwrap();
        asking.write_all(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
        let reply = exchange(&mut responder, &mut asking, "/x");
        assert!(reply.ends_with("\r\n\r\n/x"), "{reply}");
        assert_eq!(responder.conns.len(), 1, "the silent one waits");
        drop(silent);
    }

    #[test]
    fn scrapers_queued_while_the_old_program_lets_go_are_answered_by_the_new_one() {
        // The old program's listener, and the new program's copy of it (what an upgrade hands
        // over in METRICS_FD).
        let mut old = Responder::bind("127.0.0.1:0").unwrap();
        let address = old.address().unwrap();
        let copy = old.listener().unwrap().try_clone_to_owned().unwrap();
        let mut new = Responder::adopt(TcpListener::from(copy)).unwrap();
        assert!(new.poll_fds().is_empty(), "not ready: the old one answers");
        let mut before = TcpStream::connect(address).unwrap();
        before.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let reply = exchange(&mut old, &mut before, "old");
        assert!(reply.ends_with("\r\n\r\nold"), "{reply}");
        // Queued, not yet taken, when the old program lets go; and queued after.
        let mut queued = TcpStream::connect(address).unwrap();
        queued.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        old.stop_listening();
        assert!(old.listener().is_none());
        let mut after = TcpStream::connect(address).unwrap();
        after.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        // The socket stays open in the new program, which answers both once ready.
        assert!(new.start_accepting());
        assert!(!new.start_accepting(), "said once");
        for client in [&mut queued, &mut after] {
            let reply = exchange(&mut new, client, "new");
            assert!(reply.ends_with("\r\n\r\nnew"), "{reply}");
        }
    }
}
