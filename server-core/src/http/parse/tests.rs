//! Unit tests of the request-head parser: request lines, headers, framing, limits.

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
    let conflict = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
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
    let first_bad = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(reason(first_bad), "invalid Content-Length");
    let later_bad = "POST / HTTP/1.1\r\nContent-Length: 3\r\nHost: a\r\nContent-Length: x\r\n\r\n";
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
