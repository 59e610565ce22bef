//! The PROXY protocol header reader (`server-core/src/proxy/{read,header}.rs`) on arbitrary
//! bytes: framing (where a v1 or v2 header ends), parsing with `ppp`, the TLVs, and reading
//! exactly the header off a connection whose bytes arrive in pieces.
//!
//! The first byte picks the accepted versions (v1, v2, either) and the size of the pieces the
//! bytes arrive in; the rest is what the proxy sent. The entry point panics if the reader ever
//! consumes past the header or accepts one that framing the whole input disagrees with.
//!
//! Run: `scripts/fuzz.sh proxy_header` (or `cargo +nightly fuzz run proxy_header` in `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    server_core::proxy::fuzz_header(data);
});
