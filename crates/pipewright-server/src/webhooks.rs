//! Forge webhooks in: a delivery signed with the resource's `webhook_secret` makes the
//! resource check at once, so a push is built without waiting for the next poll.
//!
//! The forge is told apart by its headers. GitHub and Gitea sign the raw body with
//! HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`, Gitea also `X-Gitea-Signature: <hex>`);
//! GitLab sends the secret itself (`X-Gitlab-Token`); anything else may use either the HMAC
//! header or `Authorization: Bearer <secret>`. Every comparison takes constant time. A
//! delivery id seen within [`DEDUP_WINDOW`] starts nothing, so a replayed delivery is inert.

use crate::error::{ServerError, ServerResult};
use crate::hub::{Hub, now_ms};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use pipewright_api::{WebhookDelivery, WebhookResult};
use pipewright_engine::RunOptions;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The largest body read (GitHub's own cap is 25 MB; pushes are far smaller).
pub const MAX_WEBHOOK_BODY: usize = 5 << 20;
/// How long a delivery id is remembered.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// At most this many delivery ids are remembered (the oldest are forgotten first).
const MAX_SEEN: usize = 10_000;
/// Deliveries kept per resource for the API.
const MAX_RECORDS: usize = 100;

/// Who sent a delivery, by its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forge {
    GitHub,
    Gitea,
    GitLab,
    Generic,
}

impl Forge {
    /// Gitea also sends `X-GitHub-Event` for compatibility, so it is asked first.
    pub(crate) fn of(h: &HeaderMap) -> Forge {
        if h.contains_key("x-gitea-event") || h.contains_key("x-gitea-delivery") {
            Forge::Gitea
        } else if h.contains_key("x-gitlab-event") || h.contains_key("x-gitlab-token") {
            Forge::GitLab
        } else if h.contains_key("x-github-event") || h.contains_key("x-github-delivery") {
            Forge::GitHub
        } else {
            Forge::Generic
        }
    }

    fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
            Forge::Generic => "generic",
        }
    }

    fn event(self, h: &HeaderMap) -> Option<&str> {
        let name = match self {
            Forge::GitHub => "x-github-event",
            Forge::Gitea => "x-gitea-event",
            Forge::GitLab => "x-gitlab-event",
            Forge::Generic => "x-pipewright-event",
        };
        header(h, name)
    }

    fn delivery_id(self, h: &HeaderMap) -> Option<&str> {
        let name = match self {
            Forge::GitHub => "x-github-delivery",
            Forge::Gitea => "x-gitea-delivery",
            Forge::GitLab => "x-gitlab-event-uuid",
            Forge::Generic => "x-pipewright-delivery",
        };
        header(h, name)
    }

    /// Checks the delivery's signature or token against `secret`.
    pub(crate) fn verify(self, h: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<(), String> {
        let hub_sig = header(h, "x-hub-signature-256");
        match self {
            Forge::GitHub => match hub_sig {
                Some(sig) => hmac_matches(secret, body, sig),
                None => Err("no X-Hub-Signature-256 header: set the webhook's secret".into()),
            },
            Forge::Gitea => match hub_sig.or_else(|| header(h, "x-gitea-signature")) {
                Some(sig) => hmac_matches(secret, body, sig),
                None => Err("no X-Gitea-Signature header: set the webhook's secret".into()),
            },
            Forge::GitLab => match header(h, "x-gitlab-token") {
                Some(token) if same(token.as_bytes(), secret) => Ok(()),
                Some(_) => Err("X-Gitlab-Token does not match the webhook secret".into()),
                None => Err("no X-Gitlab-Token header: set the webhook's secret token".into()),
            },
            Forge::Generic => {
                if let Some(sig) = hub_sig.or_else(|| header(h, "x-pipewright-signature-256")) {
                    return hmac_matches(secret, body, sig);
                }
                match header(h, "authorization").and_then(|a| a.strip_prefix("Bearer ")) {
                    Some(token) if same(token.trim().as_bytes(), secret) => Ok(()),
                    Some(_) => Err("the bearer token does not match the webhook secret".into()),
                    None => Err(
                        "no signature: send X-Hub-Signature-256 (HMAC-SHA256 of the body) or \
                         Authorization: Bearer <secret>"
                            .into(),
                    ),
                }
            }
        }
    }

    fn is_ping(self, event: Option<&str>) -> bool {
        matches!(
            (self, event),
            (Forge::GitHub | Forge::Gitea | Forge::Generic, Some("ping"))
        )
    }
}

