//! The header itself, apart from any socket: where it ends ([`frame`]) and what it says
//! ([`parse`], through the `ppp` crate).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;

use ppp::{v1, v2};

use super::{ProxyError, ProxyInfo, ProxyProtocol, ProxyVersion};
use crate::addr::{Address, UnixAddress};

/// The longest v1 header, `\r\n` included (the specification's 107 bytes).
pub(crate) const V1_MAX: usize = 107;
/// The v1 header's first bytes.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The v2 header's first bytes.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 header's fixed part: the signature, version and command, family and protocol, and
/// the length of the rest.
const V2_FIXED: usize = 16;
/// The longest header of either version: a v2 header whose length field is at its largest.
pub(crate) const MAX_HEADER: usize = V2_FIXED + u16::MAX as usize;

/// Where a header ends, as far as the bytes received so far tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The header is the first `len` bytes.
    Complete { version: ProxyVersion, len: usize },
    /// More bytes are needed to tell (and all of these belong to the header).
    Incomplete,
}

/// Finds the end of the header at the start of `bytes` (only a version `accepted` allows):
/// `Incomplete` means every byte of `bytes` belongs to the header and more are needed.
///
/// # Errors
///
/// The bytes cannot start such a header: [`ProxyError::NotAHeader`], [`ProxyError::TooLong`],
/// or [`ProxyError::Malformed`] for a v1 `\r` not followed by `\n`.
pub(crate) fn frame(bytes: &[u8], accepted: ProxyProtocol) -> Result<Frame, ProxyError> {
    let Some(&first) = bytes.first() else {
        return Ok(Frame::Incomplete);
    };
    let starts = |prefix: &[u8]| {
        let n = bytes.len().min(prefix.len());
        bytes[..n] == prefix[..n]
    };
    if first == b'P' && accepted.accepts(ProxyVersion::V1) && starts(V1_PREFIX) {
        let window = &bytes[..bytes.len().min(V1_MAX)];
        return match window.iter().position(|&b| b == b'\r') {
            Some(cr) => match window.get(cr + 1) {
                Some(b'\n') => Ok(Frame::Complete {
                    version: ProxyVersion::V1,
                    len: cr + 2,
                }),
                Some(_) => Err(ProxyError::Malformed {
                    version: ProxyVersion::V1,
                    reason: "'\\r' not followed by '\\n'".into(),
                }),
                None if bytes.len() >= V1_MAX => Err(ProxyError::TooLong),
                None => Ok(Frame::Incomplete),
            },
            None if bytes.len() >= V1_MAX => Err(ProxyError::TooLong),
            None => Ok(Frame::Incomplete),
        };
    }
    if first == b'\r' && accepted.accepts(ProxyVersion::V2) && starts(V2_SIGNATURE) {
        let Some(length) = bytes.get(V2_FIXED - 2..V2_FIXED) else {
            return Ok(Frame::Incomplete);
        };
        let len = V2_FIXED + usize::from(u16::from_be_bytes([length[0], length[1]]));
        return Ok(if bytes.len() >= len {
            Frame::Complete {
                version: ProxyVersion::V2,
                len,
            }
        } else {
            Frame::Incomplete
        });
    }
    Err(ProxyError::NotAHeader {
        expected: accepted,
        got: bytes[..bytes.len().min(16)].escape_ascii().to_string(),
    })
}

