//! Forge webhooks against a real server and a real git repository: a signed push builds at
//! once (the resource polls once a day), and tampered, unsigned, replayed or foreign-branch
//! deliveries start nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ci, commit, repo};
use hmac::{Hmac, Mac};
use pipewright_api::{WebhookDelivery, WebhookResult};
use pipewright_core::BuildStatus;
use sha2::Sha256;
use std::time::{Duration, Instant};

const SECRET: &str = "a-webhook-secret-from-a-file";

fn pipeline(repo: &std::path::Path, secrets: &std::path::Path) -> String {
    format!(
        r#"
variable "hook" {{
  secret "file" {{
    path = "{secrets}"
    key  = "hook"
  }}
}}

resource "git" "src" {{
  params {{
    url    = "{repo}"
    branch = "main"
  }}
  check_interval = "@every 24h"
  webhook_secret = var.hook
}}

resource "git" "plain" {{
  params {{
    url = "{repo}"
  }}
  check_interval = "@every 24h"
  webhook_secret = "gitlab-token"
}}

resource "git" "quiet" {{
  params {{
    url = "{repo}"
  }}
}}

job "test" {{
  get "git" "src" {{
    trigger = true
  }}
  task "t" {{
    run "shell" {{
      cmd = "echo testing $GET_SRC_REF"
    }}
  }}
}}
"#,
        repo = repo.display(),
        secrets = secrets.display()
    )
}

fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push(branch: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "after": "0000000000000000000000000000000000000000",
        "repository": {"full_name": "team/app"},
    }))
    .unwrap()
}

