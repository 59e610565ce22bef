//! The xmlrpc example with Python's own client, `xmlrpc.client.ServerProxy`, as a real
//! process: every XML-RPC type round-trips through `echo`, faults are `xmlrpc.client.Fault`,
//! multicall works, and malformed XML does not stop the server.

#![cfg(feature = "http")]

mod example;

use example::{curl, python, Example};
use nix::sys::signal::Signal;

const PY_TYPES: &str = r#"
import sys, xmlrpc.client as x
url = sys.argv[1]
for builtin in (False, True):
    p = x.ServerProxy(url + "/RPC2", allow_none=True, use_builtin_types=builtin)
    assert p.add(2, 3) == 5
    assert p.add(2.5, -1) == 1.5
    assert p.add(2**31 - 1, 1) == 2**31  # answered as <i8>
    binary = bytes(range(256)) * 3  # wrapped at 76 columns by Python
    values = [
        0, -7, 2**31 - 1, -2**31,
        True, False,
        1.5, -0.25, 1e300, 0.1,
        "", "hello", "  spaces kept  ", "<&> \"quotes\" 'apostrophes' ünïcödé ☃", "line\nbreak",
        x.Binary(binary) if not builtin else binary, x.Binary(b"") if not builtin else b"",
        x.DateTime("20240102T03:04:05"),
        [], [1, "two", 3.0, False],
        {}, {"a": 1, "b": [True, {"c": "d", "e": [[], {}]}], "empty": ""},
        [[[[["deep"]]]]],
        None,
    ]
    for v in values:
        got = p.echo(v)
        if builtin and isinstance(v, x.DateTime):
            v = v.value
            got = got.strftime("%Y%m%dT%H:%M:%S")
        assert got == v and type(got) == type(v), (v, got)
# The same calls on "/".
assert x.ServerProxy(url + "/").add(1, 1) == 2
print("ok")
"#;

#[test]
fn every_type_round_trips_through_echo() {
    let server = Example::start("xmlrpc", &["127.0.0.1:0"]);
    python(PY_TYPES, &[&server.url()]);
    assert_eq!(server.stop(Signal::SIGTERM).code(), Some(0));
}

const PY_FAULTS: &str = r#"
import sys, urllib.request, xmlrpc.client as x
url = sys.argv[1] + "/RPC2"
p = x.ServerProxy(url)

def fault(call, code):
    try:
        call()
    except x.Fault as f:
        assert f.faultCode == code, (f.faultCode, f.faultString)
        return f.faultString
    raise AssertionError("no fault")

assert "nosuch" in fault(lambda: p.nosuch(1), -32601)
fault(lambda: p.add(1), -32602)
fault(lambda: p.add("a", 1), -32602)

names = p.system.listMethods()
assert set(names) >= {"add", "echo", "system.listMethods", "system.methodHelp", "system.multicall"}, names
assert "a + b" in p.system.methodHelp("add")
assert p.system.methodSignature("add") == [["int", "int", "int"]]
fault(lambda: p.system.methodHelp("nosuch"), -32601)

m = x.MultiCall(p)
m.add(1, 2)
m.echo({"k": [1, 2]})
m.nosuch()
m.add(1)
results = m()
assert results[0] == 3 and results[1] == {"k": [1, 2]}
for i, code in ((2, -32601), (3, -32602)):
    try:
        results[i]
    except x.Fault as f:
        assert f.faultCode == code, f
    else:
        raise AssertionError("no fault for call %d" % i)
raw = x.dumps(([{"methodName": "system.multicall", "params": [[]]}],), "system.multicall")
reply = urllib.request.urlopen(urllib.request.Request(url, raw.encode()), timeout=10).read()
assert x.loads(reply)[0][0][0]["faultCode"] == -32600

def post(body):
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/xml"
        return r.read()

for bad, code in [
    (b"<methodCall><methodName>add</methodName>", -32700),       # cut short
    (b"<methodCall><methodName>add</wrong></methodCall>", -32700),  # mismatched tags
    (b"\xff\xfe not utf-8", -32700),
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall/>", -32700),    # no DTDs, no entity games
    (b"<methodCall><methodName>echo</methodName><params><param><value>&zzz;</value></param></params></methodCall>", -32700),
    (b"<a>" * 100 + b"</a>" * 100, -32700),                       # nested too deep
    (b"<methodCall><methodName>add</methodName><params><param><value><i8>4611686018427387904</i8></value></param><param><value><i8>4611686018427387904</i8></value></param></params></methodCall>", -32603),  # overflow
    (b"<notACall/>", -32600),
    (b"<methodCall><params/></methodCall>", -32600),
    (b"<methodCall><methodName>echo</methodName><params><param><value><int>x</int></value></param></params></methodCall>", -32600),
    (b"<methodCall><methodName>echo</methodName><params><param><value><blob/></value></param></params></methodCall>", -32600),
]:
    try:
        x.loads(post(bad))
    except x.Fault as f:
        assert f.faultCode == code, (bad, f.faultCode, f.faultString)
    else:
        raise AssertionError(bad)

