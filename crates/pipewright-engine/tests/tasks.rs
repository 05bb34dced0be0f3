//! What a task sees and leaves behind: env expansion, job-wide env, globbed outputs, and how
//! a failure is explained. Every task is a real `/bin/sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{BuildStatus, Event, EventKind};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        workspace_root: dir.path().join("builds"),
        kill_grace: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    Harness {
        dir,
        engine: Engine::new(Registry::with_builtins(Duration::from_millis(300)))
            .with_options(options),
        events: Arc::new(Mutex::new(Vec::new())),
    }
}

impl Harness {
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

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
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

#[tokio::test(flavor = "multi_thread")]
async fn env_values_expand_build_names_and_keep_the_rest() {
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  task "version" {
    run "shell" { cmd = "echo V=1.4 >> \"$PIPEWRIGHT_OUTPUT\"" }
  }
  task "use" {
    env = {
      CACHE   = "$WORKDIR/.pip"
      TAG     = "v$TASK_VERSION_V-$${BUILD_NUMBER}"
      LITERAL = "$$WORKDIR and $HOME"
    }
    run "shell" {
      cmd = "printf '%s\\n' \"$CACHE\" \"$TAG\" \"$LITERAL\" > @DIR@/out; test \"$CACHE\" = \"$WORKDIR/.pip\""
    }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let out = h.file("out");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].ends_with("/.pip") && lines[0].contains("builds"),
        "{out}"
    );
    assert_eq!(lines[1], "v1.4-1");
    assert_eq!(lines[2], "$WORKDIR and $HOME");
}

#[tokio::test(flavor = "multi_thread")]
async fn pipewright_env_reaches_every_later_step_of_the_job() {
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  task "setup" {
    run "shell" {
      cmd = "echo VENV=\"$WORKDIR/venv\" >> \"$PIPEWRIGHT_ENV\"; echo 'Mode=fast' >> \"$PIPEWRIGHT_ENV\""
    }
  }
  task "second" {
    run "shell" { cmd = "echo \"$VENV $Mode\" > @DIR@/second; echo Mode=slow >> \"$PIPEWRIGHT_ENV\"" }
  }
  task "third" {
    env = { Mode = "given" }
    run "shell" { cmd = "echo \"$Mode\" > @DIR@/third" }
  }
  task "fourth" {
    run "shell" { cmd = "echo \"$Mode\" > @DIR@/fourth" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let second = h.file("second");
    assert!(second.contains("/venv fast"), "{second}");
    assert_eq!(h.file("third"), "given\n", "the task's own env wins");
    assert_eq!(
        h.file("fourth"),
        "slow\n",
        "a later write replaces an earlier one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipewright_env_may_not_set_the_engines_names() {
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  task "setup" {
    run "shell" { cmd = "echo BUILD_NUMBER=99 >> \"$PIPEWRIGHT_ENV\"" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.map(|r| r.to_string()).unwrap_or_default();
    assert!(
        reason.contains("`BUILD_NUMBER` is the engine's"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn globbed_outputs_pass_and_the_pattern_that_matched_nothing_is_named() {
    let h = harness();
    let pipeline = r#"
job "ok" {
  task "build" {
    outputs = ["dist/*.whl", "dist/*.tar.gz"]
    run "shell" { cmd = "mkdir -p dist && touch dist/app-1.0-py3-none-any.whl dist/app-1.0.tar.gz" }
  }
}
job "bad" {
  task "build" {
    outputs = ["dist/*.whl", "dist/*.tar.gz"]
    run "shell" { cmd = "mkdir -p dist && touch dist/app-1.0.tar.gz" }
  }
}
"#;
    let b = h.job(pipeline, "ok").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let b = h.job(pipeline, "bad").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.map(|r| r.to_string()).unwrap_or_default();
    assert!(
        reason.contains("output pattern `dist/*.whl` matched nothing"),
        "{reason}"
    );
    assert!(!reason.contains("tar.gz"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn available_variables_are_listed_only_when_a_variable_looks_missing() {
    let h = harness();
    let pipeline = r#"
job "assert" {
  task "t" {
    run "shell" { cmd = "echo 'expected 3, got 4' >&2; exit 1" }
  }
}
job "unset" {
  task "t" {
    run "shell" { cmd = "set -u; echo \"$NO_SUCH_VARIABLE\"" }
  }
}
job "missing-command" {
  task "t" {
    run "shell" { cmd = "$NO_SUCH_TOOL --version" }
  }
}
"#;
    let b = h.job(pipeline, "assert").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let log = h.log("t");
    assert!(log.contains("expected 3, got 4"), "{log}");
    assert!(!log.contains("available variables"), "{log}");
    h.events.lock().unwrap().clear();
    let b = h.job(pipeline, "unset").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let log = h.log("t");
    assert!(log.contains("available variables: BUILD_ID"), "{log}");
    h.events.lock().unwrap().clear();
    h.job(pipeline, "missing-command").await;
    let log = h.log("t");
    assert!(log.contains("available variables: BUILD_ID"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_not_run_names_every_failed_upstream_job() {
    let h = harness();
    std::fs::create_dir_all(h.dir.path().join("src")).unwrap();
    std::fs::write(h.dir.path().join("src/file"), "x").unwrap();
    let text = r#"
resource "fs" "src" {
  params { path = "@DIR@/src" }
}
job "test" {
  matrix {
    py = ["3.12", "3.13"]
  }
  get "fs" "src" {}
  task "t" {
    run "shell" { cmd = "exit 1" }
  }
}
job "ship" {
  get "fs" "src" { passed = ["test"] }
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#
    .replace("@DIR@", &h.dir.path().display().to_string());
    let p = pipewright_config::load_str("test.hcl", &text, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .pipeline;
    let result = h
        .engine
        .run_pipeline(&p, &[], &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(result.status, BuildStatus::Failed);
    assert_eq!(
        result.not_run,
        vec![(
            "ship".to_owned(),
            "upstream jobs `test--3-12`, `test--3-13` did not pass".to_owned()
        )]
    );
}
