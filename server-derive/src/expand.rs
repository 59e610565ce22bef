//! Generating the `Handler` impl.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{self, FieldInit};

pub fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let container = attr::container(&input.attrs)?;
    let krate = container
        .krate
        .map_or_else(|| quote!(::socketserver), |p| quote!(#p));
    let state = container.state.map_or_else(|| quote!(()), |t| quote!(#t));
    let fields =
        match &input.data {
            Data::Struct(data) => &data.fields,
            Data::Enum(e) => return Err(syn::Error::new(
                e.enum_token.span,
                "#[derive(Handler)] works on structs; a handler is made fresh for each request, \
                 so put per-request data in struct fields",
            )),
            Data::Union(u) => {
                return Err(syn::Error::new(
                    u.union_token.span,
                    "#[derive(Handler)] works on structs, not unions",
                ))
            }
        };
    let server = quote!(__socketserver_server);
    let mut errors: Option<syn::Error> = None;
    let mut inits = Vec::new();
    for field in fields.iter() {
        let init = match attr::field(&field.attrs) {
            Ok(FieldInit::Default) => {
                quote_spanned!(field.ty.span()=> ::core::default::Default::default())
            }
            Ok(FieldInit::State) => {
                quote_spanned!(field.ty.span()=> ::std::sync::Arc::clone(#server.state_arc()))
            }
            Ok(FieldInit::Expr(expr)) => quote!(#expr),
            Err(e) => {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
                continue;
            }
        };
        inits.push((field.ident.clone(), init));
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let body = match fields {
        Fields::Named(_) => {
            let parts = inits.iter().map(|(name, init)| quote!(#name: #init));
            quote!(Self { #(#parts),* })
        }
        Fields::Unnamed(_) => {
            let parts = inits.iter().map(|(_, init)| init);
            quote!(Self(#(#parts),*))
        }
        Fields::Unit => quote!(Self),
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Handler for #name #ty_generics #where_clause {
            type State = #state;
            #[allow(unused_variables)]
            fn new(#server: &#krate::ServerContext<#state>) -> Self {
                #body
            }
        }
    })
}
