//! Derive macros for socketserver request handlers. Use them through the `socketserver` crate.
//!
//! `#[derive(Handler)]` writes the `Handler` impl: the shared state type and the per-request
//! constructor (Python: calling `RequestHandlerClass(request, client_address, server)` for every
//! request). Fields are made with `Default::default()`, unless marked:
//!
//! - `#[handler(state)]` on a field of type `Arc<State>`: the server's shared state.
//! - `#[handler(default = expr)]`: the field starts as `expr`.
//!
//! On the struct, `#[handler(state = Type)]` names the shared state type (default `()`), and
//! `#[handler(crate = path)]` names the crate the generated code refers to (default
//! `::socketserver`).

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod attr;
mod ctxt;
mod expand;
mod fallback;
mod valid;

/// Derives `socketserver::Handler`. See the crate documentation.
#[proc_macro_derive(Handler, attributes(handler))]
pub fn derive_handler(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
