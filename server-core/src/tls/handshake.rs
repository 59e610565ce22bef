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

/// Runs the server side of the handshake on `connection` with the configuration's current
/// certificate, within `timeout` in all. Counts the outcome in the configuration's stats.
///
/// # Errors
///
/// A [`Failure`] with its reason; the alert rustls had for the client (if any) was sent.
pub(crate) fn accept(
    connection: &Connection,
    config: &TlsConfig,
    timeout: Duration,
) -> Result<Session, Failure> {
    let start = Instant::now();
    let deadline = sys::deadline_in(timeout);
    let mut arrived = Arrived {
        connection,
        first: None,
    };
    let result = ServerConnection::new(config.current())
        .map_err(|e| (Reason::Other, e.to_string()))
        .and_then(|mut tls| {
            handshake(&mut tls, &mut arrived, deadline)?;
            Ok(tls)
        });
    let counters = config.counters();
    match result {
        Ok(tls) => {
            counters.succeeded();
            let info = info(&tls);
            Ok(Session::new(tls, info))
        }
        Err((mut reason, detail)) => {
            if reason != Reason::TimedOut
                && arrived.first.is_some_and(|byte| byte != HANDSHAKE_RECORD)
            {
                reason = Reason::NotTls;
            }
            counters.failed(reason);
            Err(Failure {
                reason,
                detail,
                elapsed: start.elapsed(),
            })
        }
    }
}

/// The handshake's loop: send what is due, wait for the client's next bytes, feed them to
/// rustls; until the handshake is done and its last flight is sent.
fn handshake(
    tls: &mut ServerConnection,
    arrived: &mut Arrived<'_>,
    deadline: Instant,
) -> Result<(), (Reason, String)> {
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
            return Ok(());
        }
        // What has arrived first (the ClientHello usually has by the time a worker runs
        // this); wait only when nothing has.
        match tls.read_tls(arrived) {
            Ok(0) => return Err((Reason::Closed, String::new())),
            Ok(_) => {}
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
