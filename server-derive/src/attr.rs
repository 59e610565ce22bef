//! Parsing `#[handler(...)]` attributes.

use syn::{Attribute, Expr, Path, Type};

/// Options on the struct.
#[derive(Default)]
pub struct ContainerAttrs {
    pub state: Option<Type>,
    pub krate: Option<Path>,
}

/// How one field is made.
pub enum FieldInit {
    Default,
    State,
    Expr(Expr),
}

pub fn container(attrs: &[Attribute]) -> syn::Result<ContainerAttrs> {
    let mut out = ContainerAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("handler")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("state") {
                if out.state.is_some() {
                    return Err(meta.error("`state` is given twice"));
                }
                out.state = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("crate") {
                out.krate = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("unknown handler option; expected `state = Type` or `crate = path`"))
            }
        })?;
    }
    Ok(out)
}

pub fn field(attrs: &[Attribute]) -> syn::Result<FieldInit> {
    let mut init: Option<(FieldInit, &Attribute)> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("handler")) {
        attr.parse_nested_meta(|meta| {
            let next = if meta.path.is_ident("state") {
                if meta.input.peek(syn::Token![=]) {
                    return Err(meta.error(
                        "on a field, write `#[handler(state)]`; `state = Type` goes on the struct",
                    ));
                }
                FieldInit::State
            } else if meta.path.is_ident("default") {
                FieldInit::Expr(meta.value()?.parse()?)
            } else {
                return Err(
                    meta.error("unknown field option; expected `state` or `default = expr`")
                );
            };
            if init.is_some() {
                return Err(
                    meta.error("a field takes one of `state` and `default = expr`, not both")
                );
            }
            init = Some((next, attr));
            Ok(())
        })?;
    }
    Ok(init.map_or(FieldInit::Default, |(i, _)| i))
}