fn header<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Constant time for equal lengths; a length mismatch says only that the lengths differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `sig` is `sha256=<hex>` or `<hex>` of HMAC-SHA256(secret, body).
fn hmac_matches(secret: &[u8], body: &[u8], sig: &str) -> Result<(), String> {
    let hex_sig = sig.trim().strip_prefix("sha256=").unwrap_or(sig.trim());
    let Ok(expected) = hex::decode(hex_sig) else {
        return Err("the signature is not hex (expected `sha256=<hex>`)".into());
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| "the webhook secret cannot key an HMAC".to_owned())?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| "the signature does not match the body and the webhook secret".into())
}

/// What a push delivery says it pushed: `refs/heads/main` → `Branch("main")`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Branch(String),
    Tag(String),
    /// Not a push, or a body without a `ref`.
    Unknown,
}

pub(crate) fn pushed(body: &[u8]) -> Pushed {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: Option<String>,
    }
    let Ok(Push { git_ref: Some(r) }) = serde_json::from_slice::<Push>(body) else {
        return Pushed::Unknown;
    };
    if let Some(b) = r.strip_prefix("refs/heads/") {
        Pushed::Branch(b.to_owned())
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        Pushed::Tag(t.to_owned())
    } else {
        Pushed::Unknown
    }
}

/// Why a verified delivery starts nothing for this resource, if it does not.
fn ignore_reason(decl: &pipewright_config::Resource, body: &[u8]) -> Option<String> {
    if decl.type_name != "git" {
        return None;
    }
    let follows = decl.params.0.get("branch").and_then(|v| v.as_str())?;
    match pushed(body) {
        Pushed::Branch(b) if b != follows => Some(format!(
            "a push to branch `{b}`; the resource follows `{follows}`"
        )),
        Pushed::Tag(t) => Some(format!(
            "a push of tag `{t}`; the resource follows branch `{follows}`"
        )),
        _ => None,
    }
}

/// Delivery ids seen recently, and the deliveries of each resource for the API.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    seen: Mutex<Seen>,
    records: Mutex<HashMap<String, VecDeque<WebhookDelivery>>>,
}

