//! The `xmlrpc` example's request decoding, dispatch and response encoding
//! (`examples/protocol/xmlrpc.rs`, the very file the example includes) on arbitrary POST
//! bodies.
//!
//! Run: `scripts/fuzz.sh xmlrpc` (or `cargo +nightly fuzz run xmlrpc` in `fuzz/`).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/protocol/xmlrpc.rs"]
#[allow(dead_code)]
mod protocol;

fuzz_target!(|body: &[u8]| {
    let answer = protocol::answer(body);
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
});
