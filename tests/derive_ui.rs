//! Mistakes with `#[derive(Handler)]` and the errors users see, one mistake per file in
//! `tests/ui/`, each checked against its reviewed `.stderr` snapshot.
//!
//! The snapshots match the toolchain pinned in `rust-toolchain.toml`; rustc's wording changes
//! between releases. After a deliberate change, refresh them with
//! `TRYBUILD=overwrite cargo test --test derive_ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
