//! Writing a response: the status line, the headers the layer adds, then the body.
//!
//! A response is assembled in one buffer and sent with one write, so a small response leaves
//! in one segment and costs one system call. The buffer is the thread's own and is reused, and
//! the `Date` header is formatted at most once a second per thread (as hyper and nginx do): a
//! response of up to [`KEPT`] bytes costs no allocation here, and none costs a `format!`.

use std::cell::Cell;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::input::READ_CHUNK;
use super::message::{is_safe_value, is_token, reason_phrase, Response, Version};

const LOG: &str = "socketserver::http";

/// The most capacity a thread keeps in its response buffer between responses. Larger responses
/// use a buffer of their own, freed after the write, so a thread does not hold a body-sized
/// buffer once the response is out.
const KEPT: usize = 2 * 1024;

/// The length of an IMF-fixdate, as in `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// Seconds since the epoch of 10000-01-01: IMF-fixdate has four digits for the year.
const YEAR_10000: u64 = 253_402_300_800;

thread_local! {
    /// The response buffer of this thread, reused from one response to the next.
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The `Date` value of the second `.0` (seconds since the epoch), formatted.
    static DATE: Cell<(u64, [u8; DATE_LEN])> = const { Cell::new((u64::MAX, [0; DATE_LEN])) };
}

/// The `Date` header's value for `now`, formatted once per second per thread; `None` when the
/// clock is before 1970 or past 9999, which IMF-fixdate cannot express (RFC 9110 section
/// 6.6.1: a server without a usable clock sends no `Date`).
pub(crate) fn http_date(now: SystemTime) -> Option<[u8; DATE_LEN]> {
    let secs = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if secs >= YEAR_10000 {
        return None;
    }
    let (cached_secs, cached) = DATE.get();
    if cached_secs == secs {
        return Some(cached);
    }
    let mut text = [0; DATE_LEN];
    let date = httpdate::HttpDate::from(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    // An IMF-fixdate of a year before 10000 is exactly DATE_LEN bytes.
    write!(&mut text[..], "{date}").ok()?;
    DATE.set((secs, text));
    Some(text)
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: n % 10 < 10 fits a u8.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// Appends one header line.
fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a response: status line, headers (with `Date`, `Content-Length` and `Connection`
/// added), then the body unless `head_only`.
pub(crate) fn write_response(
    out: &mut impl Write,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let body = if head_only || !response.may_have_body() {
        &[][..]
    } else {
        response.body()
    };
    // The body goes in the same buffer, so that the response is one write, unless it is large:
    // then copying it would cost more than the second write.
    let (inline, separate) = if body.len() <= READ_CHUNK {
        (body, &[][..])
    } else {
        (&[][..], body)
    };
    let mut head = BUFFER.take();
    head.clear();
    let headers: usize = response
        .raw_headers()
        .iter()
        .map(|(name, value)| name.len() + value.len() + 4)
        .sum();
    // The status line, Date, Content-Length, Connection and the empty line fit in 160 bytes.
    head.reserve(160 + headers + inline.len());
    assemble(&mut head, response, version, close);
    head.extend_from_slice(inline);
    let written = out.write_all(&head);
    if head.capacity() <= KEPT {
        BUFFER.set(head);
    }
    written?;
    if separate.is_empty() {
        Ok(())
    } else {
        out.write_all(separate)
    }
}

/// Appends the status line and the headers, through the empty line that ends them.
fn assemble(head: &mut Vec<u8>, response: &Response, version: Version, close: bool) {
    let status = response.status();
    // Response::new keeps the status in 100..=999: three digits.
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(&digits);
    head.push(b' ');
    head.extend_from_slice(reason_phrase(status).as_bytes());
    head.extend_from_slice(b"\r\n");
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
        push_header(head, name.as_bytes(), value.as_bytes());
    }
    if !has_date {
        if let Some(date) = http_date(SystemTime::now()) {
            push_header(head, b"Date", &date);
        }
    }
    if response.may_have_body() {
        head.extend_from_slice(b"Content-Length: ");
        push_decimal(head, response.body().len());
        head.extend_from_slice(b"\r\n");
    }
    if !has_connection {
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if version == Version::Http10 && status != 101 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
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

    #[test]
    fn the_date_is_httpdate_s_imf_fixdate_formatted_once_a_second() {
        let base = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        for offset in [0, 0, 1, 59, 86_400, 1_000_000_000, 4_000_000_000] {
            let now = base + std::time::Duration::from_secs(offset);
            let date = http_date(now).expect("a date in range");
            assert_eq!(
                std::str::from_utf8(&date).unwrap(),
                httpdate::fmt_http_date(now)
            );
        }
        assert_eq!(&http_date(base).unwrap(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        // Within the same second: the cached value, and still the right one.
        let later = base + std::time::Duration::from_millis(999);
        assert_eq!(&http_date(later).unwrap(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        let next = base + std::time::Duration::from_millis(1000);
        assert_eq!(&http_date(next).unwrap(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        // The clock now: what the response carries parses back to within a second of it.
        let now = SystemTime::now();
        let parsed =
            httpdate::parse_http_date(std::str::from_utf8(&http_date(now).unwrap()).unwrap())
                .unwrap();
        assert!(now.duration_since(parsed).unwrap() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_clock_imf_fixdate_cannot_express_sends_no_date() {
        let before_1970 = UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(http_date(before_1970), None);
        let year_10000 = UNIX_EPOCH + std::time::Duration::from_secs(YEAR_10000);
        assert_eq!(http_date(year_10000), None);
        let last = UNIX_EPOCH + std::time::Duration::from_secs(YEAR_10000 - 1);
        assert_eq!(&http_date(last).unwrap(), b"Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn decimals_are_written_whole() {
        for n in [0, 7, 10, 99, 100, 1_234_567, usize::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn a_large_body_follows_its_head_and_the_kept_buffer_stays_small() {
        let body = vec![b'b'; READ_CHUNK + 1];
        let mut out = Vec::new();
        let response = Response::new(200).with_body(body.clone());
        write_response(&mut out, &response, Version::Http11, false, false).unwrap();
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = std::str::from_utf8(&out[..head_end]).unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        assert_eq!(&out[head_end..], &body[..]);
        // A body that fits goes in the thread's buffer with the head; once written, the
        // buffer the thread keeps is no larger than KEPT.
        let fits = Response::new(200).with_body(vec![b'c'; READ_CHUNK]);
        out.clear();
        write_response(&mut out, &fits, Version::Http11, false, false).unwrap();
        assert!(out.ends_with(&[b'c'; READ_CHUNK]));
        let kept = BUFFER.take();
        assert!(kept.capacity() <= KEPT, "kept {}", kept.capacity());
        // A small response is assembled in the kept buffer, which stays for the next one.
        written(&Response::text(200, "small"), Version::Http11, false, false);
        let kept = BUFFER.take();
        assert!(
            kept.capacity() > 0 && kept.capacity() <= KEPT,
            "kept {}",
            kept.capacity()
        );
    }

    #[test]
    fn a_status_without_a_reason_phrase_keeps_the_space() {
        let text = written(&Response::new(299), Version::Http11, false, false);
        assert!(text.starts_with("HTTP/1.1 299 \r\n"), "{text}");
    }
}