/// Parses a whole header of `version` (exactly the bytes [`frame`] found), received from `peer`.
///
/// # Errors
///
/// [`ProxyError::Malformed`], with the parser's reason.
pub(crate) fn parse(
    header: &[u8],
    version: ProxyVersion,
    peer: &Address,
) -> Result<ProxyInfo, ProxyError> {
    let malformed = |reason: String| ProxyError::Malformed { version, reason };
    let mut info = ProxyInfo {
        peer: peer.clone(),
        version,
        local: false,
        source: None,
        destination: None,
        tlvs: Vec::new(),
    };
    match version {
        ProxyVersion::V1 => {
            let text = std::str::from_utf8(header).map_err(|e| malformed(e.to_string()))?;
            let parsed = v1::Header::try_from(text).map_err(|e| malformed(e.to_string()))?;
            if let Some((source, destination)) = v1_addresses(&parsed.addresses) {
                info.source = Some(source);
                info.destination = Some(destination);
            }
        }
        ProxyVersion::V2 => {
            let parsed = v2::Header::try_from(header).map_err(|e| malformed(e.to_string()))?;
            if parsed.len() != header.len() {
                return Err(malformed(format!(
                    "{} bytes framed, {} parsed",
                    header.len(),
                    parsed.len()
                )));
            }
            info.local = parsed.command == v2::Command::Local;
            let addresses = v2_addresses(&parsed.addresses);
            // LOCAL: "the receiver must use the real connection endpoints and discard the
            // protocol block including the family"; an unspecified family is ignored the same
            // way. Their TLVs are kept as far as they parse.
            let lenient = info.local || addresses.is_none();
            if !info.local {
                if let Some((source, destination)) = addresses {
                    info.source = Some(source);
                    info.destination = Some(destination);
                }
            }
            for tlv in parsed.tlvs() {
                match tlv {
                    Ok(tlv) => info.tlvs.push((tlv.kind, tlv.value.into_owned())),
                    Err(_) if lenient => break,
                    Err(e) => return Err(malformed(e.to_string())),
                }
            }
        }
    }
    Ok(info)
}

fn v1_addresses(addresses: &v1::Addresses) -> Option<(Address, Address)> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some((
            Address::Inet(SocketAddrV4::new(a.source_address, a.source_port).into()),
            Address::Inet(SocketAddrV4::new(a.destination_address, a.destination_port).into()),
        )),
        v1::Addresses::Tcp6(a) => Some((
            Address::Inet(SocketAddr::V6(SocketAddrV6::new(
                a.source_address,
                a.source_port,
                0,
                0,
            ))),
            Address::Inet(SocketAddr::V6(SocketAddrV6::new(
                a.destination_address,
                a.destination_port,
                0,
                0,
            ))),
        )),
        v1::Addresses::Unknown => None,
    }
}

fn v2_addresses(addresses: &v2::Addresses) -> Option<(Address, Address)> {
    match addresses {
        v2::Addresses::IPv4(a) => Some((
            Address::Inet(SocketAddrV4::new(a.source_address, a.source_port).into()),
            Address::Inet(SocketAddrV4::new(a.destination_address, a.destination_port).into()),
        )),
        v2::Addresses::IPv6(a) => Some((
            Address::Inet(SocketAddr::V6(SocketAddrV6::new(
                a.source_address,
                a.source_port,
                0,
                0,
            ))),
            Address::Inet(SocketAddr::V6(SocketAddrV6::new(
                a.destination_address,
                a.destination_port,
                0,
                0,
            ))),
        )),
        v2::Addresses::Unix(a) => Some((unix_address(&a.source), unix_address(&a.destination))),
        v2::Addresses::Unspecified => None,
    }
}

/// A `sun_path` as the header carries it (108 bytes, NUL-padded): a path, an abstract name
/// (a leading NUL), or nothing.
fn unix_address(raw: &[u8; 108]) -> Address {
    let trimmed = |bytes: &[u8]| {
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes[..end].to_vec()
    };
    Address::Unix(match raw.split_first() {
        Some((0, name)) if name.iter().any(|&b| b != 0) => UnixAddress::Abstract(trimmed(name)),
        _ => {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            if end == 0 {
                UnixAddress::Unnamed
            } else {
                use std::os::unix::ffi::OsStrExt;
                UnixAddress::Path(PathBuf::from(std::ffi::OsStr::from_bytes(&raw[..end])))
            }
        }
    })
}
