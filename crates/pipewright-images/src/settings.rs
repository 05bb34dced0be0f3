//! The `registry-image` resource's params, read once when the resource is made.

use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use pipewright_core::{Error, ErrorKind, Params, Result};
use std::fmt;

/// Every param a `resource "registry-image"` block may set.
pub const RESOURCE_PARAMS: &[&str] = &[
    "repository",
    "tag",
    "tag_regex",
    "username",
    "password",
    "token",
    "insecure",
    "format",
    "name",
];

/// Every param a `put "registry-image"` step may set.
pub const PUT_PARAMS: &[&str] = &[
    "build",
    "dockerfile",
    "build_args",
    "target",
    "image",
    "tag",
    "tags",
    "tag_file",
];

/// Where `get` puts the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Pulled into the local Docker engine (for `run "docker"`), plus reference files.
    Docker,
    /// An OCI image layout under `oci/` in the destination, without a daemon.
    Oci,
}

/// How the registry is authenticated: basic credentials (which also drive the token flow of
/// registries that answer with a bearer challenge), a bearer token, or none.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// `username` and `password`.
    Basic {
        /// The user name (shown in errors).
        username: String,
        /// The password or access token (never shown).
        password: String,
    },
    /// A bearer token sent as is.
    Bearer(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => write!(f, "Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    pub(crate) fn auth(&self) -> RegistryAuth {
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }

    /// Who is asking, for error messages: the user name or the kind of token.
    pub(crate) fn who(&self) -> String {
        match self {
            Credentials::Anonymous => "anonymous access".into(),
            Credentials::Basic { username, .. } => format!("user `{username}`"),
            Credentials::Bearer(_) => "the bearer token".into(),
        }
    }
}

/// A parsed `registry-image` resource block.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `registry/path/name`, without tag or digest.
    pub repository: String,
    /// The registry host (and port).
    pub registry: String,
    /// The path within the registry.
    pub path: String,
    /// The tag watched when no `tag_regex` is set (default `latest`).
    pub tag: String,
    /// Tags to watch, anchored at both ends.
    pub tag_regex: Option<regex::Regex>,
    /// Registry credentials.
    pub credentials: Credentials,
    /// Plain HTTP or unverified TLS for this registry.
    pub insecure: bool,
    /// What `get` produces.
    pub format: Format,
}

fn invalid(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, m)
}

fn text(params: &Params, key: &str) -> Option<String> {
    params.get_str(key).filter(|s| !s.is_empty())
}

pub(crate) fn flag(params: &Params, key: &str) -> Result<bool> {
    match params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(serde_json::Value::String(s)) if s == "true" => Ok(true),
        Some(serde_json::Value::String(s)) if s == "false" => Ok(false),
        Some(o) => Err(invalid(format!("`{key}` must be true or false, got {o}"))),
    }
}

