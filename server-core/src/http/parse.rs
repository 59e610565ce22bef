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
mod tests;
