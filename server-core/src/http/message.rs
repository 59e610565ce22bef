//! HTTP messages as a handler sees them: the parsed [`Request`] and the [`Response`] it returns.

use std::borrow::Cow;
use std::fmt;

use crate::addr::Address;

/// The HTTP version of a request (Python: `request_version`).
///
/// Only HTTP/1.0 and HTTP/1.1 reach a handler; any other version is answered with
/// `505 HTTP Version Not Supported` (or `400` when it is not a version at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    /// `HTTP/1.0`: the connection closes after the response unless the client asked for
    /// `Connection: keep-alive`.
    Http10,
    /// `HTTP/1.1`: the connection stays open unless either side says `Connection: close`.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// One parsed HTTP request, with its whole body (Python: `BaseHTTPRequestHandler`'s `command`,
/// `path`, `request_version`, `headers` and what `rfile` holds of the body).
///
/// The layer has already checked its framing: the body is exactly `Content-Length` bytes, at
/// most [`Limits::max_body`](super::Limits::max_body).
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) method: Cow<'static, str>,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
    pub(crate) client_address: Address,
}

impl Request {
    /// The method, as sent: `GET`, `POST`... (Python: `command`). Methods are case-sensitive.
    #[doc(alias = "command")]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, query included, not percent-decoded (Python: `path`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target without its query: `/items/3` for `/items/3?full=1`. Not percent-decoded.
    pub fn path(&self) -> &str {
        match self.target.split_once('?') {
            Some((path, _)) => path,
            None => &self.target,
        }
    }

    /// The query, after the first `?`, if there is one. Not percent-decoded.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The HTTP version (Python: `request_version`).
    #[doc(alias = "request_version")]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The first header called `name` (compared ignoring case), if its value is UTF-8
    /// (Python: `headers.get(name)`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The first header called `name` (compared ignoring case), as raw bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers.values(name).next()
    }

    /// Every header in the order sent, repeated names included (Python: `headers.items()`).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter()
    }

    /// Whether any header called `name` lists `token` among its comma-separated values,
    /// ignoring case: `has_token("Connection", "upgrade")` is true for
    /// `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers.has_token(name, token)
    }

    /// The body: exactly `Content-Length` bytes, empty when there was none.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The client's address (Python: `client_address`).
    pub fn client_address(&self) -> &Address {
        &self.client_address
    }
}

/// A request's header fields in the order sent: their names and values copied one after the
/// other into one buffer, and where each ends. Two allocations per request, whatever the
/// number of fields, instead of two per field.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers {
    bytes: Vec<u8>,
    /// For each field, the ends of its name and of its value in `bytes`; the name starts
    /// where the field before it ends.
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// Room for `fields` fields holding `bytes` bytes of names and values.
    pub(crate) fn with_capacity(fields: usize, bytes: usize) -> Headers {
        Headers {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Adds a field at the end.
    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len()));
    }

    /// The number of fields.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Every field as raw bytes, in order.
    pub(crate) fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let name = self.bytes.get(start..name_end).unwrap_or_default();
            let value = self.bytes.get(name_end..value_end).unwrap_or_default();
            start = value_end;
            (name, value)
        })
    }

    /// Every field in order. Names are tokens, checked by the parser, so they are ASCII.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.raw()
            .map(|(name, value)| (std::str::from_utf8(name).unwrap_or_default(), value))
    }

    /// The values of the fields called `name`, ignoring case, in order.
    pub(crate) fn values<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.raw()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Whether any field called `name` lists `token`, as [`Request::has_token`].
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|value| list_has(value, token))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(value))),
            )
            .finish()
    }
}

/// Whether a comma-separated header value lists `token`, ignoring case and whitespace.
pub(crate) fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// An HTTP response a handler returns: a status, headers and a body.
///
/// The layer adds `Date` and `Content-Length` (from the body; handlers never set it), and
/// `Connection: close` when the connection is about to close; a `Content-Length` or
/// `Transfer-Encoding` the handler sets is ignored. The body is not sent for `HEAD`, and
/// statuses 1xx, 204 and 304 never carry one.
///
/// # Examples
///
/// ```
/// use socketserver::http::Response;
///
/// let created = Response::new(201)
///     .with_header("Location", "/items/7")
///     .with_content_type("application/json")
///     .with_body(r#"{"id":7}"#);
/// assert_eq!(created.status(), 201);
/// assert_eq!(created.header("location"), Some("/items/7"));
/// assert_eq!(created.body(), br#"{"id":7}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a response does nothing until a handler returns it"]
pub struct Response {
    status: u16,
    /// The handler's headers. Those the layer's own constructors add (`Content-Type` of
    /// [`text`](Self::text)...) borrow static strings, so they cost no allocation.
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    ///
    /// A status outside 100..=999 is sent as 500.
    pub fn new(status: u16) -> Response {
        Response {
            status: if (100..=999).contains(&status) {
                status
            } else {
                500
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_static_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// A `text/html; charset=utf-8` response.
    pub fn html(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_static_header("Content-Type", "text/html; charset=utf-8")
            .with_body(body.into())
    }

    /// `101 Switching Protocols` to `protocol` (such as `websocket`), with the `Upgrade` and
    /// `Connection: Upgrade` headers. After sending it the layer stops speaking HTTP and hands
    /// the connection to [`HttpHandler::upgraded`](super::HttpHandler::upgraded).
    pub fn switching_protocols(protocol: &str) -> Response {
        Response::new(101)
            .with_header("Upgrade", protocol)
            .with_header("Connection", "Upgrade")
    }

    /// Adds a header (Python: `send_header`). Names and values that could break the response
    /// (a name that is not an HTTP token, a value with CR, LF or NUL) are dropped when it is
    /// sent, and logged.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers
            .push((Cow::Owned(name.into()), Cow::Owned(value.into())));
        self
    }

    /// Adds a header of static strings, without allocating them.
    fn with_static_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers
            .push((Cow::Borrowed(name), Cow::Borrowed(value)));
        self
    }

    /// Sets `Content-Type`, replacing an earlier one.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Response {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers.push((
            Cow::Borrowed("Content-Type"),
            Cow::Owned(content_type.into()),
        ));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Every header, in the order added.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (&**n, &**v))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Whether this response may carry a body at all (not 1xx, 204 or 304).
    pub(crate) fn may_have_body(&self) -> bool {
        !(self.status < 200 || self.status == 204 || self.status == 304)
    }

    /// Whether the handler's own `Connection` header asks to close.
    pub(crate) fn asks_close(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && list_has(v.as_bytes(), "close"))
    }

    pub(crate) fn raw_headers(&self) -> &[(Cow<'static, str>, Cow<'static, str>)] {
        &self.headers
    }
}

/// The standard reason phrase of a status code, such as `"Not Found"` for 404; `""` for codes
/// without one (Python: `BaseHTTPRequestHandler.responses`).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether `name` is an HTTP token (RFC 9110 section 5.6.2), so it can be sent as a header name.
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| TOKEN[usize::from(b)])
}

/// Which bytes are token characters (`tchar`), by value: one look-up per byte of a name.
static TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        // b < 256: fits a u8.
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// Whether `value` can be sent as a header value without breaking the message.
pub(crate) fn is_safe_value(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests;
