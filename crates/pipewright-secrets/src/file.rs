//! `file`: secrets from a JSON, YAML, dotenv or raw file.

use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Params, Result, SecretMap, SecretRef, SecretSource};
use std::path::{Path, PathBuf};

/// How a secrets file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A JSON object; nested objects become dotted keys (`db.password`).
    Json,
    /// A YAML mapping; nested mappings become dotted keys.
    Yaml,
    /// `KEY=value` lines (`export` prefixes, quotes and `#` comments allowed).
    Env,
    /// The whole file under the key `content`.
    Raw,
}

impl FileFormat {
    /// Parses `json`, `yaml`/`yml`, `env`/`dotenv`, `raw`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "yaml" | "yml" => Some(Self::Yaml),
            "env" | "dotenv" => Some(Self::Env),
            "raw" | "txt" => Some(Self::Raw),
            _ => None,
        }
    }

    /// From a file name's extension; `raw` when unknown.
    pub fn from_path(path: &Path) -> Self {
        match path.file_name().and_then(|n| n.to_str()) {
            Some(".env") => Self::Env,
            _ => path
                .extension()
                .and_then(|e| e.to_str())
                .and_then(Self::parse)
                .unwrap_or(Self::Raw),
        }
    }
}

/// Reads the secret's `path` (relative to `dir`, default the pipeline's directory) on every
/// fetch, so a rotated file is picked up by the next build.
#[derive(Debug, Clone)]
pub struct FileSource {
    dir: PathBuf,
    format: Option<FileFormat>,
}

impl FileSource {
    /// From the type's config: optional `dir` and `format`.
    pub fn from_params(config: &Params, base_dir: &Path) -> Result<Self> {
        let format = match config.get_str("format").filter(|f| !f.is_empty()) {
            Some(f) => Some(FileFormat::parse(&f).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("unknown secrets file format `{f}` (use json, yaml, env or raw)"),
                )
            })?),
            None => None,
        };
        let dir = match config.get_str("dir").filter(|d| !d.is_empty()) {
            Some(d) => base_dir.join(d),
            None => base_dir.to_owned(),
        };
        Ok(Self { dir, format })
    }
}

#[async_trait]
impl SecretSource for FileSource {
    async fn get(&self, _ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap> {
        if secret.path.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "a `file` secret needs `path` (the file to read)",
            ));
        }
        let path = self.dir.join(&secret.path);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                if e.kind() == std::io::ErrorKind::NotFound {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Unavailable
                },
                format!("cannot read secrets file `{}`: {e}", path.display()),
            )
        })?;
        let format = self.format.unwrap_or_else(|| FileFormat::from_path(&path));
        parse(format, &text).map_err(|m| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("secrets file `{}`: {m}", path.display()),
            )
        })
    }
}

/// Parses a secrets file; the message never quotes the content.
pub(crate) fn parse(format: FileFormat, text: &str) -> std::result::Result<SecretMap, String> {
    let mut map = SecretMap::new();
    match format {
        FileFormat::Raw => {
            map.insert("content".into(), text.into());
        }
        FileFormat::Json => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                format!("not valid JSON (line {}, column {})", e.line(), e.column())
            })?;
            flatten("", &v, &mut map)?;
        }
        FileFormat::Yaml => {
            let v: serde_json::Value =
                serde_yaml_ng::from_str(text).map_err(|e| match e.location() {
                    Some(l) => format!("not valid YAML (line {}, column {})", l.line(), l.column()),
                    None => "not valid YAML".to_owned(),
                })?;
            flatten("", &v, &mut map)?;
        }
        FileFormat::Env => {
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let line = line.strip_prefix("export ").unwrap_or(line);
                let Some((k, v)) = line.split_once('=') else {
                    return Err(format!("line {} is not KEY=value", i + 1));
                };
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                map.insert(k.trim().to_owned(), v.into());
            }
        }
    }
    Ok(map)
}

fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    map: &mut SecretMap,
) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, map)?;
            }
            Ok(())
        }
        _ if prefix.is_empty() => Err("the top level must be an object of keys".to_owned()),
        serde_json::Value::String(s) => {
            map.insert(prefix.to_owned(), s.as_str().into());
            Ok(())
        }
        other => {
            map.insert(prefix.to_owned(), other.to_string().into());
            Ok(())
        }
    }
}