#[derive(Debug, Default)]
struct Seen {
    at: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl Deliveries {
    /// True when `key` is new (and now remembered); false when it was seen within the window.
    fn first_time(&self, key: String) -> bool {
        let Ok(mut s) = self.seen.lock() else {
            return true;
        };
        let now = Instant::now();
        while let Some((k, t)) = s.order.front().cloned() {
            if now.duration_since(t) < DEDUP_WINDOW && s.order.len() < MAX_SEEN {
                break;
            }
            s.order.pop_front();
            if s.at.get(&k) == Some(&t) {
                s.at.remove(&k);
            }
        }
        if s.at.contains_key(&key) {
            return false;
        }
        s.at.insert(key.clone(), now);
        s.order.push_back((key, now));
        true
    }

    fn record(&self, resource_key: &str, d: WebhookDelivery) {
        if let Ok(mut r) = self.records.lock() {
            let list = r.entry(resource_key.to_owned()).or_default();
            list.push_front(d);
            list.truncate(MAX_RECORDS);
        }
    }

    fn list(&self, resource_key: &str) -> Vec<WebhookDelivery> {
        self.records
            .lock()
            .ok()
            .and_then(|r| r.get(resource_key).map(|l| l.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// The answer to a delivery: the HTTP status and the record.
#[derive(Debug, Clone)]
pub struct WebhookAnswer {
    /// 200 (ping, ignored, duplicate), 202 (checking), 401, 404 or 503.
    pub status: u16,
    /// What was recorded.
    pub delivery: WebhookDelivery,
}

impl Hub {
    /// Handles one delivery to resource `rid` of `pipeline`. Unknown pipelines and resources
    /// are 404 (and not recorded); everything else is recorded, refusals included.
    pub async fn receive_webhook(
        self: &Arc<Self>,
        pipeline: &str,
        rid: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ServerResult<WebhookAnswer> {
        self.resource_exists(pipeline, rid)?;
        let p = self
            .pipeline(pipeline)
            .ok_or_else(|| ServerError::NotFound(format!("no pipeline `{pipeline}`")))?;
        let decl = p.resources.get(rid).ok_or_else(|| {
            ServerError::NotFound(format!("pipeline `{pipeline}` has no resource `{rid}`"))
        })?;
        let forge = Forge::of(headers);
        let event = forge.event(headers);
        let delivery_id = forge.delivery_id(headers);
        let (result, status, reason) =
            match self.judge(pipeline, &p, decl, forge, headers, body).await {
                Err(reason) => (WebhookResult::Rejected, reason.0, Some(reason.1)),
                Ok(()) if forge.is_ping(event) => (WebhookResult::Pong, 200, None),
                Ok(()) => match delivery_id {
                    Some(id)
                        if !self
                            .webhooks
                            .first_time(format!("{pipeline}/{rid}/{}/{id}", forge.name())) =>
                    {
                        (
                            WebhookResult::Duplicate,
                            200,
                            Some(format!("delivery `{id}` was already received")),
                        )
                    }
                    _ => match ignore_reason(decl, body) {
                        Some(why) => (WebhookResult::Ignored, 200, Some(why)),
                        None => {
                            self.check_now(pipeline, rid)?;
                            (WebhookResult::Checking, 202, None)
                        }
                    },
                },
            };
        self.metrics.webhook(forge.name(), result);
        if result == WebhookResult::Rejected {
            tracing::warn!(pipeline, resource = rid, forge = forge.name(), reason = ?reason, "webhook refused");
        } else {
            tracing::info!(pipeline, resource = rid, forge = forge.name(), result = ?result, "webhook");
        }
        let delivery = WebhookDelivery {
            at_ms: now_ms(),
            forge: forge.name().to_owned(),
            event: event.map(str::to_owned),
            delivery_id: delivery_id.map(str::to_owned),
            result,
            status,
            reason,
        };
        self.webhooks
            .record(&format!("{pipeline}/{rid}"), delivery.clone());
        Ok(WebhookAnswer { status, delivery })
    }

    /// Verifies a delivery: `Err((status, reason))` when it must be refused.
    async fn judge(
        &self,
        name: &str,
        p: &pipewright_config::Pipeline,
        decl: &pipewright_config::Resource,
        forge: Forge,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), (u16, String)> {
        let Some(secret) = &decl.webhook_secret else {
            return Err((
                404,
                format!(
                    "resource `{}` takes no webhooks: set `webhook_secret` on it",
                    decl.id
                ),
            ));
        };
        let opts = RunOptions {
            pipeline_name: name.to_owned(),
            store: Some(Arc::new(self.versions(name))),
            ..RunOptions::default()
        };
        let secret = self
            .engine
            .resolve_secrets(p, &decl.id, secret, &opts)
            .await
            .map_err(|e| (503, format!("the webhook secret could not be read: {e}")))?;
        forge
            .verify(headers, body, secret.as_bytes())
            .map_err(|why| (401, why))
    }

    /// The recorded deliveries of resource `rid`, newest first.
    pub fn webhook_deliveries(
        &self,
        pipeline: &str,
        rid: &str,
    ) -> ServerResult<Vec<WebhookDelivery>> {
        self.resource_exists(pipeline, rid)?;
        Ok(self.webhooks.list(&format!("{pipeline}/{rid}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(*k, v);
            }
        }
        h
    }

    #[test]
    fn forges_are_told_apart_and_gitea_wins_over_its_github_headers() {
        assert_eq!(
            Forge::of(&headers(&[("x-github-event", "push")])),
            Forge::GitHub
        );
        assert_eq!(
            Forge::of(&headers(&[
                ("x-github-event", "push"),
                ("x-gitea-event", "push")
            ])),
            Forge::Gitea
        );
        assert_eq!(
            Forge::of(&headers(&[("x-gitlab-event", "Push Hook")])),
            Forge::GitLab
        );
        assert_eq!(Forge::of(&HeaderMap::new()), Forge::Generic);
    }

    #[test]
    fn signatures_tokens_and_their_absence() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        let gh = |sig: &str| headers(&[("x-github-event", "push"), ("x-hub-signature-256", sig)]);
        assert!(Forge::GitHub.verify(&gh(&good), body, b"s3cret").is_ok());
        assert!(Forge::GitHub.verify(&gh(&good), b"{}", b"s3cret").is_err());
        assert!(Forge::GitHub.verify(&gh(&good), body, b"other").is_err());
        assert!(
            Forge::GitHub
                .verify(&gh("sha256=zz"), body, b"s3cret")
                .is_err()
        );
        assert!(
            Forge::GitHub
                .verify(&headers(&[]), body, b"s3cret")
                .is_err()
        );
        let bare = good.trim_start_matches("sha256=").to_owned();
        let gitea = headers(&[("x-gitea-event", "push"), ("x-gitea-signature", &bare)]);
        assert!(Forge::Gitea.verify(&gitea, body, b"s3cret").is_ok());
        let gl = |t: &str| headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", t)]);
        assert!(Forge::GitLab.verify(&gl("s3cret"), body, b"s3cret").is_ok());
        assert!(Forge::GitLab.verify(&gl("s3cre"), body, b"s3cret").is_err());
        let bearer = |t: &str| headers(&[("authorization", t)]);
        assert!(
            Forge::Generic
                .verify(&bearer("Bearer s3cret"), body, b"s3cret")
                .is_ok()
        );
        assert!(
            Forge::Generic
                .verify(&bearer("Bearer nope"), body, b"s3cret")
                .is_err()
        );
        assert!(
            Forge::Generic
                .verify(&bearer("Basic s3cret"), body, b"s3cret")
                .is_err()
        );
    }

    #[test]
    fn refs_are_read_from_push_bodies() {
        assert_eq!(
            pushed(br#"{"ref":"refs/heads/dev"}"#),
            Pushed::Branch("dev".into())
        );
        assert_eq!(
            pushed(br#"{"ref":"refs/tags/v1"}"#),
            Pushed::Tag("v1".into())
        );
        assert_eq!(pushed(b"not json"), Pushed::Unknown);
        assert_eq!(pushed(br#"{"ref":7}"#), Pushed::Unknown);
    }

    #[test]
    fn a_delivery_id_counts_once_within_the_window() {
        let d = Deliveries::default();
        assert!(d.first_time("a".into()));
        assert!(!d.first_time("a".into()));
        assert!(d.first_time("b".into()));
        for i in 0..MAX_SEEN + 10 {
            d.first_time(format!("k{i}"));
        }
        let seen = d.seen.lock().map(|s| s.at.len()).unwrap_or(0);
        assert!(seen <= MAX_SEEN, "{seen} ids remembered");
    }

    proptest! {
        /// Arbitrary bodies and header values never panic and never verify without the key.
        #[test]
        fn fuzzed_deliveries_never_panic_or_pass(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            sig in ".{0,80}",
            token in ".{0,40}",
            event in "[a-z ]{0,12}",
        ) {
            for forge_header in ["x-github-event", "x-gitea-event", "x-gitlab-event", "x-other"] {
                let h = headers(&[
                    (forge_header, &event),
                    ("x-hub-signature-256", &sig),
                    ("x-gitea-signature", &sig),
                    ("x-gitlab-token", &token),
                    ("authorization", &token),
                ]);
                let forge = Forge::of(&h);
                let secret = b"a-long-webhook-secret-nobody-guesses";
                prop_assert!(forge.verify(&h, &body, secret).is_err());
                let _ = pushed(&body);
                let _ = forge.is_ping(forge.event(&h));
            }
        }
    }
}
