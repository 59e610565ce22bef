//! The `jsonrpc` example's request decoding and dispatch (`examples/protocol/jsonrpc.rs`, the
//! very file the example includes) on arbitrary POST bodies.
//!
//! Run: `scripts/fuzz.sh jsonrpc` (or `cargo +nightly fuzz run jsonrpc` in `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/protocol/jsonrpc.rs"]
#[allow(dead_code)]
mod protocol;

fuzz_target!(|body: &[u8]| {
    let counters = protocol::Counters::default();
    if let Some(answer) = protocol::rpc(body, &counters) {
        // The answer is sent as JSON text: it must read back. (Not compared for equality:
        // serde_json without `float_roundtrip` may read a float's last digit differently, a
        // false alarm the first run of this target found.)
        let text = answer.to_string();
        let back: serde_json::Value = serde_json::from_str(&text).expect("answer is JSON");
        // Every response object is 2.0, has an id, and exactly one of result and error.
        let responses = match &back {
            serde_json::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        assert!(!responses.is_empty());
        for response in responses {
            assert_eq!(response["jsonrpc"], "2.0");
            assert!(response.get("id").is_some());
            assert!(response.get("result").is_some() != response.get("error").is_some());
        }
    }
});
