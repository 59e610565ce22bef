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
