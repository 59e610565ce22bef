//! Python's socketserver, for Rust.
#[doc(inline)]
pub use server_core::*;
#[doc(inline)]
pub use server_derive::*;
