//! The echo and rest examples over TLS, run as users run them (`--tls-cert`, `--tls-key`),
//! with real clients: `openssl s_client` (SNI, ALPN), `curl --cacert`, Python's `requests`
//! with the test CA; the flags' errors; and a certificate reloaded on SIGHUP in prefork mode.

#![cfg(all(feature = "tls", feature = "http"))]

mod example;
#[path = "util/pki.rs"]
mod pki;

use std::process::Command;
use std::time::{Duration, Instant};

use example::{curl, python, run, Example, CLIENT_DEADLINE};
use nix::sys::signal::Signal;
use pki::Pki;

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `openssl s_client` to `port` with SNI `localhost` and the test CA, sending `input`; what it
/// printed.
fn s_client(port: u16, ca: &str, alpn: Option<&str>, input: &str) -> String {
    let mut command = Command::new("openssl");
    command.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-CAfile",
        ca,
        "-verify_return_error",
        "-ign_eof",
    ]);
    if let Some(alpn) = alpn {
        command.args(["-alpn", alpn]);
    }
    // `run` gives the child no stdin; the request goes through a shell's here-string.
    let line = format!(
        "printf '{}' | {}",
        input.replace('\n', "\\n").replace('\r', "\\r"),
        std::iter::once("openssl".to_owned())
            .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = run(Command::new("sh").args(["-c", &line]), CLIENT_DEADLINE);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "s_client failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn echo_over_tls_with_openssl_s_client() {
    let pki = Pki::new();
    let leaf = pki.server("echo", 21, false);
    let echo = Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--read-timeout",
            "1",
            "--tls-cert",
            &path(&leaf.cert),
            "--tls-key",
            &path(&leaf.key),
        ],
    );
    let port: u16 = echo.address.rsplit(':').next().unwrap().parse().unwrap();
    // The server closes the connection after 1 s of silence (--read-timeout), ending s_client.
    let out = s_client(port, &path(&pki.ca), None, "hello over tls\n");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("hello over tls"), "the echo: {out}");
    assert!(out.contains("No ALPN negotiated"), "{out}");
    assert!(echo.stop(Signal::SIGTERM).success());
}

#[test]
fn rest_over_https_with_s_client_alpn_curl_and_requests() {
    let pki = Pki::new();
    let leaf = pki.server("rest", 22, false);
    let rest = Example::start(
        "rest",
        &[
            "127.0.0.1:0",
            "--tls-cert",
            &path(&leaf.cert),
            "--tls-key",
            &path(&leaf.key),
        ],
    );
    let port: u16 = rest.address.rsplit(':').next().unwrap().parse().unwrap();
    let base = format!("https://localhost:{port}");

    let out = s_client(
        port,
        &path(&pki.ca),
        Some("http/1.1"),
        "GET /items HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");

    let created = curl(&[
        "--cacert",
        &path(&pki.ca),
        "-X",
        "POST",
        "-d",
        r#"{"name": "apple"}"#,
        &format!("{base}/items"),
    ]);
    assert_eq!(created.status, 201, "{created:?}");
    // Without the CA, curl refuses the server (exit 60: the peer's certificate is not trusted).
    let refused = run(
        Command::new("curl").args(["-sS", &format!("{base}/items")]),
        CLIENT_DEADLINE,
    );
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");

    // requests, one keep-alive session: several requests over one TLS connection.
    python(
        r#"
import requests, sys
base, ca = sys.argv[1:3]
with requests.Session() as s:
    for i in range(5):
        r = s.get(base + "/items/1", verify=ca, timeout=10)
        assert r.status_code == 200 and r.json()["name"] == "apple", r.text
    r = s.post(base + "/items", json={"name": "pear"}, verify=ca, timeout=10)
    assert r.status_code == 201, r.text
print("ok")
"#,
        &[&base, &path(&pki.ca)],
    );
    assert!(rest.stop(Signal::SIGTERM).success());
}

