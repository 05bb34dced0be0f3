#![doc = include_str!("../README.md")]

#[cfg(feature = "senders")]
mod chat;
#[cfg(feature = "senders")]
mod email;
mod error;
#[cfg(feature = "senders")]
mod forge;
#[cfg(feature = "senders")]
mod github_app;
#[cfg(feature = "senders")]
mod http;
mod rules;

pub use error::NotifyError;
#[cfg(feature = "senders")]
pub use http::{Retry, Transport};
pub use rules::{Outcome, dispatches, expand};

#[cfg(feature = "senders")]
use pipewright_core::Params;
use pipewright_core::{BuildStatus, ParamSpec, Version};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The built-in notification types, usable without a `notification_type` block.
pub const BUILTIN_TYPES: &[&str] = &[
    "webhook",
    "slack",
    "discord",
    "email",
    "github-check",
    "gitlab",
    "gitea",
];

/// What a notification says about a build. Every text in it has already been masked by the
/// caller; [`Notice::mask`] is applied once more to each body just before it leaves.
#[derive(Clone)]
pub struct Notice {
    /// The pipeline's name.
    pub pipeline: String,
    /// The job's name.
    pub job: String,
    /// The build number.
    pub number: u64,
    /// The build's status (`Running` for a `notify` step in the middle of a build).
    pub status: BuildStatus,
    /// Resource versions the build got or put, by resource id.
    pub versions: BTreeMap<String, Version>,
    /// A link to the build, when the caller knows one.
    pub url: Option<String>,
    /// The message, templated and masked.
    pub message: String,
    /// The build's variables (`BUILD_*`, `GET_*`…), for templated params (`subject`, `body`,
    /// `sha`…).
    pub vars: BTreeMap<String, String>,
    /// Masks secrets in text about to be sent.
    pub mask: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice")
            .field("pipeline", &self.pipeline)
            .field("job", &self.job)
            .field("number", &self.number)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Notice {
    /// `template` with the build's variables (and `BUILD_STATUS`) substituted.
    pub fn expand(&self, template: &str) -> String {
        let status = self.status.as_str();
        expand(template, &|name| match name {
            "BUILD_STATUS" => Some(status.to_owned()),
            _ => self.vars.get(name).cloned(),
        })
    }

    #[cfg(feature = "senders")]
    /// The commit a forge status is for: the `sha` param (templated) or the `ref` of the only
    /// resource version that has one.
    pub(crate) fn commit(
        &self,
        kind: &'static str,
        params: &Params,
    ) -> Result<String, NotifyError> {
        if let Some(t) = params.get_str("sha") {
            let sha = self.expand(&t);
            if sha.trim().is_empty() {
                return Err(NotifyError::config(kind, "`sha` expands to nothing"));
            }
            return Ok(sha.trim().to_owned());
        }
        let refs: Vec<&String> = self
            .versions
            .values()
            .filter_map(|v| v.0.get("ref"))
            .collect();
        match refs.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NotifyError::config(
                kind,
                "no commit to report on: set `sha` (e.g. `sha = \"$GET_REPO_REF\"`) or get a git resource",
            )),
            _ => Err(NotifyError::config(
                kind,
                "several resource versions have a `ref`: set `sha` to say which commit this is",
            )),
        }
    }
}

/// Sends one kind of notification. Object-safe: a binary may register its own.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Delivers `notice` (retrying as its [`Transport`] says).
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError>;
}

const EMAIL_PARAMS: &[&str] = &[
    "host", "port", "security", "username", "password", "from", "to", "subject", "body",
];
// In the order of `pipewright_config::Catalog::default`'s copy, so the two compare equal.
const GITHUB_PARAMS: &[&str] = &[
    "token",
    "sha",
    "base_url",
    "target_url",
    "description",
    "repository",
    "context",
    "app_id",
    "installation_id",
    "private_key",
];
const GITEA_PARAMS: &[&str] = &[
    "token",
    "sha",
    "base_url",
    "target_url",
    "description",
    "repository",
    "context",
];
const GITLAB_PARAMS: &[&str] = &[
    "token",
    "sha",
    "base_url",
    "target_url",
    "description",
    "project",
    "name",
];

/// The params each built-in type reads and requires, for validation.
pub fn param_spec(kind: &str) -> Option<ParamSpec> {
    let spec = match kind {
        "webhook" => ParamSpec::exactly(&["url", "token", "headers"], &["url"]),
        "slack" => ParamSpec::exactly(&["url", "channel", "username", "icon_emoji"], &["url"]),
        "discord" => ParamSpec::exactly(&["url", "username", "avatar_url"], &["url"]),
        "email" => ParamSpec::exactly(EMAIL_PARAMS, &["host", "from", "to"]),
        // A token, or a GitHub App (`app_id`, `installation_id`, `private_key`).
        "github-check" => {
            ParamSpec::exactly(GITHUB_PARAMS, &["repository"]).one_of(&["token", "private_key"])
        }
        "gitlab" => ParamSpec::exactly(GITLAB_PARAMS, &["token", "project"]),
        "gitea" => ParamSpec::exactly(GITEA_PARAMS, &["token", "repository", "base_url"]),
        _ => return None,
    };
    Some(spec)
}

#[cfg(feature = "senders")]
/// The notifier for built-in type `kind` with `params` (secrets in them already resolved).
/// Errors when `kind` is not built in or a param is missing or wrong.
pub fn create(
    kind: &str,
    params: &Params,
    transport: &Transport,
) -> Result<Arc<dyn Notifier>, NotifyError> {
    let t = transport.clone();
    Ok(match kind {
        "webhook" => Arc::new(chat::Webhook::new(params, t)?),
        "slack" => Arc::new(chat::Chat::new(chat::Flavor::Slack, params, t)?),
        "discord" => Arc::new(chat::Chat::new(chat::Flavor::Discord, params, t)?),
        "email" => Arc::new(email::Email::new(params, t)?),
        "github-check" => Arc::new(forge::Forge::new(forge::Kind::GitHub, params, t)?),
        "gitlab" => Arc::new(forge::Forge::new(forge::Kind::GitLab, params, t)?),
        "gitea" => Arc::new(forge::Forge::new(forge::Kind::Gitea, params, t)?),
        other => {
            return Err(NotifyError::Config {
                kind: "notification",
                message: format!(
                    "`{other}` is not a built-in notification type (built-in: {})",
                    BUILTIN_TYPES.join(", ")
                ),
            });
        }
    })
}

#[cfg(feature = "senders")]
/// A required string param.
pub(crate) fn required(
    kind: &'static str,
    params: &Params,
    name: &str,
) -> Result<String, NotifyError> {
    match params.get_str(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(NotifyError::config(kind, format!("`{name}` is required"))),
    }
}
