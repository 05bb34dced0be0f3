//! Commit statuses: `github-check` (GitHub and GitHub Enterprise), `gitlab` and `gitea`.

use crate::http::parse_url;
use crate::{Notice, Notifier, NotifyError, Transport, required};
use pipewright_core::{BuildStatus, Params};
use serde_json::{Value, json};

/// Which forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    GitHub,
    GitLab,
    Gitea,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::GitHub => "github-check",
            Kind::GitLab => "gitlab",
            Kind::Gitea => "gitea",
        }
    }

    /// The forge's word for a build status.
    pub(crate) fn state(self, s: BuildStatus) -> &'static str {
        use BuildStatus::*;
        match (self, s) {
            (Kind::GitLab, Running) => "running",
            (_, Pending | WaitingForApproval | Running) => "pending",
            (Kind::Gitea, Warning) => "warning",
            (_, Succeeded | Warning) => "success",
            (Kind::GitLab, Failed | Errored) => "failed",
            (Kind::GitLab, Cancelled) => "canceled",
            (_, Failed) => "failure",
            (_, _) => "error",
        }
    }
}

/// How a forge request is authorised.
#[derive(Debug)]
enum Auth {
    Token(Secret),
    /// GitHub only: an app installation's token, fetched for each notice.
    App(Box<crate::github_app::App>),
}

/// A token whose `Debug` shows nothing.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A commit status on a forge.
pub(crate) struct Forge {
    kind: Kind,
    base: reqwest::Url,
    /// `owner/repo` (GitHub, Gitea) or the project's id or path (GitLab).
    repository: String,
    auth: Auth,
    params: Params,
    transport: Transport,
}

impl std::fmt::Debug for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forge")
            .field("kind", &self.kind)
            .field("host", &crate::chat::host(&self.base))
            .field("repository", &self.repository)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Forge {
    pub(crate) fn new(
        kind: Kind,
        params: &Params,
        transport: Transport,
    ) -> Result<Self, NotifyError> {
        let name = kind.name();
        let auth = match (kind, params.get_str("private_key")) {
            (Kind::GitHub, Some(key)) => Auth::App(Box::new(crate::github_app::App::new(
                required(name, params, "app_id")?,
                required(name, params, "installation_id")?,
                &key,
            )?)),
            _ => Auth::Token(Secret(required(name, params, "token")?)),
        };
        let repository = match kind {
            Kind::GitLab => required(name, params, "project")?,
            _ => {
                let r = required(name, params, "repository")?;
                if r.split('/').filter(|p| !p.is_empty()).count() != 2 {
                    return Err(NotifyError::config(
                        name,
                        format!("`repository` must be `owner/name`, not `{r}`"),
                    ));
                }
                r
            }
        };
        let base = match (kind, params.get_str("base_url")) {
            (_, Some(b)) => b,
            (Kind::GitHub, None) => "https://api.github.com".into(),
            (Kind::GitLab, None) => "https://gitlab.com".into(),
            (Kind::Gitea, None) => required(name, params, "base_url")?,
        };
        Ok(Self {
            kind,
            base: parse_url(name, "base_url", &base)?,
            repository,
            auth,
            params: params.clone(),
            transport,
        })
    }

    /// The statuses endpoint for `sha`.
    fn endpoint(&self, sha: &str) -> Result<reqwest::Url, NotifyError> {
        let mut url = self.base.clone();
        let path: Vec<&str> = match self.kind {
            Kind::GitHub => vec!["repos"],
            Kind::GitLab => vec!["api", "v4", "projects"],
            Kind::Gitea => vec!["api", "v1", "repos"],
        };
        {
            let mut segs = url.path_segments_mut().map_err(|()| {
                NotifyError::config(self.kind.name(), "`base_url` cannot be a base for paths")
            })?;
            segs.pop_if_empty().extend(path);
            match self.kind {
                // One segment: `group/project` becomes `group%2Fproject`, as GitLab wants.
                Kind::GitLab => {
                    segs.push(&self.repository);
                }
                _ => {
                    segs.extend(self.repository.split('/').filter(|p| !p.is_empty()));
                }
            }
            segs.extend(["statuses", sha]);
        }
        Ok(url)
    }

    /// The request body.
    pub(crate) fn body(&self, n: &Notice) -> Value {
        let context = match self.kind {
            Kind::GitLab => self.params.get_str("name"),
            _ => self.params.get_str("context"),
        }
        .map(|c| n.expand(&c))
        .unwrap_or_else(|| format!("pipewright/{}", n.job));
        let description = self
            .params
            .get_str("description")
            .map(|d| n.expand(&d))
            .unwrap_or_else(|| {
                if n.message.trim().is_empty() {
                    format!("build #{} {}", n.number, n.status.as_str())
                } else {
                    n.message.clone()
                }
            });
        // GitHub takes at most 140 characters.
        let description: String = description.chars().take(140).collect();
        let target = self
            .params
            .get_str("target_url")
            .map(|t| n.expand(&t))
            .or_else(|| n.url.clone());
        let context_key = if self.kind == Kind::GitLab {
            "name"
        } else {
            "context"
        };
        let mut body = json!({
            "state": self.kind.state(n.status),
            "description": description,
        });
        if let Value::Object(m) = &mut body {
            m.insert(context_key.into(), Value::String(context));
            if let Some(t) = target {
                m.insert("target_url".into(), Value::String(t));
            }
        }
        body
    }
}

