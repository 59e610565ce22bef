//! Parsing a request head with `httparse`, and the checks on it that decide how the body is
//! framed and whether the connection stays open. Pure functions over bytes, so every edge case
//! is a unit test.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::message::{list_has, Headers, Version};
use super::Limits;

/// Why a request is refused before the handler sees it: the status and a short reason, sent as
/// a `text/plain` body. The connection closes after every refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: u16,
    pub reason: String,
}

impl Reject {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
        }
    }
}

/// A parsed request line and headers, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: Cow<'static, str>,
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.values(name)
    }
}

/// The header fields parsed in place on the stack; a request with more (and a
/// [`Limits::max_headers`] that allows more) is parsed again with room for them all.
const STACK_HEADERS: usize = 32;

/// The methods of RFC 9110 and PATCH, kept without an allocation.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Where the end of a request head (an empty line) is, if `buf` holds one: the index just past
/// it. Accepts bare LF line ends, as `httparse` does. Searching first means `httparse` runs
/// once per request, not once per read, however slowly the head trickles in.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(offset) = buf
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let nl = i + offset;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Parses the head at the start of `buf` with `httparse`.
///
/// `Ok(Some((head, len)))` when complete (`len` bytes were the head), `Ok(None)` when more bytes
/// are needed, or the refusal for a malformed head.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, Reject> {
    let max = limits.max_headers.max(1);
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    if let Some(fields) = stack.get_mut(..max) {
        return parse_with(buf, fields, limits);
    }
    match parse_with(buf, &mut stack, limits) {
        Err(reject) if reject.status == 431 => {
            let mut heap = Vec::new();
            heap.resize_with(max, MaybeUninit::uninit);
            parse_with(buf, &mut heap, limits)
        }
        other => other,
    }
}

/// [`parse_head`] with room for `fields.len()` header fields.
fn parse_with<'b>(
    buf: &'b [u8],
    fields: &mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
) -> Result<Option<(Head, usize)>, Reject> {
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Reject::new(
                431,
                format!("more than {} header fields", limits.max_headers),
            ))
        }
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(e) => return Err(Reject::new(400, format!("malformed request: {e}"))),
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(Reject::new(400, "incomplete request line"));
    };
    let version = match version {
        0 => Version::Http10,
        _ => Version::Http11,
    };
    let bytes = request
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len())
        .sum();
    let mut headers = Headers::with_capacity(request.headers.len(), bytes);
    for h in request.headers.iter() {
        headers.push(h.name.as_bytes(), h.value);
    }
    let method = match KNOWN_METHODS.iter().find(|known| **known == method) {
        Some(known) => Cow::Borrowed(*known),
        None => Cow::Owned(method.to_owned()),
    };
    let head = Head {
        method,
        target: target.to_owned(),
        version,
        headers,
    };
    Ok(Some((head, len)))
}

/// `505` for a well-formed version this layer does not speak (`HTTP/2.0`), `400` otherwise.
fn version_error(buf: &[u8]) -> Reject {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf.get(..line_end).unwrap_or_default().trim_ascii_end();
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version.strip_prefix(b"HTTP/") {
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Reject::new(505, "only HTTP/1.0 and HTTP/1.1 are served")
        }
        Some([major]) if major.is_ascii_digit() => {
            Reject::new(505, "only HTTP/1.0 and HTTP/1.1 are served")
        }
        _ => Reject::new(400, "malformed HTTP version"),
    }
}

/// The refusal for a head longer than [`Limits::max_head`]: `414` when the request line alone is
/// that long, `431` otherwise. `buf` is the head, or as much of it as arrived.
pub(crate) fn head_too_large(buf: &[u8], limits: &Limits) -> Reject {
    // Skip the empty lines a client may send before the request line.
    let content = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(content..).unwrap_or_default();
    let line = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    if line > limits.max_head {
        Reject::new(
            414,
            format!("request line longer than {} bytes", limits.max_head),
        )
    } else {
        Reject::new(
            431,
            format!("request head longer than {} bytes", limits.max_head),
        )
    }
}

/// How the request's body is framed, after the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    /// The body's length (0 when the request has none).
    pub length: usize,
    /// The client sent `Expect: 100-continue` and waits for `100 Continue` before the body.
    pub expect_continue: bool,
}

