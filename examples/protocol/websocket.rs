//! The WebSocket opening handshake for the `websocket` example, in a module of its own so that
//! the fuzz target `fuzz/fuzz_targets/websocket_handshake.rs` runs this very code (both include
//! it with `#[path]`).

use socketserver::http::{Request, Response};
use tungstenite::handshake::derive_accept_key;

/// Checks the opening handshake (RFC 6455 section 4.2.1) and accepts it.
pub fn handshake(request: &Request) -> Response {
    if !request.has_token("Upgrade", "websocket") || !request.has_token("Connection", "upgrade") {
        return Response::text(426, "this is a WebSocket endpoint\n")
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade");
    }
    if request.header("Sec-WebSocket-Version") != Some("13") {
        return Response::text(426, "WebSocket version 13 only\n")
            .with_header("Sec-WebSocket-Version", "13");
    }
    match request.header("Sec-WebSocket-Key") {
        Some(key) => Response::switching_protocols("websocket").with_header(
            "Sec-WebSocket-Accept",
            derive_accept_key(key.trim().as_bytes()),
        ),
        None => Response::text(400, "missing Sec-WebSocket-Key\n"),
    }
}
