#![doc = include_str!("../README.md")]

mod artifact;
mod cron;
mod fs;
mod git;
mod util;

pub use artifact::{ArtifactResource, ArtifactStore, LocalStore};
pub use cron::CronResource;
pub use fs::{FsResource, content_hash};
pub use git::GitResource;

use pipewright_core::{Error, ErrorKind, Resource, Result};
use std::path::Path;
use std::sync::Arc;

/// The built-in type names.
pub const BUILTIN_TYPES: [&str; 4] = ["git", "cron", "fs", "artifact"];

/// The resource for a `resource` block of a built-in type; `cache_root` is where `git` keeps its
/// mirrors. Errors name the missing or invalid param.
pub fn create(decl: &pipewright_config::Resource, cache_root: &Path) -> Result<Arc<dyn Resource>> {
    let r: Arc<dyn Resource> = match decl.type_name.as_str() {
        "git" => Arc::new(GitResource::from_params(&decl.params, cache_root)?),
        "cron" => Arc::new(CronResource::from_params(&decl.params)?),
        "fs" => Arc::new(FsResource::from_params(&decl.params)?),
        "artifact" => Arc::new(ArtifactResource::from_params(&decl.params)?),
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("`{other}` is not a built-in resource type"),
            ));
        }
    };
    Ok(r)
}

pub(crate) fn required(params: &pipewright_core::Params, key: &str, ty: &str) -> Result<String> {
    params
        .get_str(key)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("a `{ty}` resource needs `{key}` in its params"),
            )
        })
}
