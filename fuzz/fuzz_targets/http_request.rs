//! The HTTP/1.1 layer's keep-alive loop (`server-core/src/http/{parse,connection}.rs`) on
//! arbitrary bytes: the request heads, their checks, body framing, pipelining, refusals,
//! `100 Continue`, `HEAD`, response writing and the hand-over after `101`.
//!
//! The first byte picks the limits (small ones, so the 413/414/431 paths are reachable with
//! short inputs) and how the handler answers; the rest is what the client sent.
//!
//! Run: `scripts/fuzz.sh http_request` (or `cargo +nightly fuzz run http_request` in `fuzz/`).

#![no_main]

use std::cell::RefCell;
use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use server_core::http::{fuzz_connection, Http, HttpHandler, Limits, Request, Response, Upgraded};
use server_core::{HandleResult, Handler, ServerContext, TcpServer};

struct Fuzz {
    config: u8,
}

impl Handler for Fuzz {
    type State = ();

    fn new(_: &ServerContext) -> Self {
        Fuzz { config: 0 }
    }
}

impl HttpHandler for Fuzz {
    fn respond(&mut self, request: &Request, _: &ServerContext) -> Response {
        // Every accessor a handler may call.
        let _ = (request.method(), request.target(), request.version());
        let _ = (request.path(), request.query(), request.body().len());
        let _ = (
            request.header("host"),
            request.has_token("connection", "close"),
        );
        let names = request.headers().map(|(name, _)| name.len()).sum::<usize>();
        match request.path() {
            "/upgrade" => Response::switching_protocols("fuzz"),
            _ => {
                const STATUSES: [u16; 8] = [200, 100, 204, 304, 404, 500, 999, 0];
                let status = STATUSES[usize::from(self.config >> 5)];
                // Header values from the request, to exercise the layer's own header checks.
                let mut response = Response::new(status).with_body(request.body().to_vec());
                for (name, value) in request.headers().take(4) {
                    let value = String::from_utf8_lossy(value).into_owned();
                    response = response.with_header(name, value);
                }
                response.with_header("X-Names", names.to_string())
            }
        }
    }

    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        if self.config & 1 == 1 {
            limits.max_head = 64 + usize::from(self.config & 0x0e) * 8;
            limits.max_headers = usize::from(self.config >> 4) % 8;
            limits.max_body = usize::from(self.config & 0x30);
        }
        limits
    }

    fn upgraded(
        &mut self,
        _: &Request,
        mut stream: Upgraded<'_>,
        _: &ServerContext,
    ) -> HandleResult {
        // Read what the client sent after its request, and write some of it back.
        let mut buf = [0; 256];
        let n = stream.read(&mut buf)?;
        let _ = stream.write(buf.get(..n.min(16)).unwrap_or_default());
        Ok(())
    }
}

thread_local! {
    // One bound (never serving) server, for its ServerContext.
    static SERVER: RefCell<Option<TcpServer<Http<Fuzz>>>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, bytes)) = data.split_first() else {
        return;
    };
    SERVER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let server = cell.get_or_insert_with(|| {
            TcpServer::<Http<Fuzz>>::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
        });
        let mut handler = Fuzz { config };
        let out = fuzz_connection(&mut handler, bytes, server.context()).expect("socket pair");
        // Whatever the input, the layer only ever writes HTTP/1.1 responses.
        assert!(
            out.is_empty() || out.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
    });
});
