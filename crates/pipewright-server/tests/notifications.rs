//! `fixed` and `broken` on a real server: the previous build's status comes from the store
//! when the server plans a build, so a status change notifies and a repeat does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::extract::State;
use common::Ci;
use pipewright_core::BuildStatus;
use std::sync::{Arc, Mutex};

type Got = Arc<Mutex<Vec<serde_json::Value>>>;

async fn record(State(got): State<Got>, body: String) -> &'static str {
    got.lock()
        .unwrap()
        .push(serde_json::from_str(&body).unwrap());
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_and_broken_compare_with_the_previous_build_in_the_store() {
    let got = Got::default();
    let app = axum::Router::new().fallback(record).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hcl = format!(
        r#"
notification "webhook" "changes" {{
  params {{ url = "http://{addr}/changes" }}
  on = ["fixed", "broken"]
}}
job "flip" {{
  input "fail" {{
    type    = bool
    default = false
  }}
  task "maybe" {{
    run "shell" {{
      cmd = "test \"$INPUT_FAIL\" = false"
    }}
  }}
}}
"#
    );
    let ci = Ci::start(&hcl).await;
    // pass (first build: nothing to compare), fail (broken), fail, pass (fixed), pass.
    let mut notified = Vec::new();
    for fail in [false, true, true, false, false] {
        let b = ci
            .trigger("flip", serde_json::json!({ "fail": fail }))
            .await;
        let b = ci.wait_done(b.id).await;
        let want = if fail {
            BuildStatus::Failed
        } else {
            BuildStatus::Succeeded
        };
        assert_eq!(b.status, want);
        // The notification is sent before the build's end is reported.
        notified.push(got.lock().unwrap().len());
    }
    assert_eq!(notified, [0, 1, 1, 2, 2]);
    let got = got.lock().unwrap().clone();
    assert_eq!(
        (got[0]["number"].as_u64(), got[0]["status"].as_str()),
        (Some(2), Some("failed"))
    );
    assert_eq!(
        (got[1]["number"].as_u64(), got[1]["status"].as_str()),
        (Some(4), Some("succeeded"))
    );
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_carry_their_page_s_link_in_build_url_and_notifications() {
    let got = Got::default();
    let app = axum::Router::new().fallback(record).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hcl = format!(
        r#"
notification "webhook" "all" {{
  params {{ url = "http://{addr}/all" }}
  on = ["all"]
}}
job "hello" {{
  task "link" {{
    run "shell" {{
      cmd = "echo see $BUILD_URL"
    }}
  }}
}}
"#
    );
    let options = pipewright_server::ServerOptions {
        external_url: Some("https://ci.example.com".into()),
        ..pipewright_server::ServerOptions::default()
    };
    let worker = pipewright_server::LocalWorker {
        name: "local".into(),
        tags: vec![],
        concurrency: 1,
    };
    let ci = Ci::start_custom(
        &hcl,
        Arc::new(pipewright_store::MemoryStore::new()),
        options,
        Some(worker),
        Arc::new(pipewright_server::MemoryQueue::new()),
    )
    .await;
    let b = ci.trigger("hello", serde_json::json!({})).await;
    let b = ci.wait_done(b.id).await;
    assert_eq!(b.status, BuildStatus::Succeeded);
    let link = format!("https://ci.example.com/#/builds/{}", b.id);
    assert!(ci.log(b.id).await.contains(&format!("see {link}")));
    assert_eq!(got.lock().unwrap()[0]["url"].as_str(), Some(link.as_str()));
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_gate_notifies_when_a_build_starts_waiting() {
    let got = Got::default();
    let app = axum::Router::new().fallback(record).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hcl = format!(
        r##"
notification "webhook" "approvers" {{
  params {{ url = "http://{addr}/approvers" }}
}}
notification "webhook" "unreachable" {{
  params {{ url = "http://127.0.0.1:9/nobody" }}
}}
job "release" {{
  input "target" {{
    type    = string
    default = "staging"
  }}
  approve "ship" {{
    notify "webhook" "approvers" {{
      message = "#$BUILD_NUMBER to $INPUT_TARGET waits for `$APPROVAL_LABEL` ($BUILD_STATUS)"
    }}
    notify "webhook" "unreachable" {{}}
  }}
  task "go" {{
    run "shell" {{ cmd = "echo shipped" }}
  }}
}}
"##
    );
    let ci = Ci::start(&hcl).await;
    let b = ci
        .trigger("release", serde_json::json!({ "target": "prod" }))
        .await;
    assert_eq!(b.status, BuildStatus::WaitingForApproval);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no approval notice");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let notice = got.lock().unwrap()[0].clone();
    assert_eq!(notice["status"].as_str(), Some("waiting_for_approval"));
    assert_eq!(notice["number"].as_u64(), Some(b.number));
    assert_eq!(
        notice["message"].as_str(),
        Some(
            format!(
                "#{} to prod waits for `ship` (waiting_for_approval)",
                b.number
            )
            .as_str()
        )
    );
    // An unreachable receiver changes nothing: the build still waits, then runs when approved.
    assert_eq!(ci.build(b.id).await.status, BuildStatus::WaitingForApproval);
    let resp = ci
        .post(&format!("/builds/{}/approve", b.id), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(ci.wait_done(b.id).await.status, BuildStatus::Succeeded);
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "sent once, when the gate was reached"
    );
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_that_end_without_running_still_notify() {
    let got = Got::default();
    let app = axum::Router::new().fallback(record).with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hcl = format!(
        r#"
notification "webhook" "ends" {{
  params {{ url = "http://{addr}/ends" }}
  on = ["cancel", "failure"]
}}
job "gated" {{
  approve "go" {{}}
  task "t" {{
    run "shell" {{ cmd = "true" }}
  }}
}}
job "brief" {{
  approve "go" {{ timeout = "1s" }}
  task "t" {{
    run "shell" {{ cmd = "true" }}
  }}
}}
"#
    );
    let ci = Ci::start(&hcl).await;
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while got.lock().unwrap().len() < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "only {:?}",
                    got.lock().unwrap()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    // Cancelled while waiting for approval.
    let b = ci.trigger("gated", serde_json::json!({})).await;
    let resp = ci
        .post(&format!("/builds/{}/cancel", b.id), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    wait_for(1).await;
    // No approval within its timeout.
    let late = ci.trigger("brief", serde_json::json!({})).await;
    assert_eq!(ci.wait_done(late.id).await.status, BuildStatus::Cancelled);
    wait_for(2).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(
        (got[0]["job"].as_str(), got[0]["status"].as_str()),
        (Some("gated"), Some("cancelled"))
    );
    assert_eq!(
        (got[1]["job"].as_str(), got[1]["status"].as_str()),
        (Some("brief"), Some("cancelled"))
    );
    ci.stop().await;
}
