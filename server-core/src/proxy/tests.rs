//! The header reader and parser on hand-written headers: every version and family, TLVs, input
//! cut anywhere, malformed input, and exact consumption (over a script and a real socket).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::read::{fuzz_header, read_header, Script};
use super::*;
use crate::addr::UnixAddress;
use crate::request::Connection;

const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn peer() -> Address {
    Address::Inet("127.0.0.1:40000".parse().unwrap())
}

fn inet(s: &str) -> Address {
    Address::Inet(s.parse::<SocketAddr>().unwrap())
}

/// A v2 header: version/command byte, family/protocol byte, address block, TLVs.
fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = addresses.to_vec();
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend((value.len() as u16).to_be_bytes());
        body.extend(*value);
    }
    let mut header = SIGNATURE.to_vec();
    header.extend([command, family]);
    header.extend((body.len() as u16).to_be_bytes());
    header.extend(body);
    header
}

fn v4_block() -> Vec<u8> {
    // 203.0.113.7:51000 -> 192.0.2.1:443
    let mut b = vec![203, 0, 113, 7, 192, 0, 2, 1];
    b.extend(51000u16.to_be_bytes());
    b.extend(443u16.to_be_bytes());
    b
}

/// Reads `input` arriving `piece` bytes at a time; returns the result and the bytes consumed.
fn read_in_pieces(
    input: &[u8],
    accepted: ProxyProtocol,
    piece: usize,
) -> (Result<ProxyInfo, ProxyError>, usize) {
    let mut script = Script {
        bytes: input,
        arrived: piece.min(input.len()),
        consumed: 0,
        piece,
    };
    let result = read_header(&mut script, &peer(), accepted, Duration::from_secs(1));
    (result, script.consumed)
}

/// Reads `header` followed by the payload, split at every size: always the same header, and
/// exactly the header consumed.
fn read_every_way(header: &[u8], accepted: ProxyProtocol) -> ProxyInfo {
    let input = [header, PAYLOAD].concat();
    let mut first = None;
    for piece in 1..=input.len() {
        let (result, consumed) = read_in_pieces(&input, accepted, piece);
        let info = result.unwrap_or_else(|e| panic!("pieces of {piece}: {e}"));
        assert_eq!(consumed, header.len(), "pieces of {piece}: consumed");
        if let Some(first) = &first {
            assert_eq!(&info, first, "pieces of {piece}");
        }
        first = Some(info);
    }
    first.unwrap()
}

#[test]
fn v1_tcp4() {
    let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
    let info = read_every_way(header, ProxyProtocol::V1);
    assert_eq!(info.version(), ProxyVersion::V1);
    assert_eq!(info.source(), Some(&inet("203.0.113.7:51000")));
    assert_eq!(info.destination(), Some(&inet("192.0.2.1:443")));
    assert_eq!(info.client(), &inet("203.0.113.7:51000"));
    assert_eq!(info.peer(), &peer());
    assert!(!info.is_local());
    assert_eq!(info.tlvs().count(), 0);
}

#[test]
fn v1_tcp6() {
    let header = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
    let info = read_every_way(header, ProxyProtocol::Any);
    assert_eq!(info.source(), Some(&inet("[2001:db8::7]:51000")));
    assert_eq!(info.destination(), Some(&inet("[2001:db8::1]:443")));
}

#[test]
fn v1_unknown_keeps_the_peer() {
    for header in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    ] {
        let info = read_every_way(header, ProxyProtocol::V1);
        assert_eq!(info.source(), None);
        assert_eq!(info.client(), &peer());
    }
}

#[test]
fn v1_longest_header_is_accepted() {
    let header = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(header.len(), 104);
    let info = read_every_way(header, ProxyProtocol::V1);
    assert_eq!(
        info.source().and_then(Address::as_inet).map(|a| a.port()),
        Some(65535)
    );
}

#[test]
fn v2_tcp4_with_tlvs() {
    let header = v2(
        0x21,
        0x11,
        &v4_block(),
        &[
            (TLV_ALPN, b"h2"),
            (TLV_AUTHORITY, b"example.com"),
            (TLV_UNIQUE_ID, b"id-42"),
            (0xE0, b"custom"),
        ],
    );
    let info = read_every_way(&header, ProxyProtocol::V2);
    assert_eq!(info.version(), ProxyVersion::V2);
    assert_eq!(info.source(), Some(&inet("203.0.113.7:51000")));
    assert_eq!(info.destination(), Some(&inet("192.0.2.1:443")));
    assert_eq!(info.alpn(), Some(&b"h2"[..]));
    assert_eq!(info.authority(), Some("example.com"));
    assert_eq!(info.unique_id(), Some(&b"id-42"[..]));
    assert_eq!(info.tlv(0xE0), Some(&b"custom"[..]));
    assert_eq!(info.tlvs().count(), 4);
}

