//! Checks that need the whole input: the kind of item, its generics, and how fields and the
//! struct's options fit together.

use quote::ToTokens;
use syn::{Data, DeriveInput, Field, GenericParam, Type};

use crate::attr::{Container, FieldInit};
use crate::ctxt::Ctxt;

/// Reports an enum or a union. Returns the struct's fields, or `None`.
pub fn fields<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Option<&'a syn::Fields> {
    match &input.data {
        Data::Struct(data) => Some(&data.fields),
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "#[derive(Handler)] works on structs only: `Handler::new` makes a handler from \
                 the server alone, with no way to pick a variant; use a struct (a field may \
                 hold an enum)",
            );
            None
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "#[derive(Handler)] works on structs only, not unions; use a struct",
            );
            None
        }
    }
}

/// Reports lifetime parameters: a handler cannot borrow.
pub fn generics(cx: &Ctxt, input: &DeriveInput) {
    for param in &input.generics.params {
        if let GenericParam::Lifetime(def) = param {
            cx.error_spanned_by(
                &def.lifetime,
                format_args!(
                    "a handler cannot borrow: it is made for each request from the server \
                     alone (`Handler::new(&ServerContext)`), so `{}` has nothing to borrow from; \
                     remove the lifetime and own the data (`String`, `Vec<u8>`), or share it \
                     through `#[handler(state = YourState)]` and an `Arc<YourState>` field",
                    def.lifetime
                ),
            );
        }
    }
}

/// Reports `#[handler(state)]` fields that cannot work: no state type on the struct, or a type
/// that is visibly not an `Arc`.
pub fn state_fields(cx: &Ctxt, container: &Container, fields: &[(&Field, FieldInit)]) {
    for (field, init) in fields {
        let FieldInit::State(word) = init else {
            continue;
        };
        let Some(state) = &container.state else {
            cx.error_spanned_by(
                word,
                "this handler has no shared state type, so `#[handler(state)]` would get \
                 `Arc<()>`; add `#[handler(state = YourState)]` on the struct",
            );
            continue;
        };
        if visibly_not_arc(&field.ty, state) {
            cx.error_spanned_by(
                &field.ty,
                format_args!(
                    "a `#[handler(state)]` field holds the shared state's `Arc`; write \
                     `Arc<{}>` (std::sync::Arc)",
                    pretty(state)
                ),
            );
        }
    }
}

/// Whether `ty` is certainly not `Arc<…>`. Unsure cases (type aliases, macros) pass here and are
/// left to the type checker, whose error points at the field's type too.
fn visibly_not_arc(ty: &Type, state: &Type) -> bool {
    /// Wrappers that users reach for instead of `Arc`.
    const NOT_ARC: &[&str] = &[
        "Box", "Rc", "Weak", "Mutex", "RwLock", "RefCell", "Cell", "Option", "Vec",
    ];
    match ty {
        Type::Group(group) => visibly_not_arc(&group.elem, state),
        Type::Paren(paren) => visibly_not_arc(&paren.elem, state),
        Type::Path(path) if path.qself.is_none() => {
            let Some(last) = path.path.segments.last() else {
                return false;
            };
            if last.ident == "Arc" {
                false
            } else {
                // The state type itself, without the `Arc`, is the usual slip.
                ty.to_token_stream().to_string() == state.to_token_stream().to_string()
                    || NOT_ARC.iter().any(|name| last.ident == name)
            }
        }
        Type::Path(_) | Type::Macro(_) | Type::Infer(_) | Type::Verbatim(_) => false,
        // References, pointers, tuples, arrays, slices, fn pointers, `impl Trait`, `dyn Trait`.
        _ => true,
    }
}

/// A type as a user writes it (`Vec<u8>`, not `Vec < u8 >`), for messages.
fn pretty(ty: &Type) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
    ] {
        text = text.replace(from, to);
    }
    text
}
