//! The `websocket` example's opening handshake (`examples/protocol/websocket.rs`, the very
//! file the example includes), reached as the example reaches it: through the HTTP layer's
//! real keep-alive loop (`server_core::http::fuzz_connection`), so the upgrade request is
//! parsed, checked and answered, and the bytes after it handed over, as on a socket. Those
//! bytes then go through the example's `FrameWatch` (the same file), whole and a byte at a
//! time, which must agree.
//!
//! Run: `scripts/fuzz.sh websocket_handshake` (or `cargo +nightly fuzz run websocket_handshake`
//! in `fuzz/`).

#![no_main]

use std::cell::RefCell;
use std::io::Read;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use server_core::http::{fuzz_connection, Http, HttpHandler, Request, Response, Upgraded};
use server_core::{HandleResult, Handler, ServerContext, TcpServer};

#[path = "../../examples/protocol/websocket.rs"]
mod protocol;

struct Ws;

impl Handler for Ws {
    type State = ();

    fn new(_: &ServerContext) -> Self {
        Ws
    }
}

impl HttpHandler for Ws {
    fn respond(&mut self, request: &Request, _: &ServerContext) -> Response {
        let response = protocol::handshake(request);
        if response.status() == 101 {
            // Accepted only with a version-13 upgrade, a key and no body, answered with the key's
            // digest.
            assert!(request.has_token("Upgrade", "websocket"));
            assert!(request.has_token("Connection", "upgrade"));
            assert_eq!(request.header("Sec-WebSocket-Version"), Some("13"));
            assert!(request.body().is_empty());
            let key = request.header("Sec-WebSocket-Key").expect("a key");
            let accept = response.header("Sec-WebSocket-Accept").expect("an accept");
            assert_eq!(
                accept,
                tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
            );
        }
        response
    }

    fn upgraded(
        &mut self,
        _: &Request,
        mut stream: Upgraded<'_>,
        _: &ServerContext,
    ) -> HandleResult {
        // The frame bytes after the upgrade, as the example's `FrameWatch` follows them. How
        // they are split into reads must not change what it concludes: fed whole, and fed a
        // byte at a time, it ends in the same state.
        let mut frames = Vec::new();
        stream.take(16 * 1024).read_to_end(&mut frames)?;
        let now = Instant::now();
        let mut whole = protocol::FrameWatch::new(now);
        whole.feed(&frames, now);
        let mut bytewise = protocol::FrameWatch::new(now);
        for byte in frames.chunks(1) {
            bytewise.feed(byte, now);
        }
        assert_eq!(format!("{whole:?}"), format!("{bytewise:?}"));
        assert_eq!(whole.silent_for(now), Duration::ZERO);
        Ok(())
    }
}

thread_local! {
    // One bound (never serving) server, for its ServerContext.
    static SERVER: RefCell<Option<TcpServer<Http<Ws>>>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    SERVER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let server = cell.get_or_insert_with(|| {
            TcpServer::<Http<Ws>>::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
        });
        let out = fuzz_connection(&mut Ws, data, server.context()).expect("socket pair");
        assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
    });
});