/// A commit id: hex only, so it is safe in a URL path.
fn check_sha(kind: &'static str, sha: &str) -> Result<(), NotifyError> {
    if (4..=64).contains(&sha.len()) && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(NotifyError::config(
            kind,
            format!("`{sha}` is not a commit id (4 to 64 hex digits)"),
        ))
    }
}

#[async_trait::async_trait]
impl Notifier for Forge {
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let name = self.kind.name();
        let sha = notice.commit(name, &self.params)?;
        check_sha(name, &sha)?;
        let url = self.endpoint(&sha)?;
        let token = match &self.auth {
            Auth::Token(Secret(t)) => t.clone(),
            Auth::App(app) => app.token(&self.transport, &self.base).await?,
        };
        let headers: Vec<(&str, String)> = match self.kind {
            Kind::GitHub => vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/vnd.github+json".into()),
                ("x-github-api-version", "2022-11-28".into()),
            ],
            Kind::GitLab => vec![("private-token", token)],
            Kind::Gitea => vec![("authorization", format!("token {token}"))],
        };
        let body = (notice.mask)(&self.body(notice).to_string());
        self.transport
            .post_json(name, &url, &headers, &body)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(kind: Kind, pairs: &[(&str, &str)]) -> Forge {
        let mut p = Params::new();
        for (k, v) in pairs {
            p.insert(*k, *v);
        }
        let t = Transport::new(std::time::Duration::from_secs(1), crate::Retry::default()).unwrap();
        Forge::new(kind, &p, t).unwrap()
    }

    #[test]
    fn endpoints_follow_each_forge_api() {
        let gh = forge(Kind::GitHub, &[("token", "t"), ("repository", "o/r")]);
        assert_eq!(
            gh.endpoint("abc123").unwrap().as_str(),
            "https://api.github.com/repos/o/r/statuses/abc123"
        );
        let ghe = forge(
            Kind::GitHub,
            &[
                ("token", "t"),
                ("repository", "o/r"),
                ("base_url", "https://ghe.example/api/v3/"),
            ],
        );
        assert_eq!(
            ghe.endpoint("abc1").unwrap().as_str(),
            "https://ghe.example/api/v3/repos/o/r/statuses/abc1"
        );
        let gl = forge(
            Kind::GitLab,
            &[("token", "t"), ("project", "group/sub/app")],
        );
        assert_eq!(
            gl.endpoint("abc1").unwrap().as_str(),
            "https://gitlab.com/api/v4/projects/group%2Fsub%2Fapp/statuses/abc1"
        );
        let gt = forge(
            Kind::Gitea,
            &[
                ("token", "t"),
                ("repository", "o/r"),
                ("base_url", "http://gitea.local:3000"),
            ],
        );
        assert_eq!(
            gt.endpoint("abc1").unwrap().as_str(),
            "http://gitea.local:3000/api/v1/repos/o/r/statuses/abc1"
        );
    }

    #[test]
    fn states_use_each_forge_words() {
        use BuildStatus::*;
        let words =
            |k: Kind| [Running, Succeeded, Warning, Failed, Errored, Cancelled].map(|s| k.state(s));
        assert_eq!(
            words(Kind::GitHub),
            ["pending", "success", "success", "failure", "error", "error"]
        );
        assert_eq!(
            words(Kind::GitLab),
            [
                "running", "success", "success", "failed", "failed", "canceled"
            ]
        );
        assert_eq!(
            words(Kind::Gitea),
            ["pending", "success", "warning", "failure", "error", "error"]
        );
    }

    #[test]
    fn only_hex_commit_ids_reach_the_url() {
        assert!(check_sha("gitea", "0123abcdef").is_ok());
        assert!(check_sha("gitea", "../../admin").is_err());
        assert!(check_sha("gitea", "main").is_err());
    }

    #[test]
    fn repositories_must_be_owner_and_name() {
        let mut p = Params::new();
        p.insert("token", "t");
        p.insert("repository", "justname");
        let t = Transport::new(std::time::Duration::from_secs(1), crate::Retry::default()).unwrap();
        let e = Forge::new(Kind::GitHub, &p, t).unwrap_err();
        assert!(e.to_string().contains("owner/name"), "{e}");
    }
}