impl Settings {
    /// Reads a resource block's params. Errors name the param and what to write instead.
    pub fn from_params(params: &Params) -> Result<Self> {
        let repo = text(params, "repository").ok_or_else(|| {
            invalid("registry-image needs `repository`, e.g. `registry.example.com/team/app`")
        })?;
        if repo.contains('@') || repo.rsplit('/').next().is_some_and(|l| l.contains(':')) {
            return Err(invalid(format!(
                "`repository = \"{repo}\"` names a tag or digest; set the repository alone and \
                 the tag with `tag` (or `tag_regex`)"
            )));
        }
        let parsed: Reference = format!("{repo}:latest")
            .parse()
            .map_err(|e| invalid(format!("`repository = \"{repo}\"` is not valid: {e}")))?;
        let tag = text(params, "tag").unwrap_or_else(|| "latest".into());
        let tag_regex = match text(params, "tag_regex") {
            None => None,
            Some(re) => Some(regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                invalid(format!(
                    "`tag_regex = \"{re}\"` is not a regular expression: {e}"
                ))
            })?),
        };
        if tag_regex.is_some() && text(params, "tag").is_some() {
            return Err(invalid(
                "set `tag` (watch one tag's digest) or `tag_regex` (watch new tags), not both",
            ));
        }
        let credentials = match (
            text(params, "username"),
            text(params, "password"),
            text(params, "token"),
        ) {
            (None, None, None) => Credentials::Anonymous,
            (Some(username), Some(password), None) => Credentials::Basic { username, password },
            (None, None, Some(t)) => Credentials::Bearer(t),
            (Some(_), None, None) => {
                return Err(invalid(
                    "`username` needs `password` (a secret: `password = \"((secret:REGISTRY_PASSWORD))\"`)",
                ));
            }
            (None, Some(_), None) => return Err(invalid("`password` needs `username`")),
            _ => {
                return Err(invalid(
                    "set `username` and `password`, or `token`, not both",
                ));
            }
        };
        let format = match text(params, "format").as_deref() {
            None | Some("docker") => Format::Docker,
            Some("oci") => Format::Oci,
            Some(o) => {
                return Err(invalid(format!(
                    "`format` is `docker` (pull into the local engine) or `oci` (an OCI layout \
                     in the workspace), got `{o}`"
                )));
            }
        };
        Ok(Self {
            registry: parsed.registry().to_owned(),
            path: parsed.repository().to_owned(),
            repository: format!("{}/{}", parsed.registry(), parsed.repository()),
            tag,
            tag_regex,
            credentials,
            insecure: flag(params, "insecure")?,
            format,
        })
    }

    /// The reference of `tag` in this repository.
    pub fn tagged(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), self.path.clone(), tag.to_owned())
    }

    /// The reference of `digest` in this repository.
    pub fn by_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(self.registry.clone(), self.path.clone(), digest.to_owned())
    }

    /// The name the Docker engine knows the repository by: Docker Hub's short form for
    /// `docker.io`, the full name elsewhere.
    pub fn engine_name(&self) -> String {
        if self.registry == "docker.io" || self.registry == "index.docker.io" {
            self.path.trim_start_matches("library/").to_owned()
        } else {
            self.repository.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.insert(*k, *v);
        }
        p
    }

    #[test]
    fn repository_splits_into_registry_and_path() {
        let s =
            Settings::from_params(&params(&[("repository", "127.0.0.1:5000/team/app")])).unwrap();
        assert_eq!(s.registry, "127.0.0.1:5000");
        assert_eq!(s.path, "team/app");
        assert_eq!(s.tag, "latest");
        assert_eq!(s.engine_name(), "127.0.0.1:5000/team/app");
        let hub = Settings::from_params(&params(&[("repository", "alpine")])).unwrap();
        assert_eq!(hub.registry, "docker.io");
        assert_eq!(hub.engine_name(), "alpine");
    }

    #[test]
    fn bad_params_say_what_to_write() {
        let e = Settings::from_params(&params(&[("repository", "r.example/app:1.0")])).unwrap_err();
        assert!(e.to_string().contains("set the repository alone"), "{e}");
        let e = Settings::from_params(&params(&[("repository", "r/app"), ("username", "u")]))
            .unwrap_err();
        assert!(e.to_string().contains("needs `password`"), "{e}");
        let e = Settings::from_params(&params(&[("repository", "r/app"), ("tag_regex", "(")]))
            .unwrap_err();
        assert!(e.to_string().contains("not a regular expression"), "{e}");
        let e = Settings::from_params(&params(&[("repository", "r/app"), ("format", "tar")]))
            .unwrap_err();
        assert!(e.to_string().contains("`format`"), "{e}");
    }

    #[test]
    fn debug_never_shows_a_password() {
        let s = Settings::from_params(&params(&[
            ("repository", "r/app"),
            ("username", "ci"),
            ("password", "hunter2"),
        ]))
        .unwrap();
        let d = format!("{s:?}");
        assert!(d.contains("ci") && !d.contains("hunter2"), "{d}");
    }
}