/// Checks the head and decides the body's framing (RFC 9112 section 6):
///
/// - `Transfer-Encoding` (with or without `Content-Length`): refused, `411 Length Required`
///   when it is `chunked`, `501` for other codings; with `Content-Length` as well, `400`.
/// - `Content-Length`: digits only; several must agree; larger than `max_body` → `413`.
/// - neither: no body.
/// - HTTP/1.1 without exactly one `Host` → `400`.
/// - `Expect`: `100-continue` is honoured, anything else → `417`.
pub(crate) fn framing(head: &Head, limits: &Limits) -> Result<Framing, Reject> {
    // One pass over the fields collects what the checks below need.
    let mut hosts = 0;
    let mut first_length = None;
    let mut lengths_agree = true;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut expect = None;
    for (name, value) in head.headers.raw() {
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match &first_length {
                None => first_length = Some(parse_length(value)),
                Some(first) => {
                    lengths_agree &=
                        matches!((first, parse_length(value)), (Ok(a), Ok(b)) if *a == b);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            chunked |= list_has(value, "chunked");
        } else if name.eq_ignore_ascii_case(b"expect") && expect.is_none() {
            expect = Some(value);
        }
    }
    if head.version == Version::Http11 && hosts != 1 {
        return Err(Reject::new(
            400,
            if hosts == 0 {
                "HTTP/1.1 requests need a Host header"
            } else {
                "more than one Host header"
            },
        ));
    }
    let length = match first_length {
        None => None,
        Some(first) => {
            let n = first?;
            if !lengths_agree {
                return Err(Reject::new(400, "conflicting Content-Length headers"));
            }
            Some(n)
        }
    };
    if transfer_encoding {
        if length.is_some() {
            return Err(Reject::new(
                400,
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if chunked {
            return Err(Reject::new(
                411,
                "chunked request bodies are not accepted; send Content-Length",
            ));
        }
        return Err(Reject::new(501, "unsupported Transfer-Encoding"));
    }
    let length = length.unwrap_or(0);
    if length > limits.max_body as u64 {
        return Err(Reject::new(
            413,
            format!("body of {length} bytes; the limit is {}", limits.max_body),
        ));
    }
    let expect_continue = match expect {
        None => false,
        Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => {
            head.version == Version::Http11
        }
        Some(_) => return Err(Reject::new(417, "only Expect: 100-continue is supported")),
    };
    Ok(Framing {
        // Fits: it is at most max_body, a usize.
        length: usize::try_from(length).unwrap_or(usize::MAX),
        expect_continue: expect_continue && length > 0,
    })
}

/// A `Content-Length` value: ASCII digits only (no sign, no list). One too large for `u64` is
/// surely over the body limit.
fn parse_length(value: &[u8]) -> Result<u64, Reject> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Reject::new(400, "invalid Content-Length"));
    }
    Ok(std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX))
}