# Entities, character references and CDATA decode as XML says.
body = b"<?xml version='1.0'?><methodCall><methodName>echo</methodName><params><param><value>a &lt;&amp;&#62;&#x263A; <![CDATA[<raw>]]></value></param></params></methodCall>"
assert x.loads(post(body))[0][0] == "a <&>\u263a <raw>"
# Still serving after all of that.
assert p.add(20, 22) == 42
print("ok")
"#;

#[test]
fn faults_multicall_and_malformed_xml_with_python() {
    let server = Example::start("xmlrpc", &["127.0.0.1:0"]);
    python(PY_FAULTS, &[&server.url()]);
    let get = curl(&[&format!("{}/RPC2", server.url())]);
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
    assert_eq!(curl(&[&format!("{}/other", server.url())]).status, 404);
    assert_eq!(server.stop(Signal::SIGINT).code(), Some(0));
}

// ----- Hostile clients (issue 12): what one request may cost. -----

/// Many clients at once (`at_once` is [`example::PY_AT_ONCE`]) send multicalls and calls
/// that would decode into large trees; each gets a fault naming the limit, then a probe call
/// must still be answered.
const PY_HOSTILE: &str = r#"
import sys, urllib.request, xmlrpc.client as x
url = sys.argv[1] + "/RPC2"
p = x.ServerProxy(url)
MiB = 1024 * 1024

def post(body):
    with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as r:
        assert r.status == 200, r.status
        return r.read()

def fault(body, code, words):
    try:
        x.loads(post(body))
    except x.Fault as f:
        assert f.faultCode == code and words in f.faultString, (f.faultCode, f.faultString)
    else:
        raise AssertionError("no fault")

def call(method, params):
    return (b"<?xml version='1.0'?><methodCall><methodName>" + method + b"</methodName><params><param>"
            + params + b"</param></params></methodCall>")

# Eight 1 MiB multicalls of 131,000 calls that are not structs (the 26x of issue 12).
entries = b"<value/>" * ((MiB - 200) // 8)
multicall = call(b"system.multicall", b"<value><array><data>" + entries + b"</data></array></value>")
assert MiB - 200 < len(multicall) <= MiB, len(multicall)
at_once(8, lambda i: fault(multicall, -32400, "10000 XML elements"))
# Eight 1 MiB echo calls of one array of empty elements.
echo = call(b"echo", b"<value><array><data>" + entries + b"</data></array></value>")
at_once(8, lambda i: fault(echo, -32400, "10000 XML elements"))
# A multicall over the call cap, though small: none of its calls runs.
m = x.MultiCall(p)
for i in range(101):
    m.add(i, 1)
try:
    m()
except x.Fault as f:
    assert f.faultCode == -32400 and "at most 100 calls" in f.faultString, f
else:
    raise AssertionError("101 calls served")
# At the cap it is served.
m = x.MultiCall(p)
for i in range(100):
    m.add(i, 1)
assert list(m()) == list(range(1, 101))
# Still serving.
assert p.add(20, 22) == 42
print("ok")
"#;

/// Issue 12 item 4: multicall amplified 26x (475 MB for 8 concurrent requests). Now the
/// elements of a request and the calls of a multicall are counted before anything runs.
#[test]
fn hostile_multicalls_cost_little_and_the_server_keeps_serving() {
    let server = Example::start("xmlrpc", &["127.0.0.1:0"]);
    let url = server.url();
    server.python_within_memory(
        PY_HOSTILE,
        &[&url],
        64.0,
        "8 x 1 MiB multicalls and 8 x 1 MiB echo calls at once",
    );
}

const PY_ANSWER_CAP: &str = r#"
import sys, xmlrpc.client as x
p = x.ServerProxy(sys.argv[1] + "/RPC2")
big = "<&>" * 2000  # 6000 bytes, 14000 once escaped
try:
    p.echo(big)
except x.Fault as f:
    assert f.faultCode == -32400 and f.faultString == "the answer would pass 4096 bytes", f
else:
    raise AssertionError("no fault")
assert p.echo("small") == "small"
m = x.MultiCall(p)
m.echo("small")
m.echo(big)
m.add(1, 2)
results = m()
assert results[0] == "small" and results[2] == 3
try:
    results[1]
except x.Fault as f:
    assert f.faultCode == -32400, f
else:
    raise AssertionError("no fault for the big one")
print("ok")
"#;

/// A result that would pass `--max-answer` is a fault; in a multicall, only that call's.
#[test]
fn answers_over_the_cap_become_faults() {
    let server = Example::start("xmlrpc", &["127.0.0.1:0", "--max-answer", "4096"]);
    python(PY_ANSWER_CAP, &[&server.url()]);
    assert_eq!(server.stop(Signal::SIGTERM).code(), Some(0));
}

/// Issue 12 item 8: see [`example::sigterm_as_soon_as_serving`].
#[test]
fn sigterm_as_soon_as_serving_is_a_graceful_stop() {
    example::sigterm_as_soon_as_serving("xmlrpc", 20);
}
