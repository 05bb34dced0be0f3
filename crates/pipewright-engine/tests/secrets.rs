//! Secrets in the engine with real `/bin/sh` commands: sources that answer one key per call,
//! reasons masked in the build result, `get` failures that quote nothing, short values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{BuildStatus, Event, EventKind, StepStatus};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "tk-7f3e9a1b2c4d";

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = EngineOptions {
            workspace_root: dir.path().join("builds"),
            kill_grace: Duration::from_millis(300),
            ..EngineOptions::default()
        };
        Self {
            dir,
            engine: Engine::new(Registry::with_builtins(Duration::from_millis(300)))
                .with_options(options),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    async fn job(&self, text: &str, job: &str) -> BuildResult {
        let text = text.replace("@DIR@", &self.dir.path().display().to_string());
        let p = match pipewright_config::load_str("test.hcl", &text, &Default::default()) {
            Ok(l) => l.pipeline,
            Err(e) => panic!("{}", e.render(false)),
        };
        let events = self.events.clone();
        let opts = RunOptions {
            events: Arc::new(move |e: Event| events.lock().unwrap().push(e)),
            ..RunOptions::default()
        };
        self.engine.run_job(&p, job, &opts).await.unwrap()
    }

    /// Every event, one JSON line each.
    fn events_text(&self) -> String {
        let mut out = String::new();
        for e in self.events.lock().unwrap().iter() {
            out.push_str(&serde_json::to_string(&e.kind).unwrap());
            out.push('\n');
        }
        out
    }

    fn log(&self, step: &str) -> String {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Log { step: s, data, .. } if s.to_string() == step => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}

fn step<'a>(b: &'a BuildResult, name: &str) -> &'a pipewright_engine::StepRecord {
    b.steps
        .iter()
        .find(|s| s.step.to_string() == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {:#?}", b.steps))
}

/// A `get` command that, like the `env` type, answers only the key it is asked for.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_answering_one_key_per_call_serves_every_key_of_a_path() {
    let h = Harness::new();
    let text = r#"
secret_type "one" {
  get "shell" {
    cmd = <<-SH
      echo "$param_key" >> @DIR@/calls
      printf '{"%s":"value-of-%s"}\n' "$param_key" "$param_key"
    SH
  }
}
variable "a" {
  type = string
  secret "one" { key = "MY_A" }
}
variable "b" {
  type = string
  secret "one" { key = "MY_B" }
}
job "j" {
  task "t" {
    env = {
      A = var.a
      B = var.b
    }
    run "shell" { cmd = "echo \"$A $B\" > @DIR@/seen" }
  }
}
"#;
    let b = h.job(text, "j").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let seen = std::fs::read_to_string(h.dir.path().join("seen")).unwrap();
    assert_eq!(seen, "value-of-MY_A value-of-MY_B\n");
    let calls = std::fs::read_to_string(h.dir.path().join("calls")).unwrap();
    assert_eq!(calls, "MY_A\nMY_B\n", "one call per key, none repeated");
}

/// A resource's failing `check` quotes its output, which holds a secret param: the reason is
/// masked in the events and in the build result alike.
#[tokio::test(flavor = "multi_thread")]
async fn reasons_in_the_build_result_are_masked() {
    let h = Harness::new();
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
resource_type "leaky" {{
  check "shell" {{ cmd = "echo \"auth=$param_token\"" }}
  pull "shell" {{ cmd = "true" }}
}}
resource "leaky" "r" {{
  params {{ token = var.token }}
}}
job "j" {{
  get "leaky" "r" {{}}
  task "after" {{
    run "shell" {{ cmd = "true" }}
  }}
}}
"#
    );
    let b = h.job(&text, "j").await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    let get = step(&b, "r");
    assert_eq!(get.status, StepStatus::Failed);
    let reason = get.reason.as_deref().unwrap();
    assert!(reason.contains("`auth=***`"), "{reason}");
    let build_reason = b.reason.as_deref().unwrap();
    assert!(build_reason.contains("auth=***"), "{build_reason}");
    let all = format!("{b:?}\n{}", h.events_text());
    assert!(!all.contains(TOKEN), "the token reached the result:\n{all}");
}

/// A failing `get` may print the secret on stderr: the reason gives the exit status only.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_get_quotes_none_of_its_output() {
    let h = Harness::new();
    let text = format!(
        r#"
secret_type "script" {{
  get "shell" {{
    cmd = "echo 'token {TOKEN} was refused' >&2; echo '{TOKEN}'; exit 4"
  }}
}}
variable "token" {{
  type = string
  secret "script" {{
    path = "ci"
    key  = "token"
  }}
}}
job "j" {{
  task "t" {{
    env = {{ T = var.token }}
    run "shell" {{ cmd = "echo never" }}
  }}
}}
"#
    );
    let b = h.job(&text, "j").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.as_deref().unwrap();
    assert!(
        reason.contains("`get` of secret type `script` failed: exit code 4")
            && reason.contains("its output is not shown"),
        "{reason}"
    );
    let all = format!("{b:?}\n{}", h.events_text());
    assert!(!all.contains(TOKEN), "the get's output was quoted:\n{all}");
    assert!(!all.contains("was refused"), "{all}");
}

/// A value under four characters is not masked (it would blank out unrelated text), and the
/// build log says so, naming the variable and not the value.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_secret_is_warned_about_by_name() {
    let h = Harness::new();
    let text = r#"
secret_type "script" {
  get "shell" { cmd = "printf '{\"pin\":\"q7z\",\"token\":\"tk-7f3e9a1b2c4d\"}\\n'" }
}
variable "pin" {
  type = string
  secret "script" {
    path = "ci"
    key  = "pin"
  }
}
variable "token" {
  type = string
  secret "script" {
    path = "ci"
    key  = "token"
  }
}
job "j" {
  task "t" {
    env = {
      P = var.pin
      T = var.token
    }
    run "shell" { cmd = "echo \"pin=$P token=$T\"" }
  }
}
"#;
    let b = h.job(text, "j").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let warning = h.log("job:secrets");
    assert_eq!(
        warning.matches("warning:").count(),
        1,
        "one warning, for `pin` only: {warning}"
    );
    assert!(
        warning.contains("secret variable `pin` is shorter than 4 characters")
            && warning.contains("not masked"),
        "{warning}"
    );
    assert!(!warning.contains("q7z"), "{warning}");
    assert_eq!(h.log("t"), "pin=q7z token=***\n");
}
