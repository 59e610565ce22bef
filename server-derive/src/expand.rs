//! Generating the `Handler` impl.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Field, Fields, Ident};

use crate::attr::{self, Container, FieldInit};
use crate::ctxt::Ctxt;
use crate::{fallback, valid};

/// Parses, checks and expands; on any mistake, every error plus the fallback stub impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let container = attr::container(&cx, &input.attrs);
    valid::generics(&cx, input);
    let fields = valid::fields(&cx, input);
    let inits: Vec<(&Field, FieldInit)> = fields
        .into_iter()
        .flatten()
        .map(|field| (field, attr::field(&cx, &field.attrs)))
        .collect();
    valid::state_fields(&cx, &container, &inits);
    match (cx.check(), fields) {
        (Ok(()), Some(fields)) => impl_handler(input, &container, fields, &inits),
        (Err(errors), _) => fallback::expand(input, &container, errors),
        (Ok(()), None) => unreachable!("an enum or union is always reported"),
    }
}

fn impl_handler(
    input: &DeriveInput,
    container: &Container,
    fields: &Fields,
    inits: &[(&Field, FieldInit)],
) -> TokenStream {
    let krate = container.krate();
    let state = container.state();
    // Mixed-site hygiene: a `default = expr` cannot see (or clash with) this parameter.
    let server = Ident::new("server", Span::mixed_site());
    // Each initialiser is spanned on the field's type (or the user's expression), so a type
    // error, such as a field with no `Default`, points at the field.
    let values = inits.iter().map(|(field, init)| match init {
        FieldInit::Default => {
            quote_spanned!(field.ty.span()=> ::core::default::Default::default())
        }
        FieldInit::State(_) => {
            // The parameter keeps its hygiene but is located at the field's type, so that
            // `Arc<Other>` is reported there, not at the derive.
            let server = Ident::new("server", server.span().located_at(field.ty.span()));
            quote_spanned! {field.ty.span()=>
                ::std::sync::Arc::<Self::State>::clone(#server.state_arc())
            }
        }
        FieldInit::Expr(expr) => quote!(#expr),
    });
    let body = match fields {
        Fields::Named(_) => {
            let names = inits.iter().map(|(field, _)| &field.ident);
            quote!(Self { #(#names: #values),* })
        }
        Fields::Unnamed(_) => quote!(Self(#(#values),*)),
        Fields::Unit => quote!(Self),
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Handler for #name #ty_generics #where_clause {
            type State = #state;
            #[allow(unused_variables)]
            fn new(#server: &#krate::ServerContext<Self::State>) -> Self {
                #body
            }
        }
    }
}