#[test]
fn v2_tcp6() {
    let mut block = Vec::new();
    block.extend(
        "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend(
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend(51000u16.to_be_bytes());
    block.extend(443u16.to_be_bytes());
    let info = read_every_way(&v2(0x21, 0x21, &block, &[]), ProxyProtocol::Any);
    assert_eq!(info.source(), Some(&inet("[2001:db8::7]:51000")));
}

#[test]
fn v2_unix_paths_and_abstract_names() {
    let mut block = vec![0u8; 216];
    block[..9].copy_from_slice(b"/run/a.sk");
    block[109..113].copy_from_slice(b"name");
    let info = read_every_way(&v2(0x21, 0x31, &block, &[]), ProxyProtocol::V2);
    assert_eq!(
        info.source(),
        Some(&Address::Unix(UnixAddress::Path("/run/a.sk".into())))
    );
    assert_eq!(
        info.destination(),
        Some(&Address::Unix(UnixAddress::Abstract(b"name".to_vec())))
    );
}

#[test]
fn v2_local_and_unspecified_keep_the_peer() {
    // LOCAL with addresses (they are to be ignored), LOCAL without, PROXY with UNSPEC.
    for header in [
        v2(0x20, 0x11, &v4_block(), &[]),
        v2(0x20, 0x00, &[], &[]),
        v2(0x21, 0x00, &[], &[(TLV_UNIQUE_ID, b"x")]),
    ] {
        let info = read_every_way(&header, ProxyProtocol::V2);
        assert_eq!(info.source(), None);
        assert_eq!(info.client(), &peer());
    }
    assert!(read_every_way(&v2(0x20, 0x00, &[], &[]), ProxyProtocol::Any).is_local());
}

#[test]
fn a_large_v2_header_is_read_in_rounds() {
    let big = vec![b'x'; 3000];
    let header = v2(0x21, 0x11, &v4_block(), &[(0xE1, &big)]);
    let input = [&header[..], PAYLOAD].concat();
    let (info, consumed) = read_in_pieces(&input, ProxyProtocol::V2, 4096);
    assert_eq!(info.unwrap().tlv(0xE1).map(<[u8]>::len), Some(3000));
    assert_eq!(consumed, header.len());
}

fn refused(input: &[u8], accepted: ProxyProtocol) -> (ProxyError, usize) {
    let (result, consumed) = read_in_pieces(input, accepted, 7);
    (result.expect_err("must be refused"), consumed)
}

#[test]
fn the_wrong_version_or_no_header_is_refused() {
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
    let v2 = v2(0x21, 0x11, &v4_block(), &[]);
    for (input, accepted) in [
        (&v1[..], ProxyProtocol::V2),
        (&v2[..], ProxyProtocol::V1),
        (PAYLOAD, ProxyProtocol::Any),
        (b"PROXY", ProxyProtocol::V2),
        (b"\r\n\r\n\0\r\nQUIX\n", ProxyProtocol::Any),
        (b"PROXI TCP4", ProxyProtocol::Any),
    ] {
        let (error, _) = refused(input, accepted);
        assert!(
            matches!(error, ProxyError::NotAHeader { .. }),
            "{input:?}: {error}"
        );
    }
}

#[test]
fn malformed_headers_are_refused_without_reading_past_them() {
    let cases: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.700 192.0.2.1 51000 443\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\rX".to_vec(),
        b"PROXY TCP5 203.0.113.7 192.0.2.1 51000 443\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 051000 443\r\n".to_vec(),
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n".to_vec(),
        // Version 3; command 2; family 4; protocol 3.
        v2(0x31, 0x11, &v4_block(), &[]),
        v2(0x22, 0x11, &v4_block(), &[]),
        v2(0x21, 0x41, &v4_block(), &[]),
        v2(0x21, 0x13, &v4_block(), &[]),
        // An address block too short for its family; a TLV longer than the header.
        v2(0x21, 0x21, &v4_block(), &[]),
        {
            let mut h = v2(0x21, 0x11, &v4_block(), &[(TLV_ALPN, b"h2")]);
            let last = h.len() - 3;
            h[last] = 9;
            h
        },
    ];
    for header in cases {
        let input = [&header[..], PAYLOAD].concat();
        let (error, consumed) = refused(&input, ProxyProtocol::Any);
        assert!(
            matches!(
                error,
                ProxyError::Malformed { .. } | ProxyError::NotAHeader { .. }
            ),
            "{}: {error}",
            header.escape_ascii()
        );
        assert!(consumed <= header.len(), "{}", header.escape_ascii());
    }
}

