#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every HTTP notification type against a real local receiver: its path, auth header and JSON,
//! retries after 500s, no retry after a 4xx, and masking of what leaves.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use pipewright_core::{BuildStatus, Params, Version};
use pipewright_notify::{Notice, Retry, Transport, create};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answers this status to the first `fail_first` requests, then 200.
    fail_first: usize,
    fail_with: u16,
}

async fn record(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut got = r.got.lock().unwrap();
    got.push(Got {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::String(body)),
    });
    if got.len() <= r.fail_first {
        StatusCode::from_u16(r.fail_with).unwrap()
    } else {
        StatusCode::OK
    }
}

/// A receiver on a free loopback port; returns its base URL and what it records.
async fn receiver(fail_first: usize, fail_with: u16) -> (String, Arc<Mutex<Vec<Got>>>) {
    let r = Receiver {
        fail_first,
        fail_with,
        ..Receiver::default()
    };
    let got = r.got.clone();
    let app = axum::Router::new().fallback(record).with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

fn transport(attempts: u32) -> Transport {
    Transport::new(
        Duration::from_secs(5),
        Retry {
            attempts,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
    )
    .unwrap()
}

const SECRET: &str = "sup3r-s3cret-token-value";

fn notice(status: BuildStatus, message: &str) -> Notice {
    let mut versions = BTreeMap::new();
    versions.insert(
        "git.app".to_owned(),
        Version::from_pairs([("ref", "0123456789abcdef0123456789abcdef01234567")]),
    );
    let vars = BTreeMap::from([
        ("BUILD_PIPELINE_NAME".to_owned(), "shop".to_owned()),
        ("BUILD_JOB_NAME".to_owned(), "test".to_owned()),
        ("BUILD_NUMBER".to_owned(), "42".to_owned()),
    ]);
    Notice {
        pipeline: "shop".into(),
        job: "test".into(),
        number: 42,
        status,
        versions,
        url: Some("http://ci.local/builds/42".into()),
        message: message.into(),
        vars,
        mask: Arc::new(|s: &str| s.replace(SECRET, "***")),
    }
}

fn params(v: Value) -> Params {
    serde_json::from_value(v).unwrap()
}

fn header(g: &Got, name: &str) -> String {
    g.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn webhook_posts_the_build_as_json_with_its_bearer_token() {
    let (base, got) = receiver(0, 500).await;
    let p = params(json!({
        "url": format!("{base}/hooks/ci"),
        "token": "hook-token",
        "headers": { "X-Team": "shop" },
    }));
    let n = create("webhook", &p, &transport(1)).unwrap();
    n.send(&notice(BuildStatus::Failed, "test #42 failed"))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.path, "/hooks/ci");
    assert_eq!(header(g, "authorization"), "Bearer hook-token");
    assert_eq!(header(g, "x-team"), "shop");
    assert_eq!(header(g, "content-type"), "application/json");
    assert_eq!(
        g.body,
        json!({
            "pipeline": "shop",
            "job": "test",
            "number": 42,
            "status": "failed",
            "versions": { "git.app": { "ref": "0123456789abcdef0123456789abcdef01234567" } },
            "url": "http://ci.local/builds/42",
            "message": "test #42 failed",
        })
    );
}

#[tokio::test]
async fn slack_and_discord_get_their_incoming_webhook_payloads() {
    let (base, got) = receiver(0, 500).await;
    let slack = params(json!({
        "url": format!("{base}/services/T000/B000/XXXX"),
        "channel": "#ci",
        "username": "pipewright $BUILD_JOB_NAME",
    }));
    create("slack", &slack, &transport(1))
        .unwrap()
        .send(&notice(BuildStatus::Succeeded, "green again"))
        .await
        .unwrap();
    let discord = params(json!({ "url": format!("{base}/api/webhooks/1/abc"), "username": "ci" }));
    // No message: a one-line summary of the build.
    create("discord", &discord, &transport(1))
        .unwrap()
        .send(&notice(BuildStatus::Failed, ""))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got[0].path, "/services/T000/B000/XXXX");
    assert_eq!(
        got[0].body,
        json!({ "text": "green again", "channel": "#ci", "username": "pipewright test" })
    );
    assert_eq!(got[1].path, "/api/webhooks/1/abc");
    assert_eq!(
        got[1].body,
        json!({ "content": "shop/test #42 failed http://ci.local/builds/42", "username": "ci" })
    );
}

#[tokio::test]
async fn commit_statuses_reach_each_forge_api_with_its_auth() {
    let (base, got) = receiver(0, 500).await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let gh = params(json!({
        "token": "gh-token", "repository": "acme/shop", "base_url": format!("{base}/api/v3"),
    }));
    create("github-check", &gh, &transport(1))
        .unwrap()
        .send(&notice(BuildStatus::Failed, "tests failed"))
        .await
        .unwrap();
    let gl = params(json!({
        "token": "gl-token", "project": "acme/shop", "base_url": base, "name": "ci/$BUILD_JOB_NAME",
        "sha": "$COMMIT",
    }));
    let mut n = notice(BuildStatus::Cancelled, "");
    n.vars.insert("COMMIT".into(), "abcdef12".into());
    create("gitlab", &gl, &transport(1))
        .unwrap()
        .send(&n)
        .await
        .unwrap();
    let gt = params(json!({
        "token": "gt-token", "repository": "acme/shop", "base_url": base,
        "target_url": "http://ci.local/$BUILD_NUMBER",
    }));
    create("gitea", &gt, &transport(1))
        .unwrap()
        .send(&notice(BuildStatus::Succeeded, "ok"))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[0].path,
        format!("/api/v3/repos/acme/shop/statuses/{sha}")
    );
    assert_eq!(header(&got[0], "authorization"), "Bearer gh-token");
    assert_eq!(header(&got[0], "accept"), "application/vnd.github+json");
    assert_eq!(
        got[0].body,
        json!({
            "state": "failure", "description": "tests failed", "context": "pipewright/test",
            "target_url": "http://ci.local/builds/42",
        })
    );
    // GitLab wants the project path as one encoded segment.
    assert_eq!(
        got[1].path,
        "/api/v4/projects/acme%2Fshop/statuses/abcdef12"
    );
    assert_eq!(header(&got[1], "private-token"), "gl-token");
    assert_eq!(
        got[1].body,
        json!({
            "state": "canceled", "description": "build #42 cancelled", "name": "ci/test",
            "target_url": "http://ci.local/builds/42",
        })
    );
    assert_eq!(
        got[2].path,
        format!("/api/v1/repos/acme/shop/statuses/{sha}")
    );
    assert_eq!(header(&got[2], "authorization"), "token gt-token");
    assert_eq!(
        got[2].body,
        json!({
            "state": "success", "description": "ok", "context": "pipewright/test",
            "target_url": "http://ci.local/42",
        })
    );
}

