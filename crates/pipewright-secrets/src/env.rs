//! `env`: secrets from this process's environment.

use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Result, SecretMap, SecretRef, SecretSource};

/// Reads the environment variable named by the secret's `key` (with a non-empty `path`, the
/// variable `PATH_KEY`, as in `secret "env" { path = "DEPLOY", key = "TOKEN" }` →
/// `DEPLOY_TOKEN`). Handy on a developer machine and for CI systems that inject variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSource;

impl EnvSource {
    /// The source.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl SecretSource for EnvSource {
    async fn get(&self, _ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap> {
        let name = if secret.path.is_empty() {
            secret.key.clone()
        } else {
            format!("{}_{}", secret.path, secret.key)
        };
        match std::env::var(&name) {
            Ok(v) => Ok(SecretMap::from([(secret.key.clone(), v.into())])),
            Err(std::env::VarError::NotPresent) => Err(Error::new(
                ErrorKind::NotFound,
                format!("environment variable `{name}` is not set"),
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("environment variable `{name}` is not UTF-8"),
            )),
        }
    }
}
