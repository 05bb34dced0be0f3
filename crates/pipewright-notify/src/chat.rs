//! `webhook` (the build as JSON), `slack` and `discord` (incoming-webhook payloads).

use crate::http::parse_url;
use crate::{Notice, Notifier, NotifyError, Transport, required};
use pipewright_core::Params;
use serde_json::{Value, json};

/// The build as JSON, the body of a `webhook` notification.
pub(crate) fn build_json(n: &Notice) -> Value {
    json!({
        "pipeline": n.pipeline,
        "job": n.job,
        "number": n.number,
        "status": n.status.as_str(),
        "versions": n.versions,
        "url": n.url,
        "message": n.message,
    })
}

/// `webhook`: POSTs [`build_json`] to `url`, with `token` as a bearer token and `headers`.
pub(crate) struct Webhook {
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    transport: Transport,
}

/// The host only: a webhook's path, its headers and params may hold its secret.
pub(crate) fn host(url: &reqwest::Url) -> &str {
    url.host_str().unwrap_or("?")
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &host(&self.url))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("flavor", &self.flavor)
            .field("host", &host(&self.url))
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(crate) fn new(params: &Params, transport: Transport) -> Result<Self, NotifyError> {
        let url = parse_url("webhook", "url", &required("webhook", params, "url")?)?;
        let mut headers = Vec::new();
        match params.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    headers.push((k.clone(), v));
                }
            }
            Some(_) => {
                return Err(NotifyError::config(
                    "webhook",
                    "`headers` must be a map of header names to values",
                ));
            }
        }
        if let Some(t) = params.get_str("token") {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        Ok(Self {
            url,
            headers,
            transport,
        })
    }
}

#[async_trait::async_trait]
impl Notifier for Webhook {
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let body = (notice.mask)(&build_json(notice).to_string());
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        self.transport
            .post_json("webhook", &self.url, &headers, &body)
            .await
            .map(drop)
    }
}

/// Which incoming-webhook payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Slack,
    Discord,
}

/// `slack` and `discord`: the message as an incoming-webhook payload.
pub(crate) struct Chat {
    flavor: Flavor,
    url: reqwest::Url,
    params: Params,
    transport: Transport,
}

impl Chat {
    pub(crate) fn new(
        flavor: Flavor,
        params: &Params,
        transport: Transport,
    ) -> Result<Self, NotifyError> {
        let kind = flavor.kind();
        let url = parse_url(kind, "url", &required(kind, params, "url")?)?;
        Ok(Self {
            flavor,
            url,
            params: params.clone(),
            transport,
        })
    }
}

impl Flavor {
    fn kind(self) -> &'static str {
        match self {
            Flavor::Slack => "slack",
            Flavor::Discord => "discord",
        }
    }
}

/// The message, or a one-line summary of the build when there is none.
pub(crate) fn text(n: &Notice) -> String {
    if n.message.trim().is_empty() {
        let link = n
            .url
            .as_deref()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        format!(
            "{}/{} #{} {}{link}",
            n.pipeline,
            n.job,
            n.number,
            n.status.as_str()
        )
    } else {
        n.message.clone()
    }
}

/// The incoming-webhook body: Slack's `text` (plus `channel`, `username`, `icon_emoji`) or
/// Discord's `content` (plus `username`, `avatar_url`).
pub(crate) fn payload(flavor: Flavor, params: &Params, n: &Notice) -> Value {
    let (field, extras): (&str, &[&str]) = match flavor {
        Flavor::Slack => ("text", &["channel", "username", "icon_emoji"]),
        Flavor::Discord => ("content", &["username", "avatar_url"]),
    };
    let mut body = serde_json::Map::new();
    body.insert(field.into(), Value::String(text(n)));
    for k in extras {
        if let Some(v) = params.get_str(k) {
            body.insert((*k).into(), Value::String(n.expand(&v)));
        }
    }
    Value::Object(body)
}

#[async_trait::async_trait]
impl Notifier for Chat {
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let body = (notice.mask)(&payload(self.flavor, &self.params, notice).to_string());
        self.transport
            .post_json(self.flavor.kind(), &self.url, &[], &body)
            .await
            .map(drop)
    }
}
