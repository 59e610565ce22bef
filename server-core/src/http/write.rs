//! Writing a response: the status line, the headers the layer adds, then the body.

use std::io::{self, Write};
use std::time::SystemTime;

use super::input::READ_CHUNK;
use super::message::{is_safe_value, is_token, reason_phrase, Response, Version};

const LOG: &str = "socketserver::http";

/// Writes a response: status line, headers (with `Date`, `Content-Length` and `Connection`
/// added), then the body unless `head_only`.
pub(crate) fn write_response(
    out: &mut impl Write,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let status = response.status();
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let mut has_date = false;
    let mut has_connection = false;
    for (name, value) in response.raw_headers() {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        if !is_token(name) || !is_safe_value(value) {
            log::error!(target: LOG, "dropped an invalid response header {name:?}: {value:?}");
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        has_connection |= name.eq_ignore_ascii_case("connection");
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if !has_date {
        head.push_str("Date: ");
        head.push_str(&httpdate::fmt_http_date(SystemTime::now()));
        head.push_str("\r\n");
    }
    if response.may_have_body() {
        head.push_str(&format!("Content-Length: {}\r\n", response.body().len()));
    }
    if !has_connection {
        if close {
            head.push_str("Connection: close\r\n");
        } else if version == Version::Http10 && status != 101 {
            head.push_str("Connection: keep-alive\r\n");
        }
    }
    head.push_str("\r\n");
    let body = if head_only || !response.may_have_body() {
        &[][..]
    } else {
        response.body()
    };
    if body.len() <= READ_CHUNK {
        // One write, so a small response leaves in one segment.
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        out.write_all(&all)
    } else {
        out.write_all(head.as_bytes())?;
        out.write_all(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(response: &Response, version: Version, head_only: bool, close: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, response, version, head_only, close).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_response_gets_date_length_and_its_body() {
        let text = written(&Response::text(200, "hi"), Version::Http11, false, false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(!text.contains("Connection"), "{text}");
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let text = written(&Response::text(200, "hello"), Version::Http11, true, false);
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn no_content_has_neither_length_nor_body() {
        let text = written(
            &Response::new(204).with_body("ignored"),
            Version::Http11,
            false,
            false,
        );
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn connection_close_and_http_1_0_keep_alive_are_announced() {
        let close = written(&Response::new(200), Version::Http11, false, true);
        assert!(close.contains("Connection: close\r\n"), "{close}");
        let kept = written(&Response::new(200), Version::Http10, false, false);
        assert!(kept.contains("Connection: keep-alive\r\n"), "{kept}");
    }

    #[test]
    fn handler_lengths_and_injected_headers_are_dropped() {
        let response = Response::text(200, "abc")
            .with_header("Content-Length", "999")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("X-Evil", "a\r\nSet-Cookie: b")
            .with_header("Bad Name", "c")
            .with_header("X-Good", "d");
        let text = written(&response, Version::Http11, false, false);
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(!text.contains("999") && !text.contains("chunked"), "{text}");
        assert!(
            !text.contains("Set-Cookie") && !text.contains("Bad Name"),
            "{text}"
        );
        assert!(text.contains("X-Good: d\r\n"), "{text}");
    }

    #[test]
    fn switching_protocols_keeps_its_connection_header() {
        let text = written(
            &Response::switching_protocols("websocket"),
            Version::Http11,
            false,
            false,
        );
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Upgrade: websocket\r\nConnection: Upgrade\r\n"),
            "{text}"
        );
        assert!(!text.contains("Content-Length"), "{text}");
    }
}
