//! The jsonrpc example against every example exchange of the JSON-RPC 2.0 specification
//! (<https://www.jsonrpc.org/specification>, section 7), each sent by curl over real HTTP;
//! the answers are compared as JSON, batches in any order.

#![cfg(feature = "http")]

mod example;

use example::{curl, Example};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// The specification's exchanges, in its order: what is sent (verbatim, malformed ones
/// included) and what must come back (`None`: nothing, for notifications).
fn specification_examples() -> Vec<(&'static str, Option<Value>)> {
    vec![
        // rpc call with positional parameters
        (
            r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
            Some(json!({"jsonrpc": "2.0", "result": 19, "id": 1})),
        ),
        (
            r#"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#,
            Some(json!({"jsonrpc": "2.0", "result": -19, "id": 2})),
        ),
        // rpc call with named parameters
        (
            r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
            Some(json!({"jsonrpc": "2.0", "result": 19, "id": 3})),
        ),
        (
            r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#,
            Some(json!({"jsonrpc": "2.0", "result": 19, "id": 4})),
        ),
        // a Notification
        (
            r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#,
            None,
        ),
        (r#"{"jsonrpc": "2.0", "method": "foobar"}"#, None),
        // rpc call of non-existent method
        (
            r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}),
            ),
        ),
        // rpc call with invalid JSON
        (
            r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}),
            ),
        ),
        // rpc call with invalid Request object
        (
            r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}),
            ),
        ),
        // rpc call Batch, invalid JSON
        (
            r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#,
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}),
            ),
        ),
        // rpc call with an empty Array
        (
            "[]",
            Some(
                json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}),
            ),
        ),
        // rpc call with an invalid Batch (but not empty)
        (
            "[1]",
            Some(json!([
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
            ])),
        ),
        // rpc call with invalid Batch
        (
            "[1,2,3]",
            Some(json!([
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
            ])),
        ),
        // rpc call Batch
        (
            r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]"#,
            Some(json!([
                {"jsonrpc": "2.0", "result": 7, "id": "1"},
                {"jsonrpc": "2.0", "result": 19, "id": "2"},
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
                {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
                {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
            ])),
        ),
        // rpc call Batch (all notifications)
        (
            r#"[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"#,
            None,
        ),
    ]
}

/// Batches compare in any order: the specification lets the server answer them so.
fn normalized(value: Value) -> Value {
    match value {
        Value::Array(mut items) => {
            items.sort_by_key(Value::to_string);
            Value::Array(items)
        }
        other => other,
    }
}

fn post(url: &str, body: &str) -> example::CurlResponse {
    curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        body,
        url,
    ])
}