#[test]
fn tls_flags_come_in_pairs_and_bad_files_are_named() {
    let pki = Pki::new();
    let leaf = pki.server("lonely", 23, false);
    let binary = example::binary("echo");
    let alone = run(
        Command::new(&binary).args(["tcp", "127.0.0.1:0", "--tls-cert", &path(&leaf.cert)]),
        CLIENT_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success());
    assert!(stderr.contains("--tls-key"), "{stderr}");

    let missing = pki.dir.path().join("missing.key");
    let bad = run(
        Command::new(&binary).args([
            "tcp",
            "127.0.0.1:0",
            "--tls-cert",
            &path(&leaf.cert),
            "--tls-key",
            &path(&missing),
        ]),
        CLIENT_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.key"), "{stderr}");
}

/// The serial number of the certificate the server at `port` presents now.
const PY_SERIAL: &str = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        print(int(tls.getpeercert()["serialNumber"], 16))
"#;

fn serial(port: u16, ca: &str) -> String {
    let out = run(
        example::python3().args(["-c", PY_SERIAL, &port.to_string(), ca]),
        CLIENT_DEADLINE,
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn prefork_reloads_the_certificate_on_sighup() {
    let pki = Pki::new();
    let leaf = pki.server("live", 31, false);
    let echo = Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--mode",
            "prefork",
            "--workers",
            "2",
            "--tls-cert",
            &path(&leaf.cert),
            "--tls-key",
            &path(&leaf.key),
        ],
    );
    let port: u16 = echo.address.rsplit(':').next().unwrap().parse().unwrap();
    let ca = path(&pki.ca);
    assert_eq!(serial(port, &ca), "31");
    // Files that do not load: the reload is cancelled, the old certificate serves on.
    std::fs::write(&leaf.key, "not a key\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(echo.pid() as i32),
        Signal::SIGHUP,
    )
    .unwrap();
    // The new certificate over the old files, then HUP: new connections get it.
    let new = pki.server("next", 32, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(
        serial(port, &ca),
        "31",
        "a failed reload keeps the old certificate"
    );
    std::fs::copy(&new.cert, &leaf.cert).unwrap();
    std::fs::copy(&new.key, &leaf.key).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(echo.pid() as i32),
        Signal::SIGHUP,
    )
    .unwrap();
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = serial(port, &ca);
        if seen == "32" {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    assert_eq!(seen, "32", "the reloaded certificate within 30 s");
    assert!(echo.stop(Signal::SIGTERM).success());
}

#[test]
fn wss_chat_two_python_clients_see_each_others_messages() {
    let pki = Pki::new();
    let leaf = pki.server("chat", 41, false);
    let chat = Example::start(
        "websocket",
        &[
            "127.0.0.1:0",
            "--tls-cert",
            &path(&leaf.cert),
            "--tls-key",
            &path(&leaf.key),
        ],
    );
    let port: u16 = chat.address.rsplit(':').next().unwrap().parse().unwrap();
    let page = curl(&[
        "--cacert",
        &path(&pki.ca),
        &format!("https://localhost:{port}/"),
    ]);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("wss://${location.host}/ws"),
        "{}",
        page.body
    );
    python(
        r#"
import ssl, sys
from websockets.sync.client import connect
uri, ca = sys.argv[1:3]
context = ssl.create_default_context(cafile=ca)
with connect(uri, ssl=context, open_timeout=10) as alice, connect(uri, ssl=context, open_timeout=10) as bob:
    alice.send("hello from alice")
    assert alice.recv(timeout=10) == "hello from alice"
    assert bob.recv(timeout=10) == "hello from alice"
    bob.send("hi alice")
    assert bob.recv(timeout=10) == "hi alice"
    assert alice.recv(timeout=10) == "hi alice"
    # Binary is echoed to the sender only; ping is answered: both over TLS.
    bob.send(b"\x00\x01")
    assert bob.recv(timeout=10) == b"\x00\x01"
    bob.ping().wait(10)
print("ok")
"#,
        &[&format!("wss://localhost:{port}/ws"), &path(&pki.ca)],
    );
    assert!(chat.stop(Signal::SIGTERM).success());
}
