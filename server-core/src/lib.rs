//! The library behind the [`socketserver`](../socketserver/index.html) crate.
//!
//! **Start there**: the `socketserver` crate re-exports everything here and holds the
//! tutorial, the guide (`socketserver::guide`, from raw sockets to socketserver, Python beside
//! Rust) and the examples. Depend on `socketserver`, not on this crate. From a checkout,
//! `cargo doc --open` opens it.

// Library code never unwraps: every failure a user or the network can cause is an error value.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "socketserver supports Linux only: it is built on Linux's system calls (SO_PEERCRED, \
     MSG_NOSIGNAL, abstract Unix sockets, PR_SET_PDEATHSIG, systemd's socket activation)"
);

// The modules are private and every item has one path, at the root: `socketserver::Threading`,
// as Python's `socketserver.ThreadingTCPServer`. Only modules whose items are not re-exported
// here are public: `http`, `metrics`, `prefork`, `proxy`, `systemd`, `tls`, `transport`.
mod addr;
mod aliases;
mod error;
mod handler;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub mod metrics;
pub mod prefork;
pub mod proxy;
mod report;
mod request;
mod server;
mod shutdown;
mod signals;
mod stats;
mod strategy;
mod sys;
pub mod systemd;
#[cfg(feature = "tls")]
pub mod tls;
pub mod transport;

pub use addr::{Address, UnixAddress};
pub use aliases::{
    ForkingTcpServer, ForkingUdpServer, ForkingUnixDatagramServer, ForkingUnixStreamServer,
    PoolTcpServer, PoolUdpServer, PoolUnixDatagramServer, PoolUnixStreamServer, ThreadingTcpServer,
    ThreadingUdpServer, ThreadingUnixDatagramServer, ThreadingUnixStreamServer,
};
pub use error::{BoxError, Error, RequestError, Result, Stage};
pub use handler::{
    default_handle_error, DatagramRequestHandler, HandleResult, Handler, StreamRequestHandler,
};
pub use request::{
    Connection, DatagramRequest, DatagramSocket, PeerCredentials, Rfile, Stream, StreamRequest,
    Wfile,
};
pub use server::{
    Overload, ParkedConnections, Server, ServerBuilder, ServerContext, TcpServer, UdpServer,
    UnixDatagramServer, UnixStreamServer, Waited, Wakeup, DEFAULT_BACKLOG, DEFAULT_GRACE_PERIOD,
    DEFAULT_MAX_PACKET_SIZE,
};
pub use shutdown::ShutdownHandle;
pub use stats::{Durations, Stats, DURATION_BUCKETS};
pub use strategy::{
    Activity, DrainReport, Forking, Job, Pool, Readiness, Serial, Strategy, Threading,
};
