//! The websocket example with real clients: Python's `websockets` package (broadcast to three
//! clients, binary echo, ping, the close handshake, a client that vanishes), and once a real
//! headless Chromium from Debian's packages, driven through chromedriver's W3C HTTP API.

#![cfg(feature = "http")]

mod example;

use std::path::Path;

use example::{curl, python, Example};
use nix::sys::signal::Signal;

const PY_ROOM: &str = r#"
import contextlib, socket, struct, sys
from websockets.sync.client import connect
url = "ws://" + sys.argv[1] + "/ws"
clients_to_close = contextlib.ExitStack()

def join():
    return clients_to_close.enter_context(connect(url, open_timeout=10, close_timeout=10))

a, b, c = join(), join(), join()
clients = {"a": a, "b": b, "c": c}
# Every text message reaches every client, the sender included.
for name, ws in clients.items():
    ws.send("hello from " + name)
expected = sorted("hello from " + n for n in clients)
for name, ws in clients.items():
    got = sorted(ws.recv(timeout=10) for _ in clients)
    assert got == expected, (name, got)

# Binary goes back to the sender only: the others' next message is the text after it.
a.send(b"\x00\x01binary\xff")
assert a.recv(timeout=10) == b"\x00\x01binary\xff"
c.send("after binary")
for ws in (a, b, c):
    assert ws.recv(timeout=10) == "after binary"

# Ping gets a pong.
pong = b.ping(b"are you there")
assert pong.wait(10), "no pong"

# A client that vanishes: its TCP connection is reset, with no close frame.
gone = join()
gone.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
gone.socket.close()
# The rest of the room is undisturbed.
for i in range(3):
    a.send("still here %d" % i)
    for ws in (a, b, c):
        assert ws.recv(timeout=10) == "still here %d" % i

# The close handshake: the server answers our close frame with its own.
b.close(code=1000, reason="bye")
assert b.close_code == 1000, b.close_code
a.send("after b left")
for ws in (a, c):
    assert ws.recv(timeout=10) == "after b left"
a.close()
c.close()
assert a.close_code == 1000 and c.close_code == 1000
clients_to_close.close()
print("ok")
"#;

#[test]
fn broadcast_binary_ping_close_and_a_vanished_client_with_python() {
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    python(PY_ROOM, &[&chat.address]);
    // The page and the HTTP around the endpoint.
    let page = curl(&[&chat.url()]);
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("new WebSocket(`ws://${location.host}/ws`)"));
    let plain = curl(&[&format!("{}/ws", chat.url())]);
    assert_eq!(
        (plain.status, plain.header("upgrade")),
        (426, Some("websocket"))
    );
    let old = curl(&[
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 8",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        &format!("{}/ws", chat.url()),
    ]);
    assert_eq!(
        (old.status, old.header("sec-websocket-version")),
        (426, Some("13"))
    );
    assert_eq!(
        curl(&["-X", "POST", &format!("{}/ws", chat.url())]).status,
        405
    );
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}

/// Drives Chromium through chromedriver's W3C WebDriver HTTP API with nothing but urllib,
/// while a Python `websockets` client sits in the same room.
const PY_BROWSER: &str = r##"
import contextlib, json, os, socket, subprocess, sys, tempfile, time, urllib.request
from websockets.sync.client import connect

address = sys.argv[1]
DEADLINE = time.monotonic() + 45

def until(what, check):
    while time.monotonic() < DEADLINE:
        value = check()
        if value:
            return value
        time.sleep(0.05)  # polling a browser, bounded by DEADLINE
    raise AssertionError("timed out waiting for " + what)

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
driver = subprocess.Popen(["/usr/bin/chromedriver", "--port=%d" % port],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:%d" % port

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["value"]

def ready():
    try:
        return call("GET", "/status")["ready"]
    except OSError:
        return False

profile = tempfile.mkdtemp(prefix="chromium-profile-")
driver_stack = contextlib.ExitStack()
try:
    until("chromedriver", ready)
    session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--user-data-dir=" + profile],
        },
    }}})["sessionId"]
    s = "/session/" + session

    def script(code):
        return call("POST", s + "/execute/sync", {"script": code, "args": []})

    def element(css):
        found = call("POST", s + "/element", {"using": "css selector", "value": css})
        return next(iter(found.values()))

    call("POST", s + "/url", {"url": "http://" + address + "/"})
    until("the page's socket to open",
          lambda: script("return document.getElementById('status').textContent") == "connected")

    other = driver_stack.enter_context(
        connect("ws://" + address + "/ws", open_timeout=10, close_timeout=10))
    # Typed into the page and sent with its button...
    call("POST", s + "/element/" + element("#text") + "/value", {"text": "hello from chromium"})
    call("POST", s + "/element/" + element("button") + "/click", {})
    # ...it reaches the other client...
    assert other.recv(timeout=10) == "hello from chromium"
    # ...and comes back into the page, followed by what the other client says.
    other.send("hello from python")
    log = lambda: script("return [...document.querySelectorAll('#log li')].map(li => li.textContent)")
    until("both messages in the page", lambda: log() == ["hello from chromium", "hello from python"])
    other.close()
    call("DELETE", s)
finally:
    driver_stack.close()
    driver.terminate()
    driver.wait(10)
print("ok")
"##;

#[test]
fn a_real_headless_chromium_chats_with_a_python_client() {
    // No skipping: .ci/run installs both, so a missing browser is a failure to see.
    for needed in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(needed).exists(),
            "{needed} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    }
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    python(PY_BROWSER, &[&chat.address]);
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}