#[test]
fn a_v1_line_without_its_end_is_too_long() {
    let mut input = b"PROXY TCP4 ".to_vec();
    input.resize(300, b'1');
    let (error, consumed) = refused(&input, ProxyProtocol::V1);
    assert!(matches!(error, ProxyError::TooLong), "{error}");
    assert!(consumed <= 107, "consumed {consumed}");
}

#[test]
fn a_header_cut_short_is_closed() {
    let header = v2(0x21, 0x11, &v4_block(), &[]);
    for cut in 0..header.len() {
        let (error, consumed) = refused(&header[..cut], ProxyProtocol::V2);
        assert!(
            matches!(error, ProxyError::Closed { received } if received == cut),
            "cut at {cut}: {error}"
        );
        assert_eq!(consumed, cut);
    }
}

#[test]
fn over_a_socket_the_bytes_after_the_header_stay_unread() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let connection = Connection::Unix(ours);
    let header = v2(0x21, 0x11, &v4_block(), &[(TLV_AUTHORITY, b"a.example")]);
    // Header and payload in one write: one segment, as proxies often send them.
    theirs.write_all(&[&header[..], PAYLOAD].concat()).unwrap();
    let info = read_header(
        &connection,
        &peer(),
        ProxyProtocol::Any,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(info.authority(), Some("a.example"));
    drop(theirs);
    let mut rest = Vec::new();
    (&connection).read_to_end(&mut rest).unwrap();
    assert_eq!(rest, PAYLOAD);
}

#[test]
fn over_a_socket_a_trickled_header_is_read_and_a_silent_one_times_out() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let connection = Connection::Unix(ours);
    let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
    let writer = std::thread::spawn(move || {
        for byte in header.iter().chain(PAYLOAD) {
            theirs.write_all(&[*byte]).unwrap();
        }
        theirs
    });
    let info = read_header(
        &connection,
        &peer(),
        ProxyProtocol::V1,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(info.client(), &inet("203.0.113.7:51000"));
    let theirs = writer.join().unwrap();
    drop(theirs);
    let mut rest = Vec::new();
    (&connection).read_to_end(&mut rest).unwrap();
    assert_eq!(rest, PAYLOAD);

    // Half a header, then silence: released at the deadline, not before.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    theirs.write_all(&header[..10]).unwrap();
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    let error = read_header(&Connection::Unix(ours), &peer(), ProxyProtocol::V1, timeout)
        .expect_err("no complete header");
    let waited = started.elapsed();
    assert!(
        matches!(error, ProxyError::Timeout { received: 10, .. }),
        "{error}"
    );
    assert!(waited >= timeout && waited < timeout * 20, "{waited:?}");
}

#[test]
fn the_fuzz_entry_point_runs_on_samples() {
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nrest".to_vec();
    let v2 = [
        &v2(0x21, 0x11, &v4_block(), &[(TLV_ALPN, b"h2")])[..],
        b"rest",
    ]
    .concat();
    for config in 0..=255u8 {
        for sample in [&v1, &v2] {
            fuzz_header(&[&[config][..], sample].concat());
        }
    }
    fuzz_header(&[]);
    fuzz_header(&[2, b'\r']);
}

#[test]
fn trusted_proxies_match_ranges_mapped_addresses_and_unix_peers() {
    let settings = ProxySettings::default();
    assert!(settings.trusts(&inet("127.0.0.1:1")));
    assert!(settings.trusts(&inet("127.9.9.9:1")));
    assert!(settings.trusts(&inet("[::1]:1")));
    assert!(settings.trusts(&inet("[::ffff:127.0.0.1]:1")));
    assert!(!settings.trusts(&inet("10.0.0.1:1")));
    assert!(!settings.trusts(&inet("[::2]:1")));
    assert!(settings.trusts(&Address::Unix(UnixAddress::Unnamed)));
    let only = ProxySettings {
        trusted: vec!["10.1.0.0/16".parse().unwrap()],
        ..ProxySettings::default()
    };
    assert!(only.trusts(&inet("10.1.2.3:1")));
    assert!(!only.trusts(&inet("127.0.0.1:1")));
}
