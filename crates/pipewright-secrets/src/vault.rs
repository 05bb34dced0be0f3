//! `vault`: HashiCorp Vault / OpenBao KV v1 and v2 over HTTP with token auth.

use async_trait::async_trait;
use pipewright_core::{
    Ctx, Error, ErrorKind, Params, Result, SecretMap, SecretRef, SecretSource, SecretValue,
};
use std::time::Duration;

/// Reads KV secrets. Config: `address` (default `$VAULT_ADDR`, then `$BAO_ADDR`), `token`
/// (default `$VAULT_TOKEN`, then `$BAO_TOKEN`), optional `namespace`, optional `kv_version`
/// (`1` or `2`; by default asked of the server per mount), optional `timeout` in seconds
/// (default 10).
///
/// A secret's `path` is the full API path after `/v1/`: `secret/data/db` or `secret/db` for
/// KV v2 (the `data/` segment is added when missing), `kv/db` for KV v1. Every key of the
/// secret is returned; non-string values as JSON text.
#[derive(Clone)]
pub struct VaultSource {
    client: reqwest::Client,
    address: String,
    token: SecretValue,
    namespace: Option<String>,
    kv_version: Option<u8>,
}

impl std::fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSource")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("kv_version", &self.kv_version)
            .finish_non_exhaustive()
    }
}

fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl VaultSource {
    /// From the type's config, falling back to the usual environment variables.
    pub fn from_params(config: &Params) -> Result<Self> {
        let invalid = |m: String| Error::new(ErrorKind::InvalidConfig, m);
        let address = config
            .get_str("address")
            .filter(|a| !a.is_empty())
            .or_else(|| env_first(&["VAULT_ADDR", "BAO_ADDR"]))
            .ok_or_else(|| {
                invalid(
                    "the vault secret type needs `address` (or VAULT_ADDR in the environment)"
                        .into(),
                )
            })?;
        let token = config
            .get_str("token")
            .filter(|t| !t.is_empty())
            .or_else(|| env_first(&["VAULT_TOKEN", "BAO_TOKEN"]))
            .ok_or_else(|| {
                invalid(
                    "the vault secret type needs `token` (or VAULT_TOKEN in the environment)"
                        .into(),
                )
            })?;
        let kv_version = match config.get_str("kv_version").as_deref() {
            None | Some("") => None,
            Some("1") => Some(1),
            Some("2") => Some(2),
            Some(other) => {
                return Err(invalid(format!(
                    "vault `kv_version` must be 1 or 2, got `{other}`"
                )));
            }
        };
        let timeout = match config.get_str("timeout") {
            Some(t) => t.parse::<u64>().map_err(|_| {
                invalid(format!("vault `timeout` is a number of seconds, got `{t}`"))
            })?,
            None => 10,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            client,
            address: address.trim_end_matches('/').to_owned(),
            token: token.into(),
            namespace: config.get_str("namespace").filter(|n| !n.is_empty()),
            kv_version,
        })
    }

    async fn call(&self, ctx: &Ctx, api_path: &str) -> Result<(u16, serde_json::Value)> {
        let url = format!("{}/v1/{}", self.address, api_path.trim_start_matches('/'));
        let mut req = self
            .client
            .get(&url)
            .header("X-Vault-Token", self.token.expose());
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = cancellable(ctx, req.send()).await?.map_err(|e| {
            Error::new(
                if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Unavailable
                },
                format!("cannot reach vault at {}: {}", self.address, chain(&e)),
            )
        })?;
        let status = resp.status().as_u16();
        let body = cancellable(ctx, resp.bytes()).await?.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("vault answer cut short: {e}"),
            )
        })?;
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    }

    /// The mount holding `path` and its KV version, asked of the server; `None` when the token
    /// may not ask (then the path is used as written, as KV v1 unless configured otherwise).
    async fn mount_of(&self, ctx: &Ctx, path: &str) -> Result<Option<(String, u8)>> {
        let (status, json) = self
            .call(ctx, &format!("sys/internal/ui/mounts/{path}"))
            .await?;
        if status != 200 {
            return Ok(None);
        }
        let data = &json["data"];
        let mount = data["path"].as_str().unwrap_or("").to_owned();
        let version = match data["options"]["version"].as_str() {
            Some("2") => 2,
            _ => 1,
        };
        Ok((!mount.is_empty()).then_some((mount, version)))
    }
}

#[async_trait]
impl SecretSource for VaultSource {
    fn credentials(&self) -> Vec<SecretValue> {
        vec![self.token.clone()]
    }

    async fn get(&self, ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap> {
        let path = secret.path.trim_matches('/');
        if path.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "a `vault` secret needs `path` (for example `secret/data/db`)",
            ));
        }
        let mount = self.mount_of(ctx, path).await?;
        let version = self
            .kv_version
            .or(mount.as_ref().map(|(_, v)| *v))
            .unwrap_or(1);
        let api_path = match (version, &mount) {
            (2, Some((m, _))) => {
                let rest = path.strip_prefix(m.as_str()).unwrap_or(path);
                if rest.starts_with("data/") {
                    path.to_owned()
                } else {
                    format!("{m}data/{rest}")
                }
            }
            (2, None) => match path.split_once('/') {
                Some((m, rest)) if !rest.starts_with("data/") => format!("{m}/data/{rest}"),
                _ => path.to_owned(),
            },
            _ => path.to_owned(),
        };
        let (status, json) = self.call(ctx, &api_path).await?;
        match status {
            200 => {}
            403 => {
                return Err(Error::new(
                    ErrorKind::Unauthorized,
                    format!(
                        "vault refused to read `{api_path}` (403): check the token and its policy"
                    ),
                ));
            }
            404 => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("vault has no secret at `{api_path}`"),
                ));
            }
            s => {
                let errors = json["errors"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                return Err(Error::new(
                    if s >= 500 {
                        ErrorKind::Unavailable
                    } else {
                        ErrorKind::Failed
                    },
                    format!("vault answered {s} for `{api_path}`: {errors}"),
                ));
            }
        }
        let data = if version == 2 {
            &json["data"]["data"]
        } else {
            &json["data"]
        };
        let obj = data.as_object().ok_or_else(|| {
            Error::new(
                ErrorKind::Failed,
                format!("vault's answer for `{api_path}` has no data (wrong kv_version?)"),
            )
        })?;
        Ok(obj
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), SecretValue::from(text))
            })
            .collect())
    }
}

/// Awaits `fut` unless the context is cancelled first.
async fn cancellable<T>(ctx: &Ctx, fut: impl std::future::Future<Output = T>) -> Result<T> {
    ctx.cancel
        .run_until_cancelled(fut)
        .await
        .ok_or_else(Error::cancelled)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