async fn github(
    ci: &Ci,
    resource: &str,
    body: &[u8],
    sig: &str,
    delivery: &str,
    event: &str,
) -> (u16, serde_json::Value) {
    let resp = ci
        .http
        .post(ci.url(&format!("/webhooks/p/{resource}")))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sig)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn deliveries(ci: &Ci, resource: &str) -> Vec<WebhookDelivery> {
    ci.get(&format!("/pipelines/p/resources/{resource}/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_builds_at_once_and_bad_or_replayed_deliveries_start_nothing() {
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let secrets = src.path().join("secrets.json");
    std::fs::write(&secrets, serde_json::json!({ "hook": SECRET }).to_string()).unwrap();
    let ci = Ci::start(&pipeline(&repo, &secrets)).await;
    // The first check at start builds the first commit; after that nothing polls for a day.
    ci.wait_builds("test", Duration::from_secs(30), |b| {
        b.len() == 1 && b[0].status == BuildStatus::Succeeded
    })
    .await;
    let sha = commit(&repo, "two");
    let body = push("main");
    let good = sign(&body, SECRET);

    // Tampered body, wrong secret, no signature: 401, and no build.
    let mut tampered = body.clone();
    tampered[3] ^= 1;
    let (status, err) = github(&ci, "git.src", &tampered, &good, "d-1", "push").await;
    assert_eq!(status, 401, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("does not match"),
        "{err}"
    );
    let (status, _) = github(&ci, "git.src", &body, &sign(&body, "guess"), "d-2", "push").await;
    assert_eq!(status, 401);
    let unsigned = ci
        .http
        .post(ci.url("/webhooks/p/git.src"))
        .header("X-GitHub-Event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // A push to another branch is acknowledged and ignored.
    let other = push("feature");
    let (status, d) = github(&ci, "git.src", &other, &sign(&other, SECRET), "d-3", "push").await;
    assert_eq!(status, 200);
    assert_eq!(d["result"], "ignored", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("`feature`"), "{d}");
    // A ping is answered.
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let (status, d) = github(&ci, "git.src", ping, &sign(ping, SECRET), "d-4", "ping").await;
    assert_eq!((status, d["result"].as_str()), (200, Some("pong")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ci.builds("test").await.len(),
        1,
        "nothing above may start a build"
    );

    // The signed push: checked at once, built.
    let sent = Instant::now();
    let (status, d) = github(&ci, "git.src", &body, &good, "d-5", "push").await;
    assert_eq!(status, 202, "{d}");
    assert_eq!(d["result"], "checking");
    let builds = ci
        .wait_builds("test", Duration::from_secs(20), |b| b.len() == 2)
        .await;
    let latency = sent.elapsed();
    eprintln!("signed push → build created in {latency:?}");
    assert_eq!(builds[0].inputs["git.src"].get("ref"), Some(sha.as_str()));
    let done = ci.wait_done(builds[0].id).await;
    assert_eq!(done.status, BuildStatus::Succeeded);

    // The same delivery again, after another commit: a duplicate, nothing checked or built.
    commit(&repo, "three");
    let (status, d) = github(&ci, "git.src", &body, &good, "d-5", "push").await;
    assert_eq!(
        (status, d["result"].as_str()),
        (200, Some("duplicate")),
        "{d}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ci.builds("test").await.len(), 2, "a replay starts nothing");

    // Every delivery is recorded, newest first, with its result.
    let list = deliveries(&ci, "git.src").await;
    let results: Vec<WebhookResult> = list.iter().map(|d| d.result).collect();
    use WebhookResult::*;
    assert_eq!(
        results,
        [
            Duplicate, Checking, Pong, Ignored, Rejected, Rejected, Rejected
        ]
    );
    assert_eq!(list[1].delivery_id.as_deref(), Some("d-5"));
    assert_eq!(list[1].forge, "github");
    let metrics = ci
        .http
        .get(format!("{}/metrics", ci.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(
            "pipewright_webhook_deliveries_total{forge=\"github\",result=\"rejected\"} 3"
        ),
        "{metrics}"
    );
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_tokens_generic_bearer_unknown_targets_and_resources_without_a_secret() {
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let secrets = src.path().join("secrets.json");
    std::fs::write(&secrets, serde_json::json!({ "hook": SECRET }).to_string()).unwrap();
    let ci = Ci::start(&pipeline(&repo, &secrets)).await;
    let send = |resource: &str, headers: Vec<(&'static str, String)>| {
        let mut req = ci
            .http
            .post(ci.url(&format!("/webhooks/p/{resource}")))
            .body(push("main"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let gitlab = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_owned()),
            ("X-Gitlab-Token", token.to_owned()),
            ("X-Gitlab-Event-UUID", format!("uuid-{token}")),
        ]
    };
    assert_eq!(
        send("git.plain", gitlab("gitlab-token"))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        send("git.plain", gitlab("gitlab-tokex"))
            .await
            .unwrap()
            .status(),
        401
    );
    let bearer = vec![("Authorization", "Bearer gitlab-token".to_owned())];
    assert_eq!(send("git.plain", bearer).await.unwrap().status(), 202);

    // Unknown pipeline or resource: 404 with JSON; a resource without a secret: 404 saying so.
    for (path, what) in [
        ("nope/git.src", "no pipeline `nope`"),
        ("p/git.nope", "no resource `git.nope`"),
        ("p/git.quiet", "set `webhook_secret`"),
    ] {
        let resp = ci
            .http
            .post(ci.url(&format!("/webhooks/{path}")))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(what),
            "{path}: {body}"
        );
    }
    // A body over the cap is refused before it is read whole.
    let huge = vec![b' '; pipewright_server::MAX_WEBHOOK_BODY + 1];
    let resp = ci
        .http
        .post(ci.url("/webhooks/p/git.plain"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // The webhook route needs no API token, but the list of deliveries does.
    let anon = ci
        .http
        .get(ci.url("/pipelines/p/resources/git.plain/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let list = deliveries(&ci, "git.plain").await;
    assert_eq!(list.len(), 3);
    assert_eq!(list[2].forge, "gitlab");
    assert_eq!(list[2].result, WebhookResult::Checking);
    assert_eq!(list[1].result, WebhookResult::Rejected);
    assert_eq!(list[0].forge, "generic");
    ci.stop().await;
}
