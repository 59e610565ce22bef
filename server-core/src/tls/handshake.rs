//! The server side of the handshake on a blocking socket, under one total deadline.
//!
//! Reads and writes never block: a read takes what has arrived (`MSG_DONTWAIT`) and a write
//! what fits in the send buffer (the server's flight, its certificate chain, nearly always
//! does), and only when there is nothing to read or no room does the handshake wait, in
//! `poll(2)`, until the deadline. So no single read or write can outlive the deadline however
//! the client trickles its bytes, and the socket's own timeouts are neither read nor changed
//! (a handshake costs no `getsockopt` or `setsockopt`).

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use rustls::{AlertDescription, ServerConnection};

use super::session::Session;
use super::{Reason, TlsConfig, TlsInfo};
use crate::request::Connection;
use crate::sys;

/// The first byte of a TLS record carrying a handshake message: a ClientHello starts with it.
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a handshake failed, for the log and the counters.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: Reason,
    detail: String,
    /// How long it took.
    pub(crate) elapsed: Duration,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake {}", self.reason.describe())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, " after {:.3} s", self.elapsed.as_secs_f64())
    }
}

/// Reads what has arrived, without blocking (the wait is `poll`'s), and remembers the first
/// byte the client sent.
struct Arrived<'a> {
    connection: &'a Connection,
    first: Option<u8>,
}

impl Read for Arrived<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = sys::socket::recv_now(self.connection.as_fd(), buf, false)?;
        if self.first.is_none() && n > 0 {
            self.first = buf.first().copied();
        }
        Ok(n)
    }
}

/// Sends what fits in the socket's send buffer now, without waiting.
struct Room<'a>(&'a Connection);

impl Write for Room<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::socket::send_now(self.0.as_fd(), buf)
    }

    /// rustls writes its records as several buffers: one `sendmsg` for all of them.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::socket::send_vectored_now(self.0.as_fd(), bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends everything rustls has for the client, waiting for room until `deadline`.
fn send_all(
    tls: &mut ServerConnection,
    connection: &Connection,
    deadline: Instant,
) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut Room(connection)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(connection.as_fd(), PollFlags::POLLOUT)];
                if sys::sleep_until(&mut fds, Some(deadline))? == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A server-side handshake in progress: it runs on whichever worker has the connection, and
/// where the server parks connections it waits for the client's next flight parked, not in a
/// worker ([`Step::Waiting`]).
pub(crate) struct Handshake {
    tls: ServerConnection,
    /// The first byte the client sent, to tell a plaintext client (`NotTls`).
    first: Option<u8>,
    start: Instant,
    deadline: Instant,
    config: TlsConfig,
}

/// Where [`Handshake::advance`] left the handshake.
pub(crate) enum Step {
    /// Done, counted as a success: [`Handshake::into_session`] is the session.
    Done,
    /// Waiting for the client's next bytes (only when asked not to wait in `poll`).
    Waiting,
    /// Failed, counted by reason; the alert rustls had for the client (if any) was sent.
    Failed(Failure),
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake with the configuration's current certificate, to end within
    /// `timeout` in all.
    pub(crate) fn start(config: &TlsConfig, timeout: Duration) -> Result<Handshake, Failure> {
        let start = Instant::now();
        match ServerConnection::new(config.current()) {
            Ok(tls) => Ok(Handshake {
                tls,
                first: None,
                start,
                deadline: sys::deadline_in(timeout),
                config: config.clone(),
            }),
            Err(e) => {
                config.counters().failed(Reason::Other);
                Err(Failure {
                    reason: Reason::Other,
                    detail: e.to_string(),
                    elapsed: start.elapsed(),
                })
            }
        }
    }

    /// When the handshake must be done.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the handshake on with what the client has sent: until it is done or fails, or,
    /// unless `wait`, until nothing more has arrived. With `wait`, it sleeps in `poll` for the
    /// client's bytes, until the deadline.
    pub(crate) fn advance(&mut self, connection: &Connection, wait: bool) -> Step {
        let mut arrived = Arrived {
            connection,
            first: self.first,
        };
        let result = handshake(&mut self.tls, &mut arrived, self.deadline, wait);
        self.first = arrived.first;
        match result {
            Ok(true) => {
                self.config.counters().succeeded();
                Step::Done
            }
            Ok(false) => Step::Waiting,
            Err((reason, detail)) => Step::Failed(self.fail(reason, detail)),
        }
    }