#[tokio::test]
async fn a_receiver_that_first_answers_500_gets_the_notification_on_a_retry() {
    let (base, got) = receiver(2, 500).await;
    let p = params(json!({ "url": format!("{base}/hook") }));
    create("webhook", &p, &transport(3))
        .unwrap()
        .send(&notice(BuildStatus::Succeeded, "ok"))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 3, "two 500s, then the delivery");
    assert!(got.iter().all(|g| g.body == got[0].body));
}

#[tokio::test]
async fn retries_stop_after_the_last_attempt_and_client_errors_are_not_retried() {
    let (base, got) = receiver(10, 503).await;
    let p = params(json!({ "url": format!("{base}/hook"), "token": "hook-token" }));
    let err = create("webhook", &p, &transport(3))
        .unwrap()
        .send(&notice(BuildStatus::Succeeded, "ok"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(got.lock().unwrap().len(), 3);
    assert!(err.contains("503") && err.contains("3 attempt"), "{err}");
    assert!(
        !err.contains("hook-token") && !err.contains("/hook"),
        "{err}"
    );

    let (base, got) = receiver(10, 401).await;
    let p = params(json!({ "url": format!("{base}/services/T/B/secretpath") }));
    let err = create("slack", &p, &transport(3))
        .unwrap()
        .send(&notice(BuildStatus::Failed, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(got.lock().unwrap().len(), 1, "a 401 is final");
    assert!(err.contains("401") && !err.contains("secretpath"), "{err}");
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_then_reported_without_its_url_path() {
    let port = pipewright_testing::servers::free_port().unwrap();
    let p = params(json!({ "url": format!("http://127.0.0.1:{port}/services/T/B/secretpath") }));
    let err = create("slack", &p, &transport(2))
        .unwrap()
        .send(&notice(BuildStatus::Failed, "x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot reach 127.0.0.1 after 2 attempt"),
        "{err}"
    );
    assert!(!err.contains("secretpath"), "{err}");
}

#[tokio::test]
async fn secrets_in_messages_and_templates_arrive_masked() {
    let (base, got) = receiver(0, 500).await;
    let msg = format!("deploy with {SECRET} failed");
    for (kind, p) in [
        ("webhook", json!({ "url": format!("{base}/w") })),
        (
            "slack",
            json!({ "url": format!("{base}/s"), "username": "$TOKEN" }),
        ),
        (
            "gitea",
            json!({ "token": "t", "repository": "a/b", "base_url": base, "description": "$TOKEN" }),
        ),
    ] {
        let mut n = notice(BuildStatus::Failed, &msg);
        n.vars.insert("TOKEN".into(), SECRET.into());
        create(kind, &params(p), &transport(1))
            .unwrap()
            .send(&n)
            .await
            .unwrap();
    }
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 3);
    for g in got.iter() {
        let body = g.body.to_string();
        assert!(!body.contains(SECRET), "{body}");
        assert!(body.contains("***"), "{body}");
    }
    assert_eq!(got[0].body["message"], "deploy with *** failed");
    assert_eq!(got[1].body["username"], "***");
    assert_eq!(got[2].body["description"], "***");
}

#[tokio::test]
async fn a_forge_status_needs_a_commit() {
    let p = params(json!({ "token": "t", "repository": "a/b" }));
    let mut n = notice(BuildStatus::Failed, "x");
    n.versions.clear();
    let err = create("github-check", &p, &transport(1))
        .unwrap()
        .send(&n)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("set `sha`"), "{err}");
}

/// A GitHub stand-in: hands out an installation token for a JWT, records every request.
async fn github_app_receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    async fn token(
        State(r): State<Receiver>,
        uri: Uri,
        headers: HeaderMap,
    ) -> (StatusCode, axum::Json<Value>) {
        r.got.lock().unwrap().push(Got {
            path: uri.path().to_owned(),
            headers,
            body: Value::Null,
        });
        (
            StatusCode::CREATED,
            axum::Json(
                json!({ "token": "ghs_installation", "expires_at": "2030-01-01T00:00:00Z" }),
            ),
        )
    }
    let r = Receiver::default();
    let got = r.got.clone();
    let app = axum::Router::new()
        .route(
            "/api/v3/app/installations/77/access_tokens",
            axum::routing::post(token),
        )
        .fallback(record)
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

#[tokio::test]
async fn a_github_app_signs_a_jwt_for_an_installation_token_then_sets_the_status() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{self, KeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = key.as_der().unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let (base, got) = github_app_receiver().await;
    let p = params(json!({
        "app_id": "123456",
        "installation_id": "77",
        "private_key": pem,
        "repository": "acme/shop",
        "base_url": format!("{base}/api/v3"),
    }));
    create("github-check", &p, &transport(1))
        .unwrap()
        .send(&notice(BuildStatus::Succeeded, "green"))
        .await
        .unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].path, "/api/v3/app/installations/77/access_tokens");
    let jwt = header(&got[0], "authorization");
    let jwt = jwt.strip_prefix("Bearer ").unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header_json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header_json["alg"], "RS256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "123456");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 600, "valid for ten minutes, from a minute back");
    // Signed with the app's key.
    let public = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        key.public_key().as_ref(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .unwrap();
    // The status is set with the installation token.
    assert_eq!(
        got[1].path,
        "/api/v3/repos/acme/shop/statuses/0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(header(&got[1], "authorization"), "Bearer ghs_installation");
    assert_eq!(got[1].body["state"], "success");
}

#[tokio::test]
async fn a_github_app_needs_a_pem_key_and_its_ids() {
    let bad_key = params(json!({
        "app_id": "1", "installation_id": "2", "private_key": "not a key", "repository": "a/b",
    }));
    let err = create("github-check", &bad_key, &transport(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a PEM RSA private key"), "{err}");
    let no_install = params(json!({
        "app_id": "1", "private_key": "x", "repository": "a/b",
    }));
    let err = create("github-check", &no_install, &transport(1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`installation_id` is required"), "{err}");
}

#[test]
fn notifiers_debug_print_no_secret() {
    let t = transport(1);
    for (kind, p) in [
        (
            "webhook",
            json!({ "url": "https://h.example/hook/s3cr3t-path", "token": "tok-abc123", "headers": { "X-Key": "hdr-secret" } }),
        ),
        (
            "slack",
            json!({ "url": "https://hooks.slack.com/services/T/B/s3cr3t-path" }),
        ),
        ("gitlab", json!({ "token": "tok-abc123", "project": "a/b" })),
        (
            "email",
            json!({ "host": "smtp.example", "from": "a@example.com", "to": "b@example.com", "username": "u", "password": "tok-abc123" }),
        ),
    ] {
        let shown = format!("{:?}", create(kind, &params(p), &t).unwrap());
        for secret in ["s3cr3t-path", "tok-abc123", "hdr-secret"] {
            assert!(!shown.contains(secret), "{kind}: {shown}");
        }
    }
}
