//! The `xmlrpc` example's request decoding, dispatch and response encoding
//! (`examples/protocol/xmlrpc.rs`, the very file the example includes) on arbitrary POST
//! bodies, with the example's default limits and with tight ones, so that the element, call
//! and answer caps are reached often.
//!
//! Run: `scripts/fuzz.sh xmlrpc` (or `cargo +nightly fuzz run xmlrpc` in `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/protocol/xmlrpc.rs"]
#[allow(dead_code)]
mod protocol;

use protocol::Limits;

const TIGHT: Limits = Limits {
    max_calls: 4,
    max_elements: 64,
    max_answer: 512,
};

fuzz_target!(|body: &[u8]| {
    for limits in [Limits::default(), TIGHT] {
        check(body, &limits);
    }
});

fn check(body: &[u8], limits: &Limits) {
    let answer = protocol::answer(body, limits);
    // Every answer is a methodResponse document, well-formed enough to read to its end.
    assert!(answer.starts_with("<?xml version=\"1.0\"?>\n<methodResponse>\n"));
    assert!(answer.ends_with("</methodResponse>\n"));
    let mut reader = quick_xml::Reader::from_str(&answer);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("the answer is not well-formed XML: {e}\n{answer}"),
        }
    }
    // Within the answer cap, unless something was replaced by (or is) a fault, whose text
    // may quote the request. The fixed parts of a multicall answer are not counted.
    assert!(
        answer.contains("<name>faultCode</name>") || answer.len() <= limits.max_answer + 200,
        "{} bytes of answer over {}",
        answer.len(),
        limits.max_answer
    );
}
