#![doc = include_str!("../README.md")]

mod artifact;
mod cron;
mod fs;
mod git;
mod util;

pub use artifact::{ArtifactResource, ArtifactStore, BlobArtifactStore, LocalStore};
pub use cron::CronResource;
pub use fs::{FsResource, content_hash};
pub use git::GitResource;

use pipewright_core::{Error, ErrorKind, Resource, Result};
use std::path::Path;
use std::sync::Arc;

/// The built-in type names.
pub const BUILTIN_TYPES: [&str; 4] = ["git", "cron", "fs", "artifact"];

/// The params a built-in resource type reads, for load-time checks: those of its `resource`
/// block and those of its puts. `name` (the directory a get fills) is read by the engine for
/// every type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceParams {
    /// The `resource` block's `params`.
    pub resource: &'static [&'static str],
    /// A `put` step's params.
    pub put: &'static [&'static str],
}

/// The params of built-in type `type_name`; `None` for a name that is not one.
pub fn builtin_params(type_name: &str) -> Option<ResourceParams> {
    let (resource, put): (&'static [&'static str], &'static [&'static str]) = match type_name {
        "git" => (
            &[
                "url",
                "branch",
                "depth",
                "paths",
                "ignore_paths",
                "tag_filter",
                "token",
                "username",
                "private_key",
                "name",
            ],
            &["repository", "branch", "tag", "rebase"],
        ),
        "cron" => (&["schedule", "name"], &[]),
        "fs" => (&["path", "name"], &["from"]),
        "artifact" => (&["dir", "name"], &["from"]),
        _ => return None,
    };
    Some(ResourceParams { resource, put })
}

/// The built-in resource of type `type_name` configured by its `params`; `cache_root` is where
/// `git` keeps its mirrors. Errors name the missing or invalid param.
pub fn create(
    type_name: &str,
    params: &pipewright_core::Params,
    cache_root: &Path,
) -> Result<Arc<dyn Resource>> {
    let r: Arc<dyn Resource> = match type_name {
        "git" => Arc::new(GitResource::from_params(params, cache_root)?),
        "cron" => Arc::new(CronResource::from_params(params)?),
        "fs" => Arc::new(FsResource::from_params(params)?),
        "artifact" => Arc::new(ArtifactResource::from_params(params)?),
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
