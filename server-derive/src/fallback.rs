//! What the derive emits when the input has mistakes (thiserror's `fallback.rs` habit).
//!
//! The errors, plus a stub `Handler` impl with the state type the user asked for, so that their
//! `impl StreamRequestHandler for X` and `TcpServer::<X>` still type-check: the user sees our
//! message alone, not a cascade of "the trait `Handler` is not implemented". The stub is never
//! run, since the crate does not compile.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::attr::Container;

pub fn expand(input: &DeriveInput, container: &Container, errors: syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let krate = container.krate();
    let state = container.state();
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors

        #[automatically_derived]
        impl #impl_generics #krate::Handler for #name #ty_generics #where_clause {
            type State = #state;
            fn new(_: &#krate::ServerContext<Self::State>) -> Self {
                ::core::unreachable!("#[derive(Handler)] failed to expand")
            }
        }
    }
}
