//! The scheduler against real git repositories and real tasks: versions flow by `passed`,
//! `every` vs `latest`, concurrency, serial groups, interruptible jobs, approvals, inputs,
//! reruns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ci, commit, repo};
use pipewright_core::BuildStatus;
use std::time::Duration;

fn flow_pipeline(repo: &std::path::Path) -> String {
    format!(
        r#"
resource "git" "src" {{
  params {{
    url = "{}"
  }}
  check_interval = "@every 10s"
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

job "deploy" {{
  get "git" "src" {{
    trigger = true
    passed  = ["test"]
  }}
  task "d" {{
    run "shell" {{
      cmd = "echo deploying $GET_SRC_REF"
    }}
  }}
}}

job "every" {{
  get "git" "src" {{
    trigger = true
    version = "every"
  }}
  task "e" {{
    run "shell" {{
      cmd = "echo every $GET_SRC_REF"
    }}
  }}
}}
"#,
        repo.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_flow_from_test_to_deploy_by_passed_within_one_check_interval() {
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let ci = Ci::start(&flow_pipeline(&repo)).await;
    let first = ci
        .wait_builds("deploy", Duration::from_secs(30), |b| {
            b.first()
                .is_some_and(|b| b.status == BuildStatus::Succeeded)
        })
        .await;
    assert_eq!(first.len(), 1);
    // A new commit, found by the check loop on its own (no check on demand).
    let sha = commit(&repo, "two");
    let deploys = ci
        .wait_builds("deploy", Duration::from_secs(25), |b| {
            b.len() == 2 && b[0].status == BuildStatus::Succeeded
        })
        .await;
    assert_eq!(deploys[0].inputs["git.src"].get("ref"), Some(sha.as_str()));
    assert!(
        ci.log(deploys[0].id)
            .await
            .contains(&format!("deploying {sha}"))
    );
    let tests = ci.builds("test").await;
    assert_eq!(tests.len(), 2, "one test build per commit");
    // deploy ran after test had passed with the same version.
    assert!(deploys[0].created_at_ms >= tests[0].finished_at_ms.unwrap());
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builds_each_version_and_latest_coalesces() {
    let src = tempfile::tempdir().unwrap();
    let repo = repo(src.path());
    let ci = Ci::start(&flow_pipeline(&repo)).await;
    ci.wait_builds("every", Duration::from_secs(30), |b| {
        b.len() == 1 && b[0].status.is_terminal()
    })
    .await;
    ci.wait_builds("test", Duration::from_secs(30), |b| {
        b.len() == 1 && b[0].status.is_terminal()
    })
    .await;
    let shas: Vec<String> = (2..=4).map(|n| commit(&repo, &format!("c{n}"))).collect();
    let resp = ci
        .post(
            "/pipelines/p/resources/git.src/check",
            serde_json::json!({}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let every = ci
        .wait_builds("every", Duration::from_secs(30), |b| {
            b.len() == 4 && b.iter().all(|b| b.status.is_terminal())
        })
        .await;
    // Oldest version first: build #2 got c2, #4 got c4.
    let got: Vec<&str> = every[..3]
        .iter()
        .rev()
        .map(|b| b.inputs["git.src"].get("ref").unwrap())
        .collect();
    assert_eq!(got, shas.iter().map(String::as_str).collect::<Vec<_>>());
    let tests = ci
        .wait_builds("test", Duration::from_secs(30), |b| {
            b.len() == 2 && b[0].status.is_terminal()
        })
        .await;
    assert_eq!(
        tests[0].inputs["git.src"].get("ref"),
        Some(shas[2].as_str()),
        "latest coalesces to the newest"
    );
    ci.stop().await;
}

const SLOW: &str = r#"
job "slow" {
  input "tag" {
    type    = string
    default = "none"
  }
  task "wait" {
    run "shell" {
      cmd = "echo start $INPUT_TAG; sleep 1; echo end $INPUT_TAG"
    }
  }
}

job "a" {
  serial_groups = ["deploy"]
  task "wait" {
    run "shell" {
      cmd = "sleep 1"
    }
  }
}

job "b" {
  serial_groups = ["deploy"]
  task "wait" {
    run "shell" {
      cmd = "sleep 1"
    }
  }
}

job "latest-wins" {
  interruptible = true
  task "wait" {
    run "shell" {
      cmd = "sleep 30"
    }
  }
}

job "gated" {
  approve "release" {
    approvals = 1
  }
  task "go" {
    run "shell" {
      cmd = "echo released"
    }
  }
}

job "gated-briefly" {
  approve "release" {
    approvals = 1
    timeout   = "1s"
  }
  task "go" {
    run "shell" {
      cmd = "echo released"
    }
  }
}

job "flaky" {
  input "fail" {
    type    = bool
    default = false
  }
  task "maybe" {
    run "shell" {
      cmd = "echo value=$INPUT_FAIL; test \"$INPUT_FAIL\" = false"
    }
  }
}
"#;

fn overlap(a: &pipewright_api::BuildView, b: &pipewright_api::BuildView) -> bool {
    let (a0, a1) = (a.started_at_ms.unwrap(), a.finished_at_ms.unwrap());
    let (b0, b1) = (b.started_at_ms.unwrap(), b.finished_at_ms.unwrap());
    a0 < b1 && b0 < a1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_one_queues_the_second_build_and_inputs_reach_the_task() {
    let ci = Ci::start(SLOW).await;
    let one = ci
        .trigger("slow", serde_json::json!({"tag": "first"}))
        .await;
    let two = ci
        .trigger("slow", serde_json::json!({"tag": "second"}))
        .await;
    // While the first runs, the second waits and says why (once the dispatcher looked at it).
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let waiting = ci.build(two.id).await;
        if waiting.status != BuildStatus::Pending {
            break;
        }
        if let Some(reason) = waiting.reason {
            assert!(reason.contains("at most 1 build"), "{reason}");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "no reason given: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (one, two) = (ci.wait_done(one.id).await, ci.wait_done(two.id).await);
    assert_eq!(
        (one.status, two.status),
        (BuildStatus::Succeeded, BuildStatus::Succeeded)
    );
    assert!(!overlap(&one, &two), "{one:?}\n{two:?}");
    assert!(ci.log(two.id).await.contains("start second"));
    assert_eq!(two.input_values["tag"], "second");
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_groups_never_run_together() {
    let ci = Ci::start(SLOW).await;
    let a = ci.trigger("a", serde_json::json!({})).await;
    let b = ci.trigger("b", serde_json::json!({})).await;
    let (a, b) = (ci.wait_done(a.id).await, ci.wait_done(b.id).await);
    assert_eq!(
        (a.status, b.status),
        (BuildStatus::Succeeded, BuildStatus::Succeeded)
    );
    assert!(!overlap(&a, &b), "{a:?}\n{b:?}");
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interruptible_jobs_newer_build_cancels_the_older() {
    let ci = Ci::start(SLOW).await;
    let old = ci.trigger("latest-wins", serde_json::json!({})).await;
    ci.wait_builds("latest-wins", Duration::from_secs(20), |b| {
        b.iter()
            .any(|b| b.id == old.id && b.status == BuildStatus::Running)
    })
    .await;
    let new = ci.trigger("latest-wins", serde_json::json!({})).await;
    let old = ci.wait_done(old.id).await;
    assert_eq!(old.status, BuildStatus::Cancelled);
    assert!(
        old.reason
            .unwrap_or_default()
            .contains("interrupted by the newer build #2")
    );
    // The newer one runs now; cancel it through the API.
    ci.wait_builds("latest-wins", Duration::from_secs(20), |b| {
        b.iter()
            .any(|b| b.id == new.id && b.status == BuildStatus::Running)
    })
    .await;
    let resp = ci
        .post(&format!("/builds/{}/cancel", new.id), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let new = ci.wait_done(new.id).await;
    assert_eq!(new.status, BuildStatus::Cancelled);
    assert_eq!(new.reason.as_deref(), Some("cancelled by admin"));
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_gates_a_build_until_approved() {
    let ci = Ci::start(SLOW).await;
    let b = ci.trigger("gated", serde_json::json!({})).await;
    assert_eq!(b.status, BuildStatus::WaitingForApproval);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ci.build(b.id).await.status,
        BuildStatus::WaitingForApproval,
        "it waits"
    );
    let resp = ci
        .post(&format!("/builds/{}/approve", b.id), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let done = ci.wait_done(b.id).await;
    assert_eq!(done.status, BuildStatus::Succeeded);
    assert_eq!(done.approved_by, vec!["admin".to_owned()]);
    // Approving again is a conflict, not a second approval.
    let again = ci
        .post(&format!("/builds/{}/approve", b.id), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_does_not_come_in_time_cancels_the_build() {
    let ci = Ci::start(SLOW).await;
    let b = ci.trigger("gated-briefly", serde_json::json!({})).await;
    let b = ci.wait_done(b.id).await;
    assert_eq!(b.status, BuildStatus::Cancelled);
    assert_eq!(b.reason.as_deref(), Some("no approval within 1s"));
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_is_a_new_build_with_the_same_versions_and_inputs() {
    let ci = Ci::start(SLOW).await;
    let failed = ci.trigger("flaky", serde_json::json!({"fail": true})).await;
    let failed = ci.wait_done(failed.id).await;
    assert_eq!(failed.status, BuildStatus::Failed);
    assert!(ci.log(failed.id).await.contains("value=true"));
    for from in ["job", "failed-step"] {
        let resp = ci
            .post(
                &format!("/builds/{}/rerun", failed.id),
                serde_json::json!({ "from": from }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let rerun: pipewright_api::BuildView = resp.json().await.unwrap();
        assert_eq!(rerun.rerun_of, Some(failed.id));
        assert_eq!(rerun.input_values, failed.input_values);
        assert_eq!(rerun.inputs, failed.inputs);
        if from == "failed-step" {
            assert!(
                rerun.trigger.contains("starts at the failed step `maybe`"),
                "{}",
                rerun.trigger
            );
        }
        let rerun = ci.wait_done(rerun.id).await;
        assert_eq!(
            rerun.status,
            BuildStatus::Failed,
            "same inputs, same result"
        );
    }
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_a_put_makes_triggers_the_jobs_that_get_it() {
    let store = tempfile::tempdir().unwrap();
    let hcl = format!(
        r#"
resource "artifact" "bundle" {{
  params {{
    dir = "{}"
  }}
}}

job "build" {{
  input "rev" {{
    type = string
  }}
  task "package" {{
    run "shell" {{
      cmd = "mkdir -p out && echo $INPUT_REV > out/REVISION"
    }}
  }}
  put "artifact" "bundle" {{
    from = "out"
  }}
}}

job "deploy" {{
  get "artifact" "bundle" {{
    trigger = true
    passed  = ["build"]
  }}
  task "release" {{
    run "shell" {{
      cmd = "echo deploying $(cat bundle/REVISION)"
    }}
  }}
}}
"#,
        store.path().display()
    );
    let ci = Ci::start(&hcl).await;
    for rev in ["r1", "r2"] {
        let b = ci.trigger("build", serde_json::json!({ "rev": rev })).await;
        assert_eq!(ci.wait_done(b.id).await.status, BuildStatus::Succeeded);
        let deploys = ci
            .wait_builds("deploy", Duration::from_secs(20), |d| {
                d.iter()
                    .any(|d| d.status.is_terminal() && d.trigger.contains("artifact.bundle"))
                    && d.iter().all(|d| d.status.is_terminal())
                    && d.len() == if rev == "r1" { 1 } else { 2 }
            })
            .await;
        assert_eq!(deploys[0].status, BuildStatus::Succeeded);
        assert!(
            ci.log(deploys[0].id)
                .await
                .contains(&format!("deploying {rev}"))
        );
    }
    ci.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_from_the_failed_step_restores_the_steps_before_it() {
    let mark = tempfile::tempdir().unwrap();
    let hcl = format!(
        r#"
job "two-step" {{
  task "prepare" {{
    run "shell" {{
      cmd = "echo run >> {m}/prepare-runs; echo value=42 >> $PIPEWRIGHT_OUTPUT"
    }}
  }}
  task "check" {{
    run "shell" {{
      cmd = "test \"$TASK_PREPARE_VALUE\" = 42 && test -f {m}/ok"
    }}
  }}
}}
"#,
        m = mark.path().display()
    );
    let ci = Ci::start(&hcl).await;
    let first = ci.trigger("two-step", serde_json::json!({})).await;
    assert_eq!(ci.wait_done(first.id).await.status, BuildStatus::Failed);
    std::fs::write(mark.path().join("ok"), "").unwrap();
    let resp = ci
        .post(
            &format!("/builds/{}/rerun", first.id),
            serde_json::json!({"from": "failed-step"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let rerun: pipewright_api::BuildView = resp.json().await.unwrap();
    assert!(
        rerun
            .trigger
            .contains("starts at the failed step `check`; restored from build #1: prepare"),
        "{}",
        rerun.trigger
    );
    let rerun = ci.wait_done(rerun.id).await;
    assert_eq!(rerun.status, BuildStatus::Succeeded, "{rerun:#?}");
    let runs = std::fs::read_to_string(mark.path().join("prepare-runs")).unwrap();
    assert_eq!(runs.lines().count(), 1, "prepare did not run again");
    let prepare = rerun.steps.iter().find(|s| s.step == "prepare").unwrap();
    assert_eq!(
        prepare.reason.as_deref(),
        Some("not run again: restored from build #1")
    );
    // From the job: everything runs again.
    let resp = ci
        .post(
            &format!("/builds/{}/rerun", first.id),
            serde_json::json!({"from": "job"}),
        )
        .send()
        .await
        .unwrap();
    let again: pipewright_api::BuildView = resp.json().await.unwrap();
    assert_eq!(ci.wait_done(again.id).await.status, BuildStatus::Succeeded);
    let runs = std::fs::read_to_string(mark.path().join("prepare-runs")).unwrap();
    assert_eq!(runs.lines().count(), 2);
    ci.stop().await;
}
