//! The websocket example with real clients: Python's `websockets` package (broadcast to three
//! clients, binary echo, ping, the close handshake, a client that vanishes), once a real
//! headless Chromium from Debian's packages, driven through chromedriver's W3C HTTP API, and
//! hostile clients on raw sockets (issue 12): clients that never read, frames over the message
//! limit, idle clients and unfinished messages, each test printing its figure against its bound.

#![cfg(feature = "http")]

mod example;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use example::{assert_python_ok, curl, python, python_output, Example};
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
    // The upgrade request lives as long as the session, so it may carry no body to hold.
    let with_body = curl(&[
        "-X",
        "GET",
        "--data",
        "held for as long as the chat lasts",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        &format!("{}/ws", chat.url()),
    ]);
    assert_eq!(with_body.status, 400, "{with_body:?}");
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}

/// Drives Chromium through chromedriver's W3C WebDriver HTTP API with nothing but urllib,
/// while a Python `websockets` client sits in the same room.
const PY_BROWSER: &str = r##"
import contextlib, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
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
    # The browser's profile goes with it. Chromium's last processes may still be writing
    # into it as they exit: retry until it is gone (bounded).
    removal_deadline = time.monotonic() + 10
    while os.path.exists(profile) and time.monotonic() < removal_deadline:
        shutil.rmtree(profile, ignore_errors=True)
assert not os.path.exists(profile), "the Chromium profile was left behind: " + profile
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
    let before = chromium_profiles();
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    python(PY_BROWSER, &[&chat.address]);
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
    let left: Vec<_> = chromium_profiles().difference(&before).cloned().collect();
    assert!(left.is_empty(), "Chromium profiles left behind: {left:?}");
}

/// The `chromium-profile-*` directories in the temporary directory (Python's
/// `tempfile.mkdtemp` puts them there).
fn chromium_profiles() -> BTreeSet<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("chromium-profile-"))
        })
        .collect()
}

// ----- Hostile clients (issue 12, items 1-3): each bound, with its figure. -----

/// Raw-socket helpers for the hostile clients: the upgrade by hand, frames by hand (masked with
/// a zero key, which leaves the payload as it is), and reading the server's frames.
const PY_RAW: &str = r#"
import socket, struct, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
ADDRESS = (host, int(port))
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")

def upgraded(rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(ADDRESS)
    s.sendall(UPGRADE)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)
        assert byte, "closed during the handshake"
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s

def frame_header(opcode, length, fin=True):
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + b"\0\0\0\0"

def frame(opcode, payload, fin=True):
    return frame_header(opcode, len(payload), fin) + payload

def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data

def broadcast_rounds(a, b, message, rounds):
    """`a` sends `message` `rounds` times and both `a` and `b` must get each one back (20 s
    each); prints the longest round as longest_round_ms."""
    longest = 0
    for i in range(rounds):
        t = time.monotonic()
        a.send(message)
        assert a.recv(timeout=20) == message
        assert b.recv(timeout=20) == message
        longest = max(longest, time.monotonic() - t)
    print("longest_round_ms=%.1f" % (longest * 1000))

def read_frame(s):
    first, second = recv_exactly(s, 2)
    length = second & 0x7f
    if length == 126:
        length = struct.unpack("!H", recv_exactly(s, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exactly(s, 8))[0]
    return first & 0x0f, recv_exactly(s, length)

def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

def until_closed(s, deadline):
    """Reads until end of file; False if the deadline passed first."""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
    return False
"#;

/// Runs a Python client script (with [`PY_RAW`] before it) against `address`, checks that it
/// ended with `ok`, and returns its `name=value` figure lines.
fn python_figures(script: &str, address: &str) -> Vec<(String, f64)> {
    let out = python_output(&format!("{PY_RAW}\n{script}"), &[address]);
    assert_python_ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(name, value)| Some((name.to_owned(), value.trim().parse().ok()?)))
        .collect()
}

fn figure(figures: &[(String, f64)], name: &str) -> f64 {
    figures
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in {figures:?}"))
}

/// Issue 12 item 1: a client pipelines page requests before its upgrade and never reads, so
/// that the server's writes block in the middle of its `101` (checked from the kernel's
/// counters: bytes the server wrote, in our receive queue plus its unacknowledged send queue);
/// meanwhile two clients broadcast 48 MiB. (Clients that never read after their `101` are the
/// next test's.) Where the writes block is found by a probe, then hit with a mix of pages,
/// 404s and HEADs (a small MSS and receive buffer keep that point near 200 KB and steady); a
/// miss is retried, at most 20 times.
const PY_PIPELINERS: &str = r#"
import fcntl, termios
from websockets.sync.client import connect
GET = b"GET / HTTP/1.1\r\nHost: chat\r\n\r\n"
MISSING = b"GET /missing HTTP/1.1\r\nHost: chat\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: chat\r\n\r\n"

