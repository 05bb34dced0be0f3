//! The HTTP API's contract: errors as JSON with the right 4xx, roles, SSE resume, logs,
//! metrics, and pipelines that change while the server runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN, Ci};
use pipewright_core::BuildStatus;
use std::time::Duration;

const PIPELINE: &str = r#"
job "hello" {
  input "name" {
    type = string
  }
  input "count" {
    type    = number
    default = 1
  }
  task "greet" {
    run "shell" {
      cmd = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i $INPUT_NAME; done"
    }
  }
}
"#;

async fn error(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap().to_owned(),
        body["error"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_with_a_json_message() {
    let ci = Ci::start(PIPELINE).await;
    let anon = ci.http.get(ci.url("/pipelines")).send().await.unwrap();
    let (status, code, msg) = error(anon).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(msg.contains("Bearer"), "{msg}");
    let wrong = ci
        .http
        .get(ci.url("/pipelines"))
        .bearer_auth("pw_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(error(wrong).await.0, 401);

    // A viewer may read but not trigger; the 403 names the role needed.
    let made = ci
        .post(
            "/tokens",
            serde_json::json!({"name": "dash", "role": "viewer"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let viewer: pipewright_api::TokenView = made.json().await.unwrap();
    let viewer_token = viewer.token.clone().unwrap();
    let read = ci
        .http
        .get(ci.url("/pipelines/p"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let trigger = ci
        .http
        .post(ci.url("/pipelines/p/jobs/hello/builds"))
        .bearer_auth(&viewer_token)
        .json(&serde_json::json!({"inputs": {"name": "x"}}))
        .send()
        .await
        .unwrap();
    let (status, _, msg) = error(trigger).await;
    assert_eq!(status, 403);
    assert!(
        msg.contains("`operator` role") && msg.contains("has `viewer`"),
        "{msg}"
    );
    let tokens = ci
        .http
        .get(ci.url("/tokens"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(error(tokens).await.0, 403);

    // 404s name what is missing.
    for (path, what) in [
        ("/pipelines/nope", "no pipeline `nope`"),
        ("/builds/999", "no build 999"),
        (
            "/pipelines/p/resources/git.nope/versions",
            "no resource `git.nope`",
        ),
        ("/nothing/here", "no such route"),
    ] {
        let (status, code, msg) = error(ci.get(path).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{path}");
        assert!(msg.contains(what), "{path}: {msg}");
    }
    let (status, _, msg) = error(
        ci.post("/pipelines/p/jobs/helo/builds", serde_json::json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(msg.contains("did you mean `hello`"), "{msg}");

    // 400s: typed inputs, unknown inputs, a missing required one, malformed JSON, a bad id.
    for (body, what) in [
        (
            serde_json::json!({"inputs": {"name": 5}}),
            "input `name` must be a string",
        ),
        (
            serde_json::json!({"inputs": {"name": "a", "count": "x"}}),
            "input `count` must be a number",
        ),
        (
            serde_json::json!({"inputs": {"name": "a", "nmae": "b"}}),
            "input `nmae`: job `hello` has no such input",
        ),
        (
            serde_json::json!({"inputs": {}}),
            "input `name` is required",
        ),
        (serde_json::json!({"input": {}}), "unknown field `input`"),
    ] {
        let resp = ci
            .post("/pipelines/p/jobs/hello/builds", body.clone())
            .send()
            .await
            .unwrap();
        let (status, code, msg) = error(resp).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{body}");
        assert!(msg.contains(what), "{body}: {msg}");
    }
    let garbage = ci
        .http
        .post(ci.url("/pipelines/p/jobs/hello/builds"))
        .bearer_auth(ADMIN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error(garbage).await.0, 400);
    assert_eq!(
        error(ci.get("/builds/abc").send().await.unwrap()).await.0,
        400
    );
    // A body over the cap is refused before it is read whole.
    let big = "x".repeat(2 << 20);
    let resp = ci
        .http
        .post(ci.url("/pipelines/p/jobs/hello/builds"))
        .bearer_auth(ADMIN)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Nothing above created a build.
    assert!(ci.builds("hello").await.is_empty());

    // Revoked tokens stop working.
    let del = ci
        .http
        .delete(ci.url(&format!("/tokens/{}", viewer.id)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let after = ci
        .http
        .get(ci.url("/pipelines"))
        .bearer_auth(&viewer_token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_server_serves_reads_without_a_token_but_not_changes() {
    let ci = Ci::start_with(
        PIPELINE,
        std::sync::Arc::new(pipewright_store::MemoryStore::new()),
        true,
    )
    .await;
    let read = ci.http.get(ci.url("/pipelines")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    let write = ci
        .http
        .post(ci.url("/pipelines/p/jobs/hello/builds"))
        .json(&serde_json::json!({"inputs": {"name": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 401);
    ci.stop().await;
}

/// Reads SSE frames `(id, event)` from a response until `stop` frames or the stream ends.
async fn frames(resp: reqwest::Response, stop: Option<usize>) -> Vec<(u64, String)> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|v| v.trim().parse::<u64>().unwrap());
            let event = frame
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|v| v.trim().to_owned());
            if let (Some(id), Some(event)) = (id, event) {
                out.push((id, event));
                if Some(out.len()) == stop {
                    return out;
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_a_disconnect_with_every_event_exactly_once() {
    let ci = Ci::start(PIPELINE).await;
    let b = ci
        .trigger("hello", serde_json::json!({"name": "sse"}))
        .await;
    // Read five events, then drop the connection.
    let first = frames(
        ci.get(&format!("/builds/{}/events", b.id))
            .send()
            .await
            .unwrap(),
        Some(5),
    )
    .await;
    assert_eq!(first.len(), 5);
    let last = first.last().unwrap().0;
    // Resume from the last id seen; the stream ends after the build's last event.
    let rest = frames(
        ci.get(&format!("/builds/{}/events", b.id))
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap(),
        None,
    )
    .await;
    let done = ci.wait_done(b.id).await;
    assert_eq!(done.status, BuildStatus::Succeeded);
    let all = frames(
        ci.get(&format!("/builds/{}/events", b.id))
            .send()
            .await
            .unwrap(),
        None,
    )
    .await;
    let joined: Vec<(u64, String)> = first.into_iter().chain(rest).collect();
    assert_eq!(
        joined, all,
        "resumed = the whole stream, nothing twice, nothing missing"
    );
    let ids: Vec<u64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(all.last().map(|(_, e)| e.as_str()), Some("build_finished"));
    let log = ci.log(b.id).await;
    assert_eq!(log.matches("sse\n").count(), 10, "{log}");
    let bad = ci
        .get(&format!("/builds/{}/events", b.id))
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    let ci = Ci::start(PIPELINE).await;
    let b = ci.trigger("hello", serde_json::json!({"name": "m"})).await;
    ci.wait_done(b.id).await;
    let health = ci
        .http
        .get(format!("{}/healthz", ci.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = ci
        .http
        .get(format!("{}/metrics", ci.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "pipewright_builds_created_total 1",
        "pipewright_builds_finished_total{status=\"succeeded\"} 1",
        "pipewright_queue_depth",
        "pipewright_dispatch_latency_seconds_count 1",
        "pipewright_http_requests_total",
        "pipewright_workers 1",
        "pipewright_worker_running_builds{worker=\"local\"} 0",
        "pipewright_worker_last_heartbeat_age_seconds{worker=\"local\"}",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pipeline_takes_effect_and_an_invalid_one_is_rejected() {
    let ci = Ci::start(PIPELINE).await;
    let renamed = PIPELINE.replace("job \"hello\"", "job \"hi\"");
    std::fs::write(&ci.pipeline, &renamed).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list: Vec<pipewright_api::PipelineSummary> = ci
            .get("/pipelines")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list[0].jobs == vec!["hi".to_owned()] {
            break;
        }
        assert!(std::time::Instant::now() < until, "{list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(
        &ci.pipeline,
        "job \"broken\" {\n  task \"t\" {\n    run \"shel\" {}\n  }\n}\n",
    )
    .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let view: pipewright_api::PipelineView = ci
            .get("/pipelines/p")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view.config_error.is_some() {
            break view;
        }
        assert!(std::time::Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let err = view.config_error.unwrap();
    assert!(
        err.contains("p.hcl:3:"),
        "diagnostics name file:line: {err}"
    );
    assert_eq!(
        view.jobs
            .iter()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>(),
        vec!["hi"],
        "the old version keeps running"
    );
    let b = ci.trigger("hi", serde_json::json!({"name": "still"})).await;
    assert_eq!(ci.wait_done(b.id).await.status, BuildStatus::Succeeded);
    ci.stop().await;
}