#[test]
fn every_example_of_the_specification() {
    let server = Example::start("jsonrpc", &["127.0.0.1:0"]);
    let url = format!("{}/", server.url());
    for (request, expected) in specification_examples() {
        let reply = post(&url, request);
        match expected {
            None => {
                assert_eq!(reply.status, 204, "{request} -> {reply:?}");
                assert!(reply.body.is_empty(), "{request} -> {reply:?}");
            }
            Some(expected) => {
                assert_eq!(reply.status, 200, "{request} -> {reply:?}");
                assert_eq!(reply.header("content-type"), Some("application/json"));
                assert_eq!(normalized(reply.json()), normalized(expected), "{request}");
            }
        }
    }
    // The notifications above ran, though nothing answered them: update, notify_hello twice,
    // notify_sum.
    let count = post(
        &url,
        r#"{"jsonrpc": "2.0", "method": "notifications", "id": 7}"#,
    );
    assert_eq!(
        count.json(),
        json!({"jsonrpc": "2.0", "result": 4, "id": 7})
    );
    assert_eq!(server.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn add_echo_invalid_params_and_internal_errors() {
    let server = Example::start("jsonrpc", &["127.0.0.1:0"]);
    let url = format!("{}/", server.url());
    let call = |body: &str| post(&url, body).json();
    assert_eq!(
        call(r#"{"jsonrpc": "2.0", "method": "add", "params": [2, 3.5], "id": 1}"#),
        json!({"jsonrpc": "2.0", "result": 5.5, "id": 1})
    );
    assert_eq!(
        call(r#"{"jsonrpc": "2.0", "method": "add", "params": {"a": 2, "b": 3}, "id": 2}"#),
        json!({"jsonrpc": "2.0", "result": 5, "id": 2})
    );
    let nested = json!({"list": [1, "two", null, true], "nested": {"x": 1.5}});
    assert_eq!(
        call(&json!({"jsonrpc": "2.0", "method": "echo", "params": nested, "id": "e"}).to_string()),
        json!({"jsonrpc": "2.0", "result": nested, "id": "e"})
    );
    for bad in [
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [1], "id": 3}"#,
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": ["a", 1], "id": 3}"#,
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 1, "x": 2}, "id": 3}"#,
    ] {
        let reply = call(bad);
        assert_eq!(reply["error"]["code"], json!(-32602), "{bad}: {reply}");
        assert_eq!(reply["error"]["message"], json!("Invalid params"));
        assert_eq!(reply["id"], json!(3));
    }
    let overflow = call(&format!(
        r#"{{"jsonrpc": "2.0", "method": "add", "params": [{}, 1], "id": 4}}"#,
        i64::MAX
    ));
    assert_eq!(overflow["error"]["code"], json!(-32603), "{overflow}");
    assert_eq!(overflow["error"]["message"], json!("Internal error"));
    // Version 1.0 style and non-string methods are invalid requests.
    let old = call(r#"{"method": "add", "params": [1, 2], "id": 5}"#);
    assert_eq!(old["error"]["code"], json!(-32600));
    // HTTP around it: only POST /.
    let get = curl(&[&url]);
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    assert_eq!(curl(&[&format!("{}/rpc", server.url())]).status, 404);
    assert_eq!(server.stop(Signal::SIGINT).code(), Some(0));
}

// ----- Hostile clients (issue 12): what one request may cost. -----

/// Sends hostile bodies from many clients at once (`at_once` is
/// [`example::PY_AT_ONCE`]), each expecting one error object back, then a probe call that
/// must still be answered.
const PY_HOSTILE: &str = r#"
import sys, json, urllib.request
url = sys.argv[1]

def post(body):
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, r.status
        return json.loads(r.read())

def refused(data_part):
    def check(reply):
        assert isinstance(reply, dict), str(reply)[:200]
        assert reply["error"]["code"] == -32600 and reply["id"] is None, reply
        assert data_part in reply["error"]["data"], reply
    return check

MiB = 1024 * 1024
# Four 1 MiB batches of 1s (the crash of issue 12): 524,287 invalid calls each.
ones = b"[" + b",".join([b"1"] * (MiB // 2 - 1)) + b"]"
assert len(ones) == MiB - 1
at_once(4, lambda i: refused("10000 JSON values")(post(ones)))
# Four 1 MiB calls whose params are small objects, each a map node once decoded.
objects = b'{"jsonrpc":"2.0","method":"echo","params":[' + b",".join([b'{"a":{}}'] * 116000) + b'],"id":1}'
assert len(objects) < MiB, len(objects)
at_once(4, lambda i: refused("10000 JSON values")(post(objects)))
# A batch over the cap, though small: no call runs, so no notification is counted.
before = post(b'{"jsonrpc":"2.0","method":"notifications","id":1}')["result"]
batch = json.dumps([{"jsonrpc": "2.0", "method": "update"}] * 101).encode()
refused("at most 100 calls")(post(batch))
assert post(b'{"jsonrpc":"2.0","method":"notifications","id":1}')["result"] == before
# At the cap it is served: 100 answers.
batch = json.dumps([{"jsonrpc": "2.0", "method": "add", "params": [i, 1], "id": i} for i in range(100)]).encode()
assert sorted(r["result"] for r in post(batch)) == list(range(1, 101))
# Still serving.
assert post(b'{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":"probe"}') == {"jsonrpc": "2.0", "result": 19, "id": "probe"}
print("ok")
"#;

/// Issue 12 item 4: four 1 MiB batches took 855 MB each (40x) and crashed the server. Now
/// a request's values and calls are counted before anything is decoded.
#[test]
fn hostile_batches_cost_little_and_the_server_keeps_serving() {
    let server = Example::start("jsonrpc", &["127.0.0.1:0"]);
    let url = format!("{}/", server.url());
    server.python_within_memory(
        PY_HOSTILE,
        &[&url],
        64.0,
        "4 x 1 MiB batches and 4 x 1 MiB object calls at once",
    );
}

/// An answer that would pass `--max-answer` is replaced by an internal error with its id;
/// the other answers of its batch are sent.
#[test]
fn answers_over_the_cap_become_errors() {
    let server = Example::start("jsonrpc", &["127.0.0.1:0", "--max-answer", "4096"]);
    let url = format!("{}/", server.url());
    let big = "x".repeat(5000);
    let over = post(
        &url,
        &json!({"jsonrpc": "2.0", "method": "echo", "params": [big], "id": 7}).to_string(),
    )
    .json();
    assert_eq!(
        over["error"]["code"],
        json!(-32603),
        "{:.300}",
        over.to_string()
    );
    assert_eq!(
        over["error"]["data"],
        json!("the answer would pass 4096 bytes")
    );
    assert_eq!(over["id"], json!(7));
    let batch = json!([
        {"jsonrpc": "2.0", "method": "echo", "params": ["small"], "id": 1},
        {"jsonrpc": "2.0", "method": "echo", "params": [big], "id": 2},
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 3},
    ]);
    let reply = post(&url, &batch.to_string());
    assert!(reply.body.len() <= 4096 + 200, "{} bytes", reply.body.len());
    assert_eq!(
        normalized(reply.json()),
        normalized(json!([
            {"jsonrpc": "2.0", "result": ["small"], "id": 1},
            {"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error", "data": "the answer would pass 4096 bytes"}, "id": 2},
            {"jsonrpc": "2.0", "result": 3, "id": 3},
        ]))
    );
    assert_eq!(server.stop(Signal::SIGTERM).code(), Some(0));
}

/// Issue 12 item 8: see [`example::sigterm_as_soon_as_serving`].
#[test]
fn sigterm_as_soon_as_serving_is_a_graceful_stop() {
    example::sigterm_as_soon_as_serving("jsonrpc", 20);
}
