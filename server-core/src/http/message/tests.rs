//! Unit tests of the request and response types: header access, keep-alive, targets, header values.

use super::*;

fn request(target: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: Cow::Borrowed("GET"),
        target: target.into(),
        version: Version::Http11,
        headers: {
            let mut list = Headers::default();
            for (name, value) in headers {
                list.push(name.as_bytes(), value.as_bytes());
            }
            list
        },
        body: Vec::new(),
        client_address: Address::Unix(crate::addr::UnixAddress::Unnamed),
    }
}

#[test]
fn path_and_query_split_at_the_first_question_mark() {
    let r = request("/a/b?x=1?y", &[]);
    assert_eq!(r.path(), "/a/b");
    assert_eq!(r.query(), Some("x=1?y"));
    let r = request("/plain", &[]);
    assert_eq!(r.path(), "/plain");
    assert_eq!(r.query(), None);
}

#[test]
fn headers_match_ignoring_case_and_tokens_ignoring_spaces() {
    let r = request(
        "/",
        &[
            ("Connection", "keep-alive , UPGRADE"),
            ("X-Dup", "1"),
            ("x-dup", "2"),
        ],
    );
    assert!(r.has_token("connection", "upgrade"));
    assert!(r.has_token("CONNECTION", "keep-alive"));
    assert!(!r.has_token("connection", "close"));
    assert_eq!(r.header("X-DUP"), Some("1"));
    assert_eq!(r.headers().count(), 3);
}

#[test]
fn response_builders_and_reason_phrases() {
    let r = Response::text(404, "no").with_content_type("text/x");
    assert_eq!(r.header("content-type"), Some("text/x"));
    assert_eq!(r.headers().count(), 1);
    assert_eq!(Response::new(42).status(), 500);
    assert_eq!(reason_phrase(413), "Content Too Large");
    assert_eq!(reason_phrase(299), "");
    assert!(!Response::new(204).may_have_body());
    assert!(Response::new(200)
        .with_header("Connection", "Close")
        .asks_close());
}

#[test]
fn token_characters_are_those_of_rfc_9110() {
    for b in 0..=255u8 {
        let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let name = [b];
        let as_str = std::str::from_utf8(&name).unwrap_or("\u{80}");
        assert_eq!(is_token(as_str), expected, "byte {b}");
    }
}

#[test]
fn header_names_and_values_are_checked_before_sending() {
    assert!(is_token("X-Request-Id"));
    assert!(!is_token("Bad Name"));
    assert!(!is_token(""));
    assert!(is_safe_value("a; b=c"));
    assert!(!is_safe_value("a\r\nSet-Cookie: x"));
}

#[test]
fn header_fields_keep_their_order_bytes_and_empty_values() {
    let mut list = Headers::with_capacity(3, 0);
    list.push(b"A", b"1");
    list.push(b"Empty", b"");
    list.push(b"a", b"\xff2");
    assert_eq!(list.len(), 3);
    let all: Vec<_> = list.iter().collect();
    assert_eq!(
        all,
        [("A", &b"1"[..]), ("Empty", &b""[..]), ("a", &b"\xff2"[..])]
    );
    let a: Vec<_> = list.values("A").collect();
    assert_eq!(a, [&b"1"[..], &b"\xff2"[..]]);
    assert_eq!(list.values("empty").next(), Some(&b""[..]));
    assert_eq!(list.values("missing").next(), None);
    assert_eq!(
        format!("{list:?}"),
        "[(\"A\", \"1\"), (\"Empty\", \"\"), (\"a\", \"\u{fffd}2\")]"
    );
    let r = Request {
        headers: list,
        ..request("/", &[])
    };
    assert_eq!(r.header("a"), Some("1"));
    assert_eq!(r.header_bytes("EMPTY"), Some(&b""[..]));
}

#[test]
fn static_and_owned_headers_are_the_same_response() {
    let built = Response::new(200)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_body("x");
    assert_eq!(Response::text(200, "x"), built);
    assert_eq!(
        Response::html(200, "x").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let typed = Response::text(200, "x").with_content_type("application/json");
    assert_eq!(
        typed.headers().collect::<Vec<_>>(),
        [("Content-Type", "application/json")]
    );
}