def response_size(request, head_only=False):
    with socket.create_connection(ADDRESS, timeout=10) as s:
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            byte = s.recv(1)
            assert byte, "closed before the end of the head"
            head += byte
        if head_only:
            return len(head)
        return len(head) + int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])

def fionread(s):
    return struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]

def server_unacked(s):
    # /proc/net/tcp: the server's side of this connection, its tx_queue (written, not acked).
    mine = s.getsockname()[1]
    for line in open("/proc/net/tcp").readlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == ADDRESS[1] and int(f[2].split(":")[1], 16) == mine:
            return int(f[4].split(":")[0], 16)
    return 0

def pipelined(requests):
    """A client with a small window that sends `requests` and never reads; returns it and how
    many bytes the server wrote to it before its writes blocked (bounded poll)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)
    s.connect(ADDRESS)
    threading.Thread(target=lambda: s.sendall(requests), daemon=True).start()
    written, same, deadline = -1, 0, time.monotonic() + 10
    while same < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the kernel's counters, bounded by the deadline
        now = fionread(s) + server_unacked(s)
        same = same + 1 if now == written else 0
        written = now
    return s, written

P, F, H = response_size(GET), response_size(MISSING), response_size(HEAD, head_only=True)
S = response_size(UPGRADE, head_only=True)
probe, target = pipelined(GET * 2000)
probe.close()
stuck = None
for attempt in range(20):
    # Pages, 404s and HEADs adding up to just below where the server's writes block, so that
    # the block falls in the middle of the 101 that follows them.
    goal = target - S // 2
    prefix, mix = max(
        (a * P + b * F + c * H, (a, b, c))
        for b in range(40) for c in range(40)
        for a in [(goal - b * F - c * H) // P] if a >= 0
    )
    s, written = pipelined(GET * mix[0] + MISSING * mix[1] + HEAD * mix[2] + UPGRADE)
    if prefix <= written < prefix + S:
        stuck = s
        break
    s.close()
    if written < prefix:
        target = written
assert stuck, "could not make a 101 wait"
print("stuck_after_attempts=%d" % (attempt + 1))
url = "ws://" + sys.argv[1] + "/ws"
message = "x" * (256 * 1024)
with connect(url, open_timeout=10, max_size=None) as a, connect(url, open_timeout=10, max_size=None) as b:
    broadcast_rounds(a, b, message, 192)
print("ok")
"#;

#[test]
fn a_client_that_pipelines_before_its_upgrade_and_never_reads_costs_bounded_memory() {
    const BOUND_MIB: f64 = 32.0;
    const BOUND_ROUND_MS: f64 = 1000.0;
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    let figures = python_figures(PY_PIPELINERS, &chat.address);
    let peak = chat.peak_rss_mib();
    let longest = figure(&figures, "longest_round_ms");
    let attempts = figure(&figures, "stuck_after_attempts");
    eprintln!(
        "peak RSS {peak:.1} MiB (bound {BOUND_MIB} MiB) while 48 MiB was broadcast to a client \
         whose 101 could not go out (found in {attempts} attempts)"
    );
    eprintln!("longest broadcast round {longest:.1} ms (bound {BOUND_ROUND_MS} ms)");
    assert!(peak < BOUND_MIB, "peak RSS {peak:.1} MiB");
    assert!(longest < BOUND_ROUND_MS, "a broadcast took {longest:.1} ms");
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}

/// Issue 12 item 2: one client that never reads, while two others chat.
const PY_SLOW_CONSUMER: &str = r#"
from websockets.sync.client import connect
silent = upgraded(rcvbuf=4096)
url = "ws://" + sys.argv[1] + "/ws"
message = "y" * (64 * 1024)
with connect(url, open_timeout=10) as a, connect(url, open_timeout=10) as b:
    broadcast_rounds(a, b, message, 300)
    # The silent client was dropped: what was queued for it ends in end of file.
    started = time.monotonic()
    assert until_closed(silent, started + 10), "the silent client is still connected"
    print("dropped_after_s=%.3f" % (time.monotonic() - started))
    a.send("still chatting")
    assert b.recv(timeout=10) == "still chatting"
print("ok")
"#;

#[test]
fn a_client_that_never_reads_stalls_no_broadcast_and_is_dropped() {
    const BOUND_ROUND_MS: f64 = 1000.0;
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    let figures = python_figures(PY_SLOW_CONSUMER, &chat.address);
    let longest = figure(&figures, "longest_round_ms");
    eprintln!(
        "longest broadcast round with a client that never reads: {longest:.1} ms (bound {BOUND_ROUND_MS} ms)"
    );
    assert!(longest < BOUND_ROUND_MS, "a broadcast took {longest:.1} ms");
    let dropped = figure(&figures, "dropped_after_s");
    eprintln!("the client that never reads was dropped: end of file {dropped:.3} s after the last round (bound 10 s)");
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}

/// Issue 12 item 3: eight clients each start one 16 MiB frame, send 4 MiB of it and wait; one
/// sends a fragmented message that grows past the limit.
const PY_BIG_FRAMES: &str = r#"
def big_frame(results):
    s = upgraded()
    sender = threading.Thread(target=lambda: s.sendall(frame_header(2, 16 << 20) + bytes(4 << 20)),
                              daemon=True)
    sender.start()
    try:
        opcode, payload = read_frame(s)
        results.append((opcode, close_code(payload)))
    except Exception as e:
        results.append(("no close frame", repr(e)))

results = []
clients = [threading.Thread(target=big_frame, args=(results,)) for _ in range(8)]
started = time.monotonic()
for c in clients:
    c.start()
for c in clients:
    c.join()
print("refused_within_s=%.3f" % (time.monotonic() - started))
assert results == [(8, 1009)] * 8, results

# Fragments of 512 KiB: the third takes the message past 1 MiB.
s = upgraded()
try:
    for i in range(3):
        s.sendall(frame(0 if i else 1, b"z" * (512 << 10), fin=False))
except OSError:
    pass
opcode, payload = read_frame(s)
assert (opcode, close_code(payload)) == (8, 1009), (opcode, payload)
print("ok")
"#;

#[test]
fn a_frame_over_the_message_limit_is_refused_with_1009_and_not_held() {
    const BOUND_MIB: f64 = 24.0;
    let chat = Example::start("websocket", &["127.0.0.1:0"]);
    let figures = python_figures(PY_BIG_FRAMES, &chat.address);
    let peak = chat.peak_rss_mib();
    let within = figure(&figures, "refused_within_s");
    eprintln!(
        "peak RSS {peak:.1} MiB (bound {BOUND_MIB} MiB) after 8 clients sent 4 MiB of a 16 MiB frame; refused within {within:.2} s"
    );
    assert!(peak < BOUND_MIB, "peak RSS {peak:.1} MiB");
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}

/// Issue 12 item 3: the idle timeout after the upgrade (1 s here).
const PY_IDLE: &str = r#"
from websockets.sync.client import connect
# Silent and deaf: pinged at half the idle timeout, closed with 1001 at all of it.
s = upgraded()
started = time.monotonic()
seen = []
while True:
    opcode, payload = read_frame(s)
    seen.append((opcode, round(time.monotonic() - started, 2)))
    if opcode == 8:
        assert close_code(payload) == 1001, payload
        break
assert seen[0][0] == 9, seen
assert until_closed(s, time.monotonic() + 5), "still open after its close frame"
print("idle_closed_after_s=%.3f" % (time.monotonic() - started))

# An unfinished fragmented message, while the client keeps pinging: closed with 1008.
s = upgraded()
started = time.monotonic()
s.sendall(frame(1, b"the start of a message", fin=False))
s.settimeout(0.2)
code = None
while time.monotonic() < started + 5 and code is None:
    try:
        opcode, payload = read_frame(s)
        if opcode == 8:
            code = close_code(payload)
    except socket.timeout:
        s.sendall(frame(9, b"still here"))
assert code == 1008, code
print("unfinished_closed_after_s=%.3f" % (time.monotonic() - started))

# A live client answers the server's pings (websockets does it by itself) and stays.
with connect("ws://" + sys.argv[1] + "/ws", open_timeout=10) as ws:
    try:
        ws.recv(timeout=2.5)
        raise AssertionError("a message came from nowhere")
    except TimeoutError:
        pass
    ws.send("after 2.5 s")
    assert ws.recv(timeout=10) == "after 2.5 s"
print("ok")
"#;

#[test]
fn an_idle_client_is_closed_at_the_idle_timeout_and_a_live_one_stays() {
    const IDLE_S: f64 = 1.0;
    const SLACK_S: f64 = 0.75;
    let chat = Example::start("websocket", &["127.0.0.1:0", "--idle-timeout", "1"]);
    let figures = python_figures(PY_IDLE, &chat.address);
    for name in ["idle_closed_after_s", "unfinished_closed_after_s"] {
        let after = figure(&figures, name);
        eprintln!(
            "{name} {after:.2} s (idle timeout {IDLE_S} s, bound {} s)",
            IDLE_S + SLACK_S
        );
        assert!(
            (IDLE_S..IDLE_S + SLACK_S).contains(&after),
            "{name} {after:.2} s"
        );
    }
    assert_eq!(chat.stop(Signal::SIGTERM).code(), Some(0));
}