/// Whether the client wants the connection kept open after this request: HTTP/1.1 unless it
/// sent `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub(crate) fn client_keeps_alive(head: &Head) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for value in head.values("connection") {
        close |= list_has(value, "close");
        keep_alive |= list_has(value, "keep-alive");
    }
    match head.version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn head(raw: &str) -> Head {
        match parse_head(raw.as_bytes(), &limits()) {
            Ok(Some((head, len))) => {
                assert_eq!(len, raw.len(), "the whole input is the head");
                head
            }
            other => panic!("{raw:?} parsed as {other:?}"),
        }
    }

    fn status_of(raw: &str) -> u16 {
        match parse_head(raw.as_bytes(), &limits()) {
            Err(reject) => reject.status,
            Ok(Some((head, _))) => match framing(&head, &limits()) {
                Err(reject) => reject.status,
                Ok(_) => 200,
            },
            Ok(None) => 0,
        }
    }

    #[test]
    fn a_simple_get() {
        let h = head("GET /items?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/items?x=1");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 2);
        assert!(client_keeps_alive(&h));
        let f = framing(&h, &limits()).unwrap();
        assert_eq!(f.length, 0);
        assert!(!f.expect_continue);
    }

    #[test]
    fn a_partial_head_needs_more_bytes() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(parse_head(raw, &limits()), Ok(None));
        assert_eq!(parse_head(b"GE", &limits()), Ok(None));
        assert_eq!(find_head_end(raw, 0), None);
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line_with_crlf_or_lf() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(find_head_end(raw, 0), Some(raw.len() - 4));
        let lf = b"GET / HTTP/1.1\nHost: a\n\nBODY";
        assert_eq!(find_head_end(lf, 0), Some(lf.len() - 4));
        // Found when the terminator straddles two reads.
        assert_eq!(find_head_end(raw, 26), Some(raw.len() - 4));
        let (h, len) = parse_head(lf, &limits()).unwrap().unwrap();
        assert_eq!((&*h.method, len), ("GET", lf.len() - 4));
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let h = head("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.target, "/");
    }

    #[test]
    fn http_1_0_closes_unless_keep_alive_and_1_1_keeps_unless_close() {
        assert!(!client_keeps_alive(&head("GET / HTTP/1.0\r\n\r\n")));
        assert!(client_keeps_alive(&head(
            "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
        )));
        assert!(!client_keeps_alive(&head(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n"
        )));
    }

    #[test]
    fn malformed_requests_are_400() {
        assert_eq!(status_of("GET\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\r\n: empty\r\n\r\n"), 400);
        assert_eq!(status_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / FTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status_of("GET / HTTP/1.1\r\nHost: a\rX\r\n\r\n"), 400);
        // A TLS ClientHello sent to the plain-text port.
        let tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
        assert_eq!(
            parse_head(tls, &limits()).map(|_| ()).unwrap_err().status,
            400
        );
    }

    #[test]
    fn other_http_versions_are_505() {
        assert_eq!(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTP/3\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status_of("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert_eq!(status_of("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert_eq!(status_of("GET / HTTP/1.0\r\n\r\n"), 200);
    }

    #[test]
    fn content_length_is_digits_and_agrees() {
        let h = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n\r\n");
        assert_eq!(framing(&h, &limits()).unwrap().length, 12);
        let dup = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(status_of(dup), 200);
        for bad in ["-1", "+3", "3, 3", "0x10", "", "1 2"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(status_of(&raw), 400, "{bad:?}");
        }
        let conflict =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(status_of(conflict), 400);
    }

    #[test]
    fn bodies_over_the_limit_are_413_even_past_u64() {
        let over = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            limits().max_body + 1
        );
        assert_eq!(status_of(&over), 413);
        let at = over.replace(
            &(limits().max_body + 1).to_string(),
            &limits().max_body.to_string(),
        );
        assert_eq!(status_of(&at), 200);
        let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(status_of(huge), 413);
    }

    #[test]
    fn transfer_encoding_is_refused() {
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(chunked), 411);
        let gzip = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(status_of(gzip), 501);
        let smuggle =
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(status_of(smuggle), 400);
    }

    #[test]
    fn expect_100_continue_only_when_there_is_a_body() {
        let raw = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
        assert!(framing(&head(raw), &limits()).unwrap().expect_continue);
        let empty = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n";
        assert!(!framing(&head(empty), &limits()).unwrap().expect_continue);
        let other = "POST / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n";
        assert_eq!(status_of(other), 417);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..limits().max_headers {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(status_of(&raw), 431);
    }

    #[test]
    fn an_oversized_head_is_414_in_the_request_line_else_431() {
        let max = limits().max_head;
        let line = format!("\r\nGET /{}", "a".repeat(max));
        assert_eq!(head_too_large(line.as_bytes(), &limits()).status, 414);
        let complete = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(max));
        assert_eq!(head_too_large(complete.as_bytes(), &limits()).status, 414);
        let headers = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(max));
        assert_eq!(head_too_large(headers.as_bytes(), &limits()).status, 431);
    }

    fn with_fields(count: usize) -> String {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 1..count {
            raw.push_str(&format!("X-Field-{i}: value {i}\r\n"));
        }
        raw.push_str("\r\n");
        raw
    }

    #[test]
    fn more_fields_than_fit_on_the_stack_are_parsed_in_order() {
        for count in [STACK_HEADERS - 1, STACK_HEADERS, STACK_HEADERS + 1, 100] {
            let h = head(&with_fields(count));
            assert_eq!(h.headers.len(), count);
            let fields: Vec<_> = h.headers.iter().collect();
            assert_eq!(fields.first(), Some(&("Host", &b"a"[..])));
            if count > 1 {
                let last = format!("value {}", count - 1);
                assert_eq!(fields.last().map(|f| f.1), Some(last.as_bytes()));
            }
        }
    }

    #[test]
    fn past_max_headers_is_431_below_and_above_the_stack_s_room() {
        assert_eq!(status_of(&with_fields(101)), 431);
        for max in [1, 10, STACK_HEADERS, STACK_HEADERS + 8] {
            let limits = Limits {
                max_headers: max,
                ..Limits::default()
            };
            let at = with_fields(max);
            assert!(
                matches!(parse_head(at.as_bytes(), &limits), Ok(Some(_))),
                "{max}"
            );
            let over = with_fields(max + 1);
            let refused = parse_head(over.as_bytes(), &limits).map(|_| ());
            assert_eq!(refused.map_err(|r| r.status), Err(431), "{max}");
        }
    }

    #[test]
    fn methods_are_kept_as_sent_known_or_not() {
        for method in KNOWN_METHODS.iter().chain(&["PROPFIND", "get", "M-SEARCH"]) {
            let h = head(&format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n"));
            assert_eq!(h.method, *method);
            assert_eq!(
                matches!(h.method, Cow::Borrowed(_)),
                KNOWN_METHODS.contains(method)
            );
        }
    }

    #[test]
    fn the_first_content_length_decides_between_invalid_and_conflicting() {
        let reason = |raw: &str| match parse_head(raw.as_bytes(), &limits()) {
            Ok(Some((head, _))) => framing(&head, &limits()).map(|_| ()).unwrap_err().reason,
            other => panic!("{raw:?} parsed as {other:?}"),
        };
        let first_bad =
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(reason(first_bad), "invalid Content-Length");
        let later_bad =
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\nContent-Length: x\r\n\r\n";
        assert_eq!(reason(later_bad), "conflicting Content-Length headers");
        // Host is checked before the length, the length before Transfer-Encoding.
        let both = "POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(reason(both), "HTTP/1.1 requests need a Host header");
        let te_last = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(reason(te_last).starts_with("chunked request bodies"));
        let expect_first = "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: other\r\nContent-Length: 1\r\n\r\n";
        let h = head(expect_first);
        assert!(framing(&h, &limits()).unwrap().expect_continue);
    }
}
