//! Ready-made servers: each transport with each strategy (documented on `Server`).

use crate::server::Server;
use crate::strategy::{Forking, Pool, Threading};
use crate::transport::{Tcp, Udp, UnixDatagram, UnixStream};

/// A TCP server running a thread per connection (Python: `ThreadingTCPServer`).
#[doc(alias = "ThreadingTCPServer")]
pub type ThreadingTcpServer<H> = Server<Tcp, H, Threading>;
/// A UDP server running a thread per datagram (Python: `ThreadingUDPServer`).
#[doc(alias = "ThreadingUDPServer")]
pub type ThreadingUdpServer<H> = Server<Udp, H, Threading>;
/// A Unix stream server running a thread per connection (Python: `ThreadingUnixStreamServer`).
pub type ThreadingUnixStreamServer<H> = Server<UnixStream, H, Threading>;
/// A Unix datagram server running a thread per datagram (Python:
/// `ThreadingUnixDatagramServer`).
pub type ThreadingUnixDatagramServer<H> = Server<UnixDatagram, H, Threading>;

/// A TCP server running a child process per connection (Python: `ForkingTCPServer`).
#[doc(alias = "ForkingTCPServer")]
pub type ForkingTcpServer<H> = Server<Tcp, H, Forking>;
/// A UDP server running a child process per datagram (Python: `ForkingUDPServer`).
#[doc(alias = "ForkingUDPServer")]
pub type ForkingUdpServer<H> = Server<Udp, H, Forking>;
/// A Unix stream server running a child process per connection (Python:
/// `ForkingUnixStreamServer`, 3.12+).
pub type ForkingUnixStreamServer<H> = Server<UnixStream, H, Forking>;
/// A Unix datagram server running a child process per datagram (Python:
/// `ForkingUnixDatagramServer`, 3.12+).
pub type ForkingUnixDatagramServer<H> = Server<UnixDatagram, H, Forking>;

/// A TCP server serving connections on a pool of worker threads (no Python equivalent).
#[doc(alias = "ThreadPoolTCPServer")]
pub type PoolTcpServer<H> = Server<Tcp, H, Pool>;
/// A UDP server serving datagrams on a pool of worker threads (no Python equivalent).
#[doc(alias = "ThreadPoolUDPServer")]
pub type PoolUdpServer<H> = Server<Udp, H, Pool>;
/// A Unix stream server serving connections on a pool of worker threads (no Python
/// equivalent).
pub type PoolUnixStreamServer<H> = Server<UnixStream, H, Pool>;
/// A Unix datagram server serving datagrams on a pool of worker threads (no Python
/// equivalent).
pub type PoolUnixDatagramServer<H> = Server<UnixDatagram, H, Pool>;
