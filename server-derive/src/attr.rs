//! Parsing `#[handler(...)]` attributes.
//!
//! Every complaint is spanned on the user's token and says what to write instead. Mistakes are
//! recorded in the [`Ctxt`] and parsing goes on with the next attribute, so all of them are
//! reported at once; what could be parsed is kept, so the fallback impl matches the user's code.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::meta::ParseNestedMeta;
use syn::parse::Parse;
use syn::{Attribute, Expr, LitStr, Meta, Path, Token, Type};

use crate::ctxt::Ctxt;

/// Options on the struct.
#[derive(Default)]
pub struct Container {
    /// `state = Type`: the shared state type.
    pub state: Option<Type>,
    /// `crate = path`: where the generated code finds `Handler` and `ServerContext`.
    pub krate: Option<Path>,
}

impl Container {
    /// The crate path the generated code names (default `::socketserver`).
    pub fn krate(&self) -> TokenStream {
        self.krate
            .as_ref()
            .map_or_else(|| quote!(::socketserver), ToTokens::to_token_stream)
    }

    /// The `Handler::State` type (default `()`).
    pub fn state(&self) -> TokenStream {
        self.state
            .as_ref()
            .map_or_else(|| quote!(()), ToTokens::to_token_stream)
    }
}

/// How one field is made.
pub enum FieldInit {
    /// `Default::default()`.
    Default,
    /// A clone of the shared state's `Arc`; holds the `state` word, for error spans.
    State(Path),
    /// `default = expr`.
    Expr(Expr),
}

/// Where an attribute sits, for the messages.
#[derive(Clone, Copy)]
enum Place {
    Struct,
    Field,
}

impl Place {
    fn example(self) -> &'static str {
        match self {
            Place::Struct => "`#[handler(state = YourState)]` or `#[handler(crate = path)]`",
            Place::Field => "`#[handler(state)]` or `#[handler(default = expr)]`",
        }
    }
}

/// The `#[handler ...]` attributes among `attrs` that have the list form `#[handler(...)]`;
/// `#[handler]` and `#[handler = ...]` are reported.
fn handler_lists<'a>(
    cx: &'a Ctxt,
    attrs: &'a [Attribute],
    place: Place,
) -> impl Iterator<Item = &'a Attribute> + 'a {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("handler"))
        .filter(move |attr| match &attr.meta {
            Meta::List(_) => true,
            Meta::Path(_) | Meta::NameValue(_) => {
                cx.error_spanned_by(
                    attr,
                    format_args!(
                        "`#[handler]` takes its options in parentheses; write {}",
                        place.example()
                    ),
                );
                false
            }
        })
}

/// The option's name as written, for messages.
fn name(meta: &ParseNestedMeta) -> String {
    meta.path.to_token_stream().to_string().replace(' ', "")
}

/// Parses `= value` where `value` is a type or a path, turning `= "Value"` (serde's quoted form)
/// into an error that shows the unquoted form.
fn unquoted<T: Parse>(meta: &ParseNestedMeta) -> syn::Result<T> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new_spanned(
            &lit,
            format_args!(
                "write it without quotes: `{} = {}`",
                name(meta),
                lit.value()
            ),
        ));
    }
    input.parse()
}

/// Parses the struct's `#[handler(...)]` attributes.
pub fn container(cx: &Ctxt, attrs: &[Attribute]) -> Container {
    let mut out = Container::default();
    for attr in handler_lists(cx, attrs, Place::Struct) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("state") {
                if !meta.input.peek(Token![=]) {
                    return Err(meta.error(
                        "on the struct, write `#[handler(state = YourState)]`; a bare \
                         `#[handler(state)]` goes on the field that receives the state",
                    ));
                }
                let ty: Type = unquoted(&meta)?;
                if out.state.is_some() {
                    cx.push(meta.error(
                        "`state` is given twice; a handler has one shared state type \
                         (put several values in one struct)",
                    ));
                } else {
                    out.state = Some(ty);
                }
                Ok(())
            } else if meta.path.is_ident("crate") {
                let path: Path = unquoted(&meta)?;
                if out.krate.is_some() {
                    cx.push(meta.error("`crate` is given twice; keep one `crate = path`"));
                } else {
                    out.krate = Some(path);
                }
                Ok(())
            } else if meta.path.is_ident("default") {
                Err(meta.error(
                    "`default = expr` goes on a field; the struct itself is made field by field",
                ))
            } else if meta.path.is_ident("stream") || meta.path.is_ident("datagram") {
                Err(meta.error(
                    "#[derive(Handler)] writes only the `Handler` impl; implement \
                     `StreamRequestHandler` or `DatagramRequestHandler` (with your `handle`) \
                     by hand",
                ))
            } else {
                Err(meta.error(format_args!(
                    "unknown handler option `{}`; on the struct, write {}",
                    name(&meta),
                    Place::Struct.example()
                )))
            }
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    out
}

/// Parses one field's `#[handler(...)]` attributes.
pub fn field(cx: &Ctxt, attrs: &[Attribute]) -> FieldInit {
    let mut init: Option<FieldInit> = None;
    for attr in handler_lists(cx, attrs, Place::Field) {
        let parsed = attr.parse_nested_meta(|meta| {
            let next = if meta.path.is_ident("state") {
                if meta.input.peek(Token![=]) {
                    return Err(meta.error(
                        "on a field, write `#[handler(state)]`; `state = Type` goes on the struct",
                    ));
                }
                FieldInit::State(meta.path.clone())
            } else if meta.path.is_ident("default") {
                if !meta.input.peek(Token![=]) {
                    return Err(meta.error(
                        "`default` needs a value: write `#[handler(default = expr)]`; a field \
                         without the attribute is made with `Default::default()`",
                    ));
                }
                FieldInit::Expr(meta.value()?.parse()?)
            } else if meta.path.is_ident("crate") {
                return Err(meta.error("`crate = path` goes on the struct, not on a field"));
            } else {
                return Err(meta.error(format_args!(
                    "unknown field option `{}`; on a field, write {}",
                    name(&meta),
                    Place::Field.example()
                )));
            };
            match (&init, &next) {
                (None, _) => init = Some(next),
                (Some(FieldInit::State(_)), FieldInit::State(_)) => {
                    cx.push(meta.error("`state` is given twice on this field"));
                }
                (Some(FieldInit::Expr(_)), FieldInit::Expr(_)) => {
                    cx.push(meta.error("`default` is given twice on this field; keep one"));
                }
                (Some(_), _) => cx.push(meta.error(
                    "a field takes one of `state` and `default = expr`, not both: `state` \
                     fills it with the shared state",
                )),
            }
            Ok(())
        });
        if let Err(e) = parsed {
            cx.push(e);
        }
    }
    init.unwrap_or(FieldInit::Default)
}
