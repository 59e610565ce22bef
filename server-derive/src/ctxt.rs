//! Collecting every error before failing (serde_derive's `Ctxt` habit).
//!
//! Parsing and checking go on after the first mistake, so a user with three mistakes sees three
//! errors in one build instead of fixing them one compile at a time.

use std::cell::RefCell;
use std::fmt::Display;

use quote::ToTokens;

/// The errors found so far.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Option<syn::Error>>,
}

impl Ctxt {
    /// Records `error`.
    pub fn push(&self, error: syn::Error) {
        let mut errors = self.errors.borrow_mut();
        match &mut *errors {
            Some(all) => all.combine(error),
            None => *errors = Some(error),
        }
    }

    /// Records an error underlining `tokens`.
    pub fn error_spanned_by(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// All the errors, combined, or `Ok` if there were none.
    pub fn check(self) -> syn::Result<()> {
        self.errors.into_inner().map_or(Ok(()), Err)
    }
}
