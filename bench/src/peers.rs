//! The peer servers: what socketserver is measured against. Each prints `serving on ADDRESS`
//! first and runs until killed.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::thread;

use clap::{Args, ValueEnum};

use crate::BoxError;

/// Which peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Hand-written `std::net`: a thread per connection (streams), or one recv_from/send_to loop
    /// (datagrams). No framework.
    Std,
    /// tokio: a task per connection (streams), or one recv_from/send_to task (datagrams).
    Tokio,
}

/// The transport a peer serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Tcp,
    Udp,
    Unix,
    UnixDatagram,
}

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The server.
    #[arg(value_enum)]
    pub peer: Peer,
    /// The transport.
    #[arg(value_enum)]
    pub transport: Transport,
    /// HOST:PORT or a socket path.
    pub address: String,
}

fn announce(address: impl std::fmt::Display) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving on {address}")?;
    out.flush()?;
    Ok(())
}

pub fn serve(args: &ServeArgs) -> Result<(), BoxError> {
    match args.peer {
        Peer::Std => serve_std(args.transport, &args.address),
        Peer::Tokio => serve_tokio(args.transport, &args.address),
    }
}

/// The std peer's echo loop: read, write it all back, until end-of-file or an error.
pub(crate) fn echo<S: Read + Write>(mut conn: S) {
    let mut buf = [0u8; 8192];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The listen backlog of every peer, as the library's default (`listen` again on a listening
/// socket changes it).
const BACKLOG: i32 = 1024;

fn serve_std(transport: Transport, address: &str) -> Result<(), BoxError> {
    match transport {
        Transport::Tcp => {
            let listener = TcpListener::bind(address)?;
            // std (and tokio) listen with a backlog of 128; ours and the Python peers use 1024.
            // With 1000 clients connecting at once a short queue drops handshakes, and their
            // retries land in the measured window: the comparison would measure the backlog.
            socket2::SockRef::from(&listener).listen(BACKLOG)?;
            announce(listener.local_addr()?)?;
            for conn in listener.incoming() {
                let conn = conn?;
                conn.set_nodelay(true)?;
                thread::spawn(move || echo(conn));
            }
        }
        Transport::Unix => {
            let _ = std::fs::remove_file(address);
            let listener = UnixListener::bind(address)?;
            socket2::SockRef::from(&listener).listen(BACKLOG)?;
            announce(address)?;
            for conn in listener.incoming() {
                let conn = conn?;
                thread::spawn(move || echo(conn));
            }
        }
        Transport::Udp => {
            let socket = UdpSocket::bind(address)?;
            announce(socket.local_addr()?)?;
            let mut buf = vec![0; 65536];
            loop {
                let (n, from) = socket.recv_from(&mut buf)?;
                socket.send_to(&buf[..n], from)?;
            }
        }
        Transport::UnixDatagram => {
            let _ = std::fs::remove_file(address);
            let socket = UnixDatagram::bind(address)?;
            announce(address)?;
            let mut buf = vec![0; 65536];
            loop {
                let (n, from) = socket.recv_from(&mut buf)?;
                if let Some(path) = from.as_pathname() {
                    socket.send_to(&buf[..n], path)?;
                }
            }
        }
    }
    Ok(())
}

fn serve_tokio(transport: Transport, address: &str) -> Result<(), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        macro_rules! echo_task {
            ($conn:expr) => {{
                let mut conn = $conn;
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    loop {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }};
        }
        match transport {
            Transport::Tcp => {
                let listener = tokio::net::TcpListener::bind(address).await?;
                socket2::SockRef::from(&listener).listen(BACKLOG)?;
                announce(listener.local_addr()?)?;
                loop {
                    let (conn, _) = listener.accept().await?;
                    conn.set_nodelay(true)?;
                    echo_task!(conn);
                }
            }
            Transport::Unix => {
                let _ = std::fs::remove_file(address);
                let listener = tokio::net::UnixListener::bind(address)?;
                socket2::SockRef::from(&listener).listen(BACKLOG)?;
                announce(address)?;
                loop {
                    let (conn, _) = listener.accept().await?;
                    echo_task!(conn);
                }
            }
            Transport::Udp => {
                let socket = tokio::net::UdpSocket::bind(address).await?;
                announce(socket.local_addr()?)?;
                let mut buf = vec![0; 65536];
                loop {
                    let (n, from) = socket.recv_from(&mut buf).await?;
                    socket.send_to(&buf[..n], from).await?;
                }
            }
            Transport::UnixDatagram => {
                let _ = std::fs::remove_file(address);
                let socket = tokio::net::UnixDatagram::bind(address)?;
                announce(address)?;
                let mut buf = vec![0; 65536];
                loop {
                    let (n, from) = socket.recv_from(&mut buf).await?;
                    if let Some(path) = from.as_pathname() {
                        socket.send_to(&buf[..n], path).await?;
                    }
                }
            }
        }
    })
}
