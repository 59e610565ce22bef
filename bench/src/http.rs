//! The HTTP scenarios (issue 17). Not written yet: the helper that owns this file replaces this.

use clap::Args;

use crate::BoxError;

/// Arguments of `http`.
#[derive(Args, Debug)]
pub struct HttpArgs {}

pub fn main(_args: &HttpArgs) -> Result<(), BoxError> {
    Err("not written yet".into())
}
