//! The TLS scenarios (issues 15 and 17). Not written yet: the helper that owns this file replaces this.

use clap::Args;

use crate::BoxError;

/// Arguments of `tls`.
#[derive(Args, Debug)]
pub struct TlsArgs {}

pub fn main(_args: &TlsArgs) -> Result<(), BoxError> {
    Err("not written yet".into())
}
