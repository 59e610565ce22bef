//! Whom a header is accepted from, and the per-server settings the edge step reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::{ProxyProtocol, DEFAULT_PROXY_HEADER_TIMEOUT};
use crate::addr::Address;

/// A server's PROXY protocol settings (part of its `RequestOptions`).
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    pub(crate) protocol: ProxyProtocol,
    pub(crate) trusted: Vec<IpNet>,
    pub(crate) header_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            protocol: ProxyProtocol::Off,
            trusted: loopback(),
            header_timeout: DEFAULT_PROXY_HEADER_TIMEOUT,
        }
    }
}

/// The default trusted proxies: `127.0.0.0/8` and `::1` (checked at compile time).
const LOOPBACK: [IpNet; 2] = [
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
];

fn loopback() -> Vec<IpNet> {
    LOOPBACK.to_vec()
}

impl ProxySettings {
    /// Whether a header is accepted from `peer`: an internet address in a trusted range
    /// (IPv4 clients of a dual-stack `[::]` server, seen as `::ffff:a.b.c.d`, are matched as
    /// IPv4), or any Unix-socket peer (whoever may open the socket file is trusted; its
    /// permissions, `socket_mode`, decide who may).
    pub(crate) fn trusts(&self, peer: &Address) -> bool {
        match peer {
            Address::Inet(addr) => {
                let ip = addr.ip().to_canonical();
                self.trusted.iter().any(|net| net.contains(&ip))
            }
            Address::Unix(_) => true,
        }
    }
}
