//! The event contract v1 (`docs/events.md`) with real processes: the JSON of a whole build as a
//! snapshot, and the guarantees a consumer of a stored stream relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{BuildStatus, Event, EventKind, SCHEMA_VERSION, StepId, StepStatus};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions, StepRecord};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One job with a secret export, a retry, an in_parallel group, an if/else, a failure with a
/// hook, a skipped step and a job hook.
const PIPELINE: &str = r#"
secret_type "script" {
  get "shell" {
    cmd = "printf '{\"token\":\"tk-sekrit-4242\"}\n'"
  }
}
variable "token" {
  type = string
  secret "script" {
    path = "p"
    key  = "token"
  }
}
job "j" {
  task "prep" {
    env = { T = var.token }
    run "shell" {
      cmd = "echo prepared; echo \"KEY=$T\" >> \"$PIPEWRIGHT_OUTPUT\"; echo N=1 >> \"$PIPEWRIGHT_OUTPUT\""
    }
  }
  in_parallel {
    limit = 1
    task "flaky" {
      attempts = 2
      run "shell" {
        cmd = "if [ ! -f .once ]; then touch .once; echo boom >&2; exit 3; fi; echo ok"
      }
    }
  }
  if "two" {
    condition = "$TASK_PREP_N == '2'"
    task "deploy" {
      run "shell" { cmd = "echo deploy" }
    }
  }
  else {
    task "preview" {
      run "shell" { cmd = "echo preview" }
    }
  }
  task "fail" {
    run "shell" { cmd = "exit 1" }
    on_failure "shell" {
      cmd = "echo hook"
    }
  }
  task "after" {
    run "shell" { cmd = "echo never" }
  }
  ensure "shell" {
    cmd = "echo \"done $BUILD_STATUS\""
  }
}
"#;

async fn run() -> (BuildResult, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(Registry::with_builtins(Duration::from_millis(300))).with_options(
        EngineOptions {
            workspace_root: dir.path().join("builds"),
            ..EngineOptions::default()
        },
    );
    let p = pipewright_config::load_str("test.hcl", PIPELINE, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let opts = RunOptions {
        events: Arc::new(move |e: Event| sink.lock().unwrap().push(e)),
        ..RunOptions::default()
    };
    let b = engine.run_job(&p.pipeline, "j", &opts).await.unwrap();
    let events = events.lock().unwrap().clone();
    (b, events)
}

/// Ids, times and durations replaced, so the stream compares across runs.
fn normalise(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match k.as_str() {
                    "build_id" => *val = "[build]".into(),
                    "at_ms" | "duration_ms" => *val = 0.into(),
                    _ => normalise(val),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_of_a_build() {
    let (b, events) = run().await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    let mut lines = String::new();
    for e in &events {
        let mut v = serde_json::to_value(e).unwrap();
        normalise(&mut v);
        lines.push_str(&serde_json::to_string(&v).unwrap());
        lines.push('\n');
    }
    assert!(!lines.contains("tk-sekrit-4242"), "{lines}");
    insta::assert_snapshot!("build_events", lines);
}

/// What a consumer of the stored stream alone rebuilds: each step's end, with its attempts and
/// its duration as the sum of its attempts'.
fn rebuild(events: &[Event]) -> Vec<(StepRecord, u64)> {
    let mut spent: BTreeMap<StepId, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        if let EventKind::StepFinished {
            step,
            attempt,
            is_final,
            status,
            duration_ms,
            reason,
            ..
        } = &e.kind
        {
            *spent.entry(step.clone()).or_default() += duration_ms;
            if *is_final {
                let rec = StepRecord {
                    step: step.clone(),
                    status: *status,
                    attempts: *attempt,
                    duration: Duration::ZERO,
                    reason: reason.clone(),
                };
                out.push((rec, spent[step]));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_stream_is_enough_to_show_the_build() {
    let (b, events) = run().await;
    // Sequence numbers 0, 1, 2… and the schema on every event.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.schema, SCHEMA_VERSION);
        assert_eq!(e.build_id, b.build_id);
    }
    assert!(matches!(events[0].kind, EventKind::BuildStarted { .. }));
    // One started before every finished, skips included; one final end per step.
    let mut open: BTreeMap<(StepId, u32), ()> = BTreeMap::new();
    let mut finals: BTreeMap<StepId, u32> = BTreeMap::new();
    for e in &events {
        match &e.kind {
            EventKind::StepStarted { step, attempt, .. } => {
                assert!(open.insert((step.clone(), *attempt), ()).is_none());
            }
            EventKind::StepFinished {
                step,
                attempt,
                is_final,
                ..
            } => {
                assert!(
                    open.remove(&(step.clone(), *attempt)).is_some(),
                    "{step} attempt {attempt} finished without starting"
                );
                if *is_final {
                    *finals.entry(step.clone()).or_default() += 1;
                }
            }
            EventKind::Log { step, attempt, .. } | EventKind::Exports { step, attempt, .. } => {
                assert!(
                    open.contains_key(&(step.clone(), *attempt)),
                    "output of {step} outside its attempt"
                );
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "never finished: {open:?}");
    assert!(finals.values().all(|n| *n == 1), "{finals:?}");
    // The steps, their attempts, statuses, reasons and durations, from the events alone.
    let rebuilt = rebuild(&events);
    assert_eq!(rebuilt.len(), b.steps.len());
    for ((rec, ms), want) in rebuilt.iter().zip(&b.steps) {
        assert_eq!(rec.step, want.step);
        assert_eq!(rec.status, want.status);
        assert_eq!(rec.attempts, want.attempts);
        assert_eq!(rec.reason, want.reason);
        let diff = (want.duration.as_millis() as u64).abs_diff(*ms);
        assert!(
            diff <= u64::from(want.attempts),
            "{}: {ms}ms vs {want:?}",
            want.step
        );
    }
    let flaky = b
        .steps
        .iter()
        .find(|s| s.step.to_string() == "flaky")
        .unwrap();
    assert_eq!((flaky.status, flaky.attempts), (StepStatus::Succeeded, 2));
    assert_eq!(flaky.step.path, ["in_parallel", "flaky"]);
    // The end: one build_finished, last, with the summary the result gives.
    let EventKind::BuildFinished {
        status,
        reason,
        steps,
        ..
    } = &events.last().unwrap().kind
    else {
        panic!("the last event is not build_finished")
    };
    assert_eq!(
        (*status, reason.as_deref()),
        (b.status, b.reason.as_deref())
    );
    assert_eq!(steps, &b.steps);
    let finished = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::BuildFinished { .. }))
        .count();
    assert_eq!(finished, 1);
    // Exports, masked, so a resumed build sees what the steps after `prep` saw.
    let exports = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Exports { exports, .. } => Some(exports.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(exports["TASK_PREP_KEY"], "***");
    assert_eq!(exports["TASK_PREP_N"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn results_serialize_as_the_contract_does() {
    let (b, _) = run().await;
    let json = serde_json::to_value(&b).unwrap();
    assert_eq!(json["steps"][0]["step"]["path"][0], "prep");
    assert_eq!(json["steps"][0]["step"]["role"], "step");
    assert!(json["duration_ms"].is_u64());
    let back: BuildResult = serde_json::from_value(json).unwrap();
    assert_eq!(back.steps.len(), b.steps.len());
    for (got, want) in back.steps.iter().zip(&b.steps) {
        assert_eq!(
            (&got.step, got.status, got.attempts),
            (&want.step, want.status, want.attempts)
        );
        assert_eq!(got.duration.as_millis(), want.duration.as_millis());
    }
}
