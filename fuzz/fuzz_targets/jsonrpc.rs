//! The `jsonrpc` example's request decoding and dispatch (`examples/protocol/jsonrpc.rs`, the
//! very file the example includes) on arbitrary POST bodies, with the example's default
//! limits and with tight ones, so that the batch, value and answer caps are reached often.
//!
//! Run: `scripts/fuzz.sh jsonrpc` (or `cargo +nightly fuzz run jsonrpc` in `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/protocol/jsonrpc.rs"]
#[allow(dead_code)]
mod protocol;

use protocol::Limits;

const TIGHT: Limits = Limits {
    max_batch: 4,
    max_values: 64,
    max_answer: 256,
};

fuzz_target!(|body: &[u8]| {
    for limits in [Limits::default(), TIGHT] {
        check(body, &limits);
    }
});

fn check(body: &[u8], limits: &Limits) {
    let counters = protocol::Counters::default();
    let Some(answer) = protocol::rpc(body, &counters, limits) else {
        return;
    };
    // The answer is sent as JSON text: it must read back. (Not compared for equality:
    // serde_json without `float_roundtrip` may read a float's last digit differently, a
    // false alarm the first run of this target found.)
    let back: serde_json::Value = serde_json::from_slice(&answer).expect("answer is JSON");
    // Every response object is 2.0, has an id, and exactly one of result and error.
    let responses = match &back {
        serde_json::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    assert!(!responses.is_empty());
    assert!(responses.len() <= limits.max_batch);
    let mut replaced = false;
    for response in responses {
        assert_eq!(response["jsonrpc"], "2.0");
        assert!(response.get("id").is_some());
        assert!(response.get("result").is_some() != response.get("error").is_some());
        replaced |= response["error"]["data"]
            .as_str()
            .is_some_and(|d| d.starts_with("the answer would pass"));
    }
    // Within the answer cap (the closing `]` of a batch aside), unless an answer was
    // replaced by the short error that says it did not fit.
    assert!(
        replaced || answer.len() <= limits.max_answer + 1,
        "{} bytes of answer over {}",
        answer.len(),
        limits.max_answer
    );
}