    /// The session of a handshake that is [`Step::Done`].
    pub(crate) fn into_session(self) -> Session {
        let info = info(&self.tls);
        Session::new(self.tls, info)
    }

    /// The deadline passed while the handshake waited parked: counted as timed out.
    pub(crate) fn timed_out(&self) -> Failure {
        self.fail(Reason::TimedOut, String::new())
    }

    /// Counts a failure (a non-handshake first byte makes it `NotTls`).
    fn fail(&self, mut reason: Reason, detail: String) -> Failure {
        if reason != Reason::TimedOut && self.first.is_some_and(|byte| byte != HANDSHAKE_RECORD) {
            reason = Reason::NotTls;
        }
        self.config.counters().failed(reason);
        Failure {
            reason,
            detail,
            elapsed: self.start.elapsed(),
        }
    }
}

/// Runs the server side of the handshake on `connection` with the configuration's current
/// certificate, within `timeout` in all, waiting in `poll` for the client. Counts the outcome
/// in the configuration's stats.
///
/// # Errors
///
/// A [`Failure`] with its reason; the alert rustls had for the client (if any) was sent.
#[cfg(test)]
pub(crate) fn accept(
    connection: &Connection,
    config: &TlsConfig,
    timeout: Duration,
) -> Result<Session, Failure> {
    let mut handshake = Handshake::start(config, timeout)?;
    match handshake.advance(connection, true) {
        Step::Done => Ok(handshake.into_session()),
        Step::Failed(failure) => Err(failure),
        Step::Waiting => unreachable!("a waiting handshake ends done or failed"),
    }
}

/// The handshake's loop: send what is due, wait for the client's next bytes (in `poll` if
/// `wait`), feed them to rustls; until the handshake is done and its last flight is sent
/// (`true`), or, unless `wait`, nothing more has arrived (`false`).
fn handshake(
    tls: &mut ServerConnection,
    arrived: &mut Arrived<'_>,
    deadline: Instant,
    wait: bool,
) -> Result<bool, (Reason, String)> {
    let connection = arrived.connection;
    let timed_out = || (Reason::TimedOut, String::new());
    loop {
        // Checked on every pass, not only before a wait: a client that keeps bytes coming
        // must not keep the handshake past its deadline either.
        if Instant::now() >= deadline {
            return Err(timed_out());
        }
        if tls.wants_write() {
            send_all(tls, connection, deadline).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
                _ => (Reason::Other, e.to_string()),
            })?;
        }
        if !tls.is_handshaking() {
            return Ok(true);
        }
        // What has arrived first (the ClientHello usually has by the time a worker runs
        // this); wait only when nothing has.
        match tls.read_tls(arrived) {
            Ok(0) => return Err((Reason::Closed, String::new())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !wait => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(connection.as_fd(), PollFlags::POLLIN)];
                match sys::sleep_until(&mut fds, Some(deadline)) {
                    Ok(0) => return Err(timed_out()),
                    Ok(_) => continue,
                    Err(e) => return Err((Reason::Other, e.to_string())),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err((Reason::Closed, e.to_string()))
            }
            Err(e) => return Err((Reason::Other, e.to_string())),
        }
        if let Err(error) = tls.process_new_packets() {
            // The alert rustls queued for the client, within the deadline; best effort.
            let _ = send_all(tls, connection, deadline);
            return Err((classify(&error), error.to_string()));
        }
    }
}

/// The reason a rustls error counts under.
fn classify(error: &rustls::Error) -> Reason {
    use rustls::Error as E;
    match error {
        E::PeerIncompatible(_) | E::NoApplicationProtocol => Reason::NoShared,
        E::InvalidCertificate(_) | E::NoCertificatesPresented => Reason::BadCertificate,
        E::AlertReceived(alert) => match alert {
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired => Reason::BadCertificate,
            AlertDescription::HandshakeFailure
            | AlertDescription::ProtocolVersion
            | AlertDescription::InsufficientSecurity
            | AlertDescription::NoApplicationProtocol => Reason::NoShared,
            AlertDescription::CloseNotify | AlertDescription::UserCanceled => Reason::Closed,
            _ => Reason::Other,
        },
        _ => Reason::Other,
    }
}

/// What the handler sees of a finished handshake.
fn info(tls: &ServerConnection) -> TlsInfo {
    TlsInfo {
        server_name: tls.server_name().map(str::to_owned),
        alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
        peer_certificates: tls
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
        version: match tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        },
        cipher_suite: tls
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .unwrap_or("unknown")
            .to_owned(),
    }
}
