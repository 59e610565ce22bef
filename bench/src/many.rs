//! Many persistent connections (issue 17). Not written yet: the helper that owns this file replaces this.

use clap::Args;

use crate::BoxError;

/// Arguments of `many`.
#[derive(Args, Debug)]
pub struct ManyArgs {}

pub fn main(_args: &ManyArgs) -> Result<(), BoxError> {
    Err("not written yet".into())
}
