//! Built-in notifications from real builds to a real local receiver: dispatch by outcome,
//! `jobs`/`exclude`, `fixed`/`broken` against the previous build, `notify` steps, a failing
//! receiver that changes nothing, and secrets that arrive masked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use pipewright_core::{BuildStatus, Event, StepStatus};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got: path, `authorization` header, JSON body.
type Got = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn record(
    State((got, status)): State<(Got, u16)>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    got.lock()
        .unwrap()
        .push((uri.path().to_owned(), auth, body));
    StatusCode::from_u16(status).unwrap()
}

/// A receiver answering `status` to everything; its base URL and what it got.
async fn receiver(status: u16) -> (String, Got) {
    let got = Got::default();
    let app = axum::Router::new()
        .fallback(record)
        .with_state((got.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

struct Harness {
    _dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = EngineOptions {
            workspace_root: dir.path().join("builds"),
            kill_grace: Duration::from_millis(300),
            notify_attempts: 2,
            notify_backoff: Duration::from_millis(10),
            ..EngineOptions::default()
        };
        Self {
            _dir: dir,
            engine: Engine::new(Registry::with_builtins(Duration::from_millis(300)))
                .with_options(options),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    async fn run(&self, text: &str, job: &str, previous: Option<BuildStatus>) -> BuildResult {
        let p = match pipewright_config::load_str("test.hcl", text, &Default::default()) {
            Ok(l) => l.pipeline,
            Err(e) => panic!("{}", e.render(false)),
        };
        let events = self.events.clone();
        let opts = RunOptions {
            events: Arc::new(move |e: Event| events.lock().unwrap().push(e)),
            previous_status: previous
                .map(|s| BTreeMap::from([(job.to_owned(), s)]))
                .unwrap_or_default(),
            ..RunOptions::default()
        };
        self.engine.run_job(&p, job, &opts).await.unwrap()
    }
}

const JOBS: &str = r#"
job "good" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
job "bad" {
  task "t" {
    run "shell" { cmd = "exit 3" }
  }
}
"#;

/// The paths the receiver got, sorted.
fn paths(got: &Got) -> Vec<String> {
    let mut p: Vec<String> = got.lock().unwrap().iter().map(|g| g.0.clone()).collect();
    p.sort();
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_s_end_dispatches_by_outcome_and_job_filters() {
    let (base, got) = receiver(200).await;
    let text = format!(
        r#"
notification "webhook" "failures" {{
  params {{ url = "{base}/failures" }}
  on   = ["failure"]
  jobs = ["bad"]
}}
notification "slack" "green" {{
  params {{ url = "{base}/green" }}
  message = "$BUILD_JOB_NAME #$BUILD_NUMBER passed"
  on      = ["success"]
  exclude = ["bad"]
}}
notification "webhook" "everything" {{
  params {{ url = "{base}/all" }}
  on = ["all"]
}}
notification "webhook" "manual" {{
  params {{ url = "{base}/never" }}
}}
{JOBS}"#
    );
    let h = Harness::new();
    let good = h.run(&text, "good", None).await;
    assert_eq!(good.status, BuildStatus::Succeeded);
    assert_eq!(paths(&got), ["/all", "/green"]);
    let slack = got
        .lock()
        .unwrap()
        .iter()
        .find(|g| g.0 == "/green")
        .unwrap()
        .2
        .clone();
    assert_eq!(slack["text"], "good #1 passed");
    for id in ["notify:slack.green", "notify:webhook.everything"] {
        let rec = good.steps.iter().find(|s| s.step.to_string().ends_with(id));
        assert_eq!(
            rec.map(|r| r.status),
            Some(StepStatus::Succeeded),
            "{id}: {:#?}",
            good.steps
        );
    }
    got.lock().unwrap().clear();

    let bad = h.run(&text, "bad", None).await;
    assert_eq!(bad.status, BuildStatus::Failed);
    assert_eq!(paths(&got), ["/all", "/failures"]);
    let hook = got
        .lock()
        .unwrap()
        .iter()
        .find(|g| g.0 == "/failures")
        .unwrap()
        .2
        .clone();
    assert_eq!(hook["job"], "bad");
    assert_eq!(hook["status"], "failed");
    assert_eq!(hook["pipeline"], "pipeline");
}

#[tokio::test(flavor = "multi_thread")]
async fn fixed_and_broken_fire_only_when_the_status_changed_from_the_previous_build() {
    let (base, got) = receiver(200).await;
    let text = format!(
        r#"
notification "webhook" "changes" {{
  params {{ url = "{base}/changes" }}
  on = ["fixed", "broken"]
}}
{JOBS}"#
    );
    let h = Harness::new();
    let cases = [
        ("good", Some(BuildStatus::Failed), true),
        ("good", Some(BuildStatus::Succeeded), false),
        ("good", None, false),
        ("bad", Some(BuildStatus::Succeeded), true),
        ("bad", Some(BuildStatus::Failed), false),
        ("bad", None, false),
    ];
    for (job, previous, fires) in cases {
        got.lock().unwrap().clear();
        h.run(&text, job, previous).await;
        let n = got.lock().unwrap().len();
        assert_eq!(n, usize::from(fires), "{job} after {previous:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_notification_is_logged_on_the_build_and_changes_nothing() {
    let (base, got) = receiver(500).await;
    let text = format!(
        r#"
notification "webhook" "down" {{
  params {{ url = "{base}/down" }}
  on = ["all"]
}}
{JOBS}"#
    );
    let h = Harness::new();
    let b = h.run(&text, "good", None).await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_eq!(got.lock().unwrap().len(), 2, "notify_attempts = 2");
    let rec = b
        .steps
        .iter()
        .find(|s| s.step.to_string().ends_with("notify:webhook.down"))
        .unwrap();
    assert_eq!(rec.status, StepStatus::Failed);
    let reason = rec.reason.as_deref().unwrap();
    assert!(reason.contains("answered 500 after 2 attempt"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_step_of_a_built_in_type_sends_with_its_overrides() {
    let (base, got) = receiver(200).await;
    let text = format!(
        r#"
notification "discord" "team" {{
  params {{ url = "{base}/discord" }}
  message = "default"
}}
job "deploy" {{
  task "t" {{
    run "shell" {{ cmd = "true" }}
  }}
  notify "discord" "team" {{
    message  = "deploying $BUILD_JOB_NAME"
    username = "release-bot"
  }}
}}
"#
    );
    let h = Harness::new();
    let b = h.run(&text, "deploy", None).await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].2,
        serde_json::json!({ "content": "deploying deploy", "username": "release-bot" })
    );
}

const TOKEN: &str = "tk-9c8b7a6f5e4d";

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_a_notification_s_message_arrives_masked() {
    let (base, got) = receiver(200).await;
    let text = format!(
        r#"
secret_type "script" {{
  get "shell" {{ cmd = "printf '{{\"token\":\"{TOKEN}\"}}\\n'" }}
}}
variable "token" {{
  type = string
  secret "script" {{
    path = "ci"
    key  = "token"
  }}
}}
notification "webhook" "audit" {{
  params {{
    url   = "{base}/audit"
    token = var.token
  }}
  message = "deployed with ${{var.token}} by $BUILD_JOB_NAME"
  on      = ["success"]
}}
{JOBS}"#
    );
    let h = Harness::new();
    let b = h.run(&text, "good", None).await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "{b:#?}");
    let (_, auth, body) = &got[0];
    // The token authenticates the request, and is masked in what it says.
    assert_eq!(auth, &format!("Bearer {TOKEN}"));
    assert_eq!(body["message"], "deployed with *** by good");
    assert!(!body.to_string().contains(TOKEN), "{body}");
    let events = format!("{:?}", h.events.lock().unwrap());
    assert!(!events.contains(TOKEN), "the token reached the events");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_type_pointing_at_a_built_in_sends_with_it() {
    let (base, got) = receiver(200).await;
    let text = format!(
        r#"
notification_type "chat" {{
  source = "pipewright://slack"
}}
notification "chat" "team" {{
  params {{ url = "{base}/chat" }}
  message = "$BUILD_JOB_NAME: $BUILD_STATUS"
  on      = ["failure"]
}}
{JOBS}"#
    );
    let h = Harness::new();
    let b = h.run(&text, "bad", None).await;
    assert_eq!(b.status, BuildStatus::Failed);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "{b:#?}");
    assert_eq!(got[0].0, "/chat");
    assert_eq!(got[0].2, serde_json::json!({ "text": "bad: failed" }));
}
