//! The WebSocket opening handshake for the `websocket` example, in a module of its own so that
//! the fuzz target `fuzz/fuzz_targets/websocket_handshake.rs` runs this very code (both include
//! it with `#[path]`), and [`FrameWatch`], which follows the frames a client sends so that the
//! example can bound how long a frame or a message may stay unfinished.

use std::time::{Duration, Instant};

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
    // The request lives as long as the WebSocket session: a body would be held all along.
    if !request.body().is_empty() {
        return Response::text(400, "a WebSocket handshake has no body\n");
    }
    match request.header("Sec-WebSocket-Key") {
        Some(key) => Response::switching_protocols("websocket").with_header(
            "Sec-WebSocket-Accept",
            derive_accept_key(key.trim().as_bytes()),
        ),
        None => Response::text(400, "missing Sec-WebSocket-Key\n"),
    }
}

/// Follows the frames a client sends from their headers alone (RFC 6455 section 5.2), so the
/// example can tell how long the client has been silent and how long a frame or a fragmented
/// message has been left unfinished, without holding any payload.
///
/// Feed it every byte read from the client, in order, with [`feed`](Self::feed).
#[derive(Debug)]
pub struct FrameWatch {
    /// The header being read (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A data frame without FIN was seen: its message is unfinished.
    in_message: bool,
    /// When the client last finished a frame (or when watching began).
    last_frame: Instant,
    /// When the oldest unfinished frame or fragmented message began.
    open_since: Option<Instant>,
}

impl FrameWatch {
    /// Starts watching at `now`, between frames.
    pub fn new(now: Instant) -> FrameWatch {
        FrameWatch {
            header: Vec::with_capacity(14),
            payload_left: 0,
            in_message: false,
            last_frame: now,
            open_since: None,
        }
    }

    /// Takes in the next bytes read from the client, read at `now`.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.payload_left > 0 {
                let take = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = bytes.get(take..).unwrap_or_default();
                self.payload_left -= take as u64;
                if self.payload_left == 0 {
                    self.frame_done(now);
                }
                continue;
            }
            if self.header.is_empty() {
                self.open_since.get_or_insert(now);
            }
            self.header.push(first);
            bytes = rest;
            if self.header.len() == self.header_len() {
                self.header_done(now);
            }
        }
    }

    /// How long since the client last finished a frame.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_frame)
    }

    /// How long the oldest unfinished frame or fragmented message has been waiting for its
    /// end; `None` between messages.
    pub fn unfinished_for(&self, now: Instant) -> Option<Duration> {
        self.open_since
            .map(|since| now.saturating_duration_since(since))
    }

    /// The length of the header being read, as far as its first two bytes tell.
    fn header_len(&self) -> usize {
        let Some(&second) = self.header.get(1) else {
            return 2;
        };
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn header_done(&mut self, now: Instant) {
        let first = self.header.first().copied().unwrap_or_default();
        let second = self.header.get(1).copied().unwrap_or_default();
        let fin = first & 0x80 != 0;
        let opcode = first & 0x0f;
        // A 7-bit length, or 126/127 and then a 16-bit/64-bit one (big-endian).
        let extended = match second & 0x7f {
            126 => self.header.get(2..4),
            127 => self.header.get(2..10),
            _ => None,
        };
        self.payload_left = match extended {
            Some(bytes) => bytes.iter().fold(0, |len, &b| (len << 8) | u64::from(b)),
            None => u64::from(second & 0x7f),
        };
        // Text (1) and binary (2) begin a message, continuation (0) carries it on, and FIN
        // ends it; control frames (8 and up) may come in between without ending it.
        if opcode <= 2 {
            self.in_message = !fin;
        }
        self.header.clear();
        if self.payload_left == 0 {
            self.frame_done(now);
        }
    }

    fn frame_done(&mut self, now: Instant) {
        self.last_frame = now;
        if !self.in_message {
            self.open_since = None;
        }
    }
}
