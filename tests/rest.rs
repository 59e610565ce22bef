//! The rest example with real HTTP clients: curl and Python's `requests`, each as its own
//! process, covering every status code the example promises, and 20 clients at once.

#![cfg(feature = "http")]

mod example;

use std::process::Command;

use example::{curl, python, run, temp_file_of, Example, CLIENT_DEADLINE};
use nix::sys::signal::Signal;
use serde_json::json;

#[test]
fn every_status_code_with_curl() {
    let rest = Example::start("rest", &["127.0.0.1:0"]);
    let items = format!("{}/items", rest.url());

    let empty = curl(&[&items]);
    assert_eq!((empty.status, empty.json()), (200, json!([])));
    assert_eq!(empty.header("content-type"), Some("application/json"));

    let created = curl(&["-X", "POST", "-d", r#"{"name": "apple", "n": 3}"#, &items]);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json(), json!({"id": 1, "name": "apple", "n": 3}));
    assert_eq!(created.header("location"), Some("/items/1"));
    let location = format!("{}{}", rest.url(), "/items/1");

    let got = curl(&[&location]);
    assert_eq!(
        (got.status, got.json()["name"].clone()),
        (200, json!("apple"))
    );
    let head = curl(&["-I", &location]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(
        curl(&[&items]).json(),
        json!([{"id": 1, "name": "apple", "n": 3}])
    );

    let put = curl(&["-X", "PUT", "-d", r#"{"name": "pear"}"#, &location]);
    assert_eq!(
        (put.status, put.json()),
        (200, json!({"id": 1, "name": "pear"}))
    );
    let put_absent = curl(&["-X", "PUT", "-d", "{}", &format!("{items}/99")]);
    assert_eq!(put_absent.status, 404);
    assert_eq!(put_absent.json(), json!({"error": "not found"}));

    let invalid = curl(&["-X", "POST", "-d", "{not json", &items]);
    assert_eq!(invalid.status, 400);
    let message = invalid.json()["error"].as_str().map(str::to_owned);
    assert!(
        message.is_some_and(|m| m.starts_with("invalid JSON")),
        "{invalid:?}"
    );
    let not_object = curl(&["-X", "POST", "-d", "[1, 2]", &items]);
    assert_eq!(not_object.status, 400);
    assert!(not_object.json()["error"].is_string());
    let invalid_put = curl(&["-X", "PUT", "-d", "nope", &location]);
    assert_eq!(invalid_put.status, 400);

    let patch = curl(&["-X", "PATCH", &items]);
    assert_eq!(patch.status, 405);
    assert_eq!(patch.header("allow"), Some("GET, HEAD, POST"));
    let post_one = curl(&["-X", "POST", "-d", "{}", &location]);
    assert_eq!(post_one.status, 405);
    assert_eq!(post_one.header("allow"), Some("GET, HEAD, PUT, DELETE"));

    assert_eq!(curl(&[&format!("{}/nowhere", rest.url())]).status, 404);
    assert_eq!(curl(&[&format!("{items}/abc")]).status, 404);
    assert_eq!(curl(&[&format!("{items}/1/extra")]).status, 404);

    // 1 MiB is accepted as a JSON string inside an object; one byte more is refused unread.
    let dir = tempfile::tempdir().expect("temp dir");
    let at_limit = temp_file_of(&dir, "at-limit.json", &json_of_size(1024 * 1024));
    let over_limit = temp_file_of(&dir, "over-limit.json", &json_of_size(1024 * 1024 + 1));
    let big = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{at_limit}"),
        &items,
    ]);
    assert_eq!(big.status, 201);
    let too_big = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{over_limit}"),
        &items,
    ]);
    assert_eq!(too_big.status, 413, "{:?}", too_big.headers);

    let deleted = curl(&["-X", "DELETE", &location]);
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_eq!(curl(&["-X", "DELETE", &location]).status, 404);
    assert_eq!(curl(&[&location]).status, 404);

    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}

/// A JSON object of exactly `size` bytes: `{"data":"xxx..."}`.
fn json_of_size(size: usize) -> Vec<u8> {
    let overhead = r#"{"data":""}"#.len();
    format!(r#"{{"data":"{}"}}"#, "x".repeat(size - overhead)).into_bytes()
}

const PY_STATUSES: &str = r#"
import sys, requests
base = sys.argv[1] + "/items"
s = requests.Session()
def check(r, status):
    assert r.status_code == status, (r.request.method, r.url, r.status_code, r.text)
    return r

check(s.get(base, timeout=10), 200)
r = check(s.post(base, json={"name": "apple", "tags": ["a", "b"]}, timeout=10), 201)
item = r.json()
assert item["name"] == "apple" and isinstance(item["id"], int), item
assert r.headers["Location"] == "/items/%d" % item["id"], r.headers
one = sys.argv[1] + r.headers["Location"]
assert check(s.get(one, timeout=10), 200).json() == item
h = check(s.head(one, timeout=10), 200)
assert h.content == b"" and int(h.headers["Content-Length"]) > 0
assert check(s.put(one, json={"name": "pear"}, timeout=10), 200).json() == {"id": item["id"], "name": "pear"}
check(s.put(base + "/12345", json={}, timeout=10), 404)
bad = check(s.post(base, data=b"{oops", headers={"Content-Type": "application/json"}, timeout=10), 400)
assert "error" in bad.json(), bad.text
check(s.put(one, data=b"[]", timeout=10), 400)
r = check(s.delete(base, timeout=10), 405)
assert r.headers["Allow"] == "GET, HEAD, POST", r.headers
r = check(s.patch(one, json={}, timeout=10), 405)
assert r.headers["Allow"] == "GET, HEAD, PUT, DELETE", r.headers
check(s.get(sys.argv[1] + "/other", timeout=10), 404)
check(s.get(base + "/x", timeout=10), 404)
# Over 1 MiB: refused with 413 before the body is read, on a fresh connection.
r = check(requests.post(base, data=b"x" * (1024 * 1024 + 1), timeout=10), 413)
check(s.delete(one, timeout=10), 204)
check(s.delete(one, timeout=10), 404)
check(s.get(one, timeout=10), 404)
# The session kept one connection for all of this (keep-alive).
assert len(s.adapters["http://"].poolmanager.pools) == 1
print("ok")
"#;

#[test]
fn every_status_code_with_python_requests() {
    let rest = Example::start("rest", &["127.0.0.1:0"]);
    python(PY_STATUSES, &[&rest.url()]);
    assert_eq!(rest.stop(Signal::SIGINT).code(), Some(0));
}

/// 20 sessions, each holding its keep-alive connection open across a barrier: with a server
/// that served one connection at a time the first would block the rest and the barrier would
/// time out.
const PY_PARALLEL: &str = r#"
import sys, threading, requests
base = sys.argv[1] + "/items"
N = 20
barrier = threading.Barrier(N, timeout=20)
ids, errors = [], []
def client(i):
    try:
        with requests.Session() as s:
            r = s.post(base, json={"client": i}, timeout=10)
            assert r.status_code == 201, r.text
            barrier.wait()  # every client is connected and has been served once
            got = s.get(sys.argv[1] + r.headers["Location"], timeout=10)
            assert got.json() == {"client": i, "id": r.json()["id"]}, got.text
            ids.append(got.json()["id"])
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=client, args=(i,)) for i in range(N)]
for t in threads: t.start()
for t in threads: t.join(30)
assert not errors, errors
assert sorted(ids) == list(range(1, N + 1)), ids
print("ok")
"#;

#[test]
fn twenty_clients_in_parallel() {
    let rest = Example::start("rest", &["127.0.0.1:0"]);
    python(PY_PARALLEL, &[&rest.url()]);

    // And 20 curl processes at once, each its own client.
    let items = format!("{}/items", rest.url());
    let curls: Vec<_> = (0..20)
        .map(|i| {
            let body = format!(r#"{{"curl": {i}}}"#);
            let items = items.clone();
            std::thread::spawn(move || {
                run(
                    Command::new("curl").args([
                        "-sS",
                        "--max-time",
                        "10",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "-d",
                        &body,
                        &items,
                    ]),
                    CLIENT_DEADLINE,
                )
            })
        })
        .collect();
    for handle in curls {
        let out = handle.join().expect("curl thread");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    }
    let all = curl(&[&items]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(40));
    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}
