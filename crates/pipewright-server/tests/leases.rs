//! Leases and fencing: a worker that stops reporting loses its build, which is re-queued with
//! the next attempt; the lost worker's late reports change nothing; a build that keeps losing
//! its workers ends `errored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Ci;
use pipewright_core::BuildStatus;
use pipewright_server::{
    Dispatch, LinkError, LocalLink, MemoryQueue, Queue, ServerOptions, WorkerLink,
};
use pipewright_store::BuildId;
use std::sync::Arc;
use std::time::Duration;

const PIPELINE: &str = r#"
job "j" {
  task "t" {
    run "shell" {
      cmd = "echo hi"
    }
  }
}
"#;

async fn start(max_attempts: u32) -> (Ci, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::new());
    let options = ServerOptions {
        lease: Duration::from_millis(600),
        max_attempts,
        ..ServerOptions::default()
    };
    let ci = Ci::start_custom(
        PIPELINE,
        Arc::new(pipewright_store::MemoryStore::new()),
        options,
        None,
        queue.clone(),
    )
    .await;
    (ci, queue)
}

async fn take(queue: &MemoryQueue) -> (pipewright_server::Delivery, Dispatch) {
    let d = tokio::time::timeout(Duration::from_secs(10), queue.receive(&[]))
        .await
        .expect("a dispatch within 10s")
        .unwrap();
    let dispatch = Dispatch::from_message(&d.message).unwrap();
    (d, dispatch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_requeues_the_build_and_fences_the_lost_worker() {
    let (ci, queue) = start(5).await;
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let link = LocalLink(hub.clone());
    let b = ci.trigger("j", serde_json::json!({})).await;
    let (_, first) = take(&queue).await;
    assert_eq!((first.build, first.attempt), (BuildId(b.id), 1));
    link.claim(first.build, 1, "ghost").await.unwrap();
    assert_eq!(ci.build(b.id).await.status, BuildStatus::Running);
    // The ghost never heartbeats: within lease + a dispatch round, attempt 2 is queued.
    let (_, second) = take(&queue).await;
    assert_eq!((second.build, second.attempt), (BuildId(b.id), 2));
    let view = ci.build(b.id).await;
    assert_eq!(
        (view.status, view.attempt, view.worker),
        (BuildStatus::Pending, 1, None)
    );
    // Everything the ghost says now is refused and changes nothing.
    assert!(matches!(
        link.heartbeat(first.build, 1, "ghost").await,
        Err(LinkError::Fenced(_))
    ));
    assert!(matches!(
        link.finish(first.build, 1, BuildStatus::Succeeded, None)
            .await,
        Err(LinkError::Fenced(_))
    ));
    assert_eq!(ci.build(b.id).await.status, BuildStatus::Pending);
    // The second worker claims, heartbeats, and finishes: one terminal result.
    link.claim(second.build, 2, "w2").await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        link.heartbeat(second.build, 2, "w2").await.unwrap();
    }
    link.finish(second.build, 2, BuildStatus::Succeeded, None)
        .await
        .unwrap();
    let done = ci.build(b.id).await;
    assert_eq!(
        (done.status, done.attempt, done.worker.as_deref()),
        (BuildStatus::Succeeded, 2, Some("w2"))
    );
    assert!(matches!(
        link.finish(first.build, 1, BuildStatus::Failed, None).await,
        Err(LinkError::Fenced(_))
    ));
    assert_eq!(ci.build(b.id).await.status, BuildStatus::Succeeded);
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_keeps_losing_its_workers_ends_errored() {
    let (ci, queue) = start(2).await;
    let link = LocalLink(ci.server.as_ref().unwrap().hub.clone());
    let b = ci.trigger("j", serde_json::json!({})).await;
    for attempt in 1..=2 {
        let (_, d) = take(&queue).await;
        assert_eq!(d.attempt, attempt);
        link.claim(d.build, attempt, "ghost").await.unwrap();
    }
    let done = ci.wait_done(b.id).await;
    assert_eq!(done.status, BuildStatus::Errored);
    let reason = done.reason.unwrap();
    assert!(
        reason.contains("started 2 times and never finished")
            && reason.contains("ghost stopped reporting"),
        "{reason}"
    );
    ci.stop().await;
}
