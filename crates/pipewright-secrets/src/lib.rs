//! Secrets for Pipewright: the built-in secret types (`env`, `file`, `vault`) and the streaming
//! log [`Masker`] every build output goes through.
//!
//! A secret type is a [`SecretSource`]: given a path and key it
//! returns a map of values. [`create`] builds a built-in one from its `secret_type` declaration.

mod env;
mod file;
mod mask;
#[cfg(feature = "vault")]
mod vault;

pub use env::EnvSource;
pub use file::{FileFormat, FileSource};
pub use mask::{MASK, MIN_SECRET_CHARS, Masked, Masker, StreamMasker, too_short};
#[cfg(feature = "vault")]
pub use vault::VaultSource;

use pipewright_core::{Error, ErrorKind, Params, Result, SecretSource};
use std::path::Path;
use std::sync::Arc;

/// The built-in secret type names.
#[cfg(feature = "vault")]
pub const BUILTIN_TYPES: &[&str] = &["env", "file", "vault"];
/// The built-in secret type names (built without the `vault` feature).
#[cfg(not(feature = "vault"))]
pub const BUILTIN_TYPES: &[&str] = &["env", "file"];

/// Builds the built-in secret type `name` from its declaration's config (`address`, `token`,
/// `format`…). Relative file paths resolve against `base_dir`.
pub fn create(name: &str, config: &Params, base_dir: &Path) -> Result<Arc<dyn SecretSource>> {
    match name {
        "env" => Ok(Arc::new(EnvSource::new())),
        "file" => Ok(Arc::new(FileSource::from_params(config, base_dir)?)),
        #[cfg(feature = "vault")]
        "vault" => Ok(Arc::new(VaultSource::from_params(config)?)),
        other => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "there is no built-in secret type `{other}` (built-ins: {})",
                BUILTIN_TYPES.join(", ")
            ),
        )),
    }
}
