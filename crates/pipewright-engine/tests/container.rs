//! Jobs with a `container` block against a real Docker daemon and the locally built busybox
//! image (`ci/docker-test-image.sh`): every `shell` and `exec` step runs in one container,
//! which is gone when the build ends however it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{BuildStatus, Event, EventKind, StepStatus};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use pipewright_testing::servers::require_that;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IMAGE: &str = "pipewright-test/busybox:latest";

/// True when a daemon answers; builds the test image when it is missing.
fn docker_ready() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !require_that(
        ok,
        "no Docker daemon",
        "apt-get install docker.io; start dockerd to run the job container tests",
    ) {
        return false;
    }
    let have = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ci/docker-test-image.sh");
        let built = Command::new(script).status().map(|s| s.success());
        assert!(
            matches!(built, Ok(true)),
            "cannot build {IMAGE} with {script}"
        );
    }
    true
}

/// Containers, running or not, labelled with `build`.
fn left(build: &str) -> usize {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=io.pipewright.managed",
            "--filter",
            &format!("label=io.pipewright.build={build}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let options = EngineOptions {
        workspace_root: dir.path().join("builds"),
        kill_grace: Duration::from_millis(500),
        ..EngineOptions::default()
    };
    Harness {
        dir,
        engine: Engine::new(Registry::with_builtins(Duration::from_millis(500)))
            .with_options(options),
        events: Arc::new(Mutex::new(Vec::new())),
    }
}

impl Harness {
    fn opts(&self) -> RunOptions {
        let events = self.events.clone();
        RunOptions {
            events: Arc::new(move |e: Event| events.lock().unwrap().push(e)),
            ..RunOptions::default()
        }
    }

    fn pipeline(&self, text: &str) -> pipewright_config::Pipeline {
        let text = text
            .replace("@DIR@", &self.dir.path().display().to_string())
            .replace("@IMAGE@", IMAGE);
        match pipewright_config::load_str("test.hcl", &text, &Default::default()) {
            Ok(l) => l.pipeline,
            Err(e) => panic!("{}", e.render(false)),
        }
    }

    async fn job(&self, text: &str, opts: &RunOptions) -> BuildResult {
        let p = self.pipeline(text);
        self.engine.run_job(&p, "j", opts).await.unwrap()
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
async fn every_step_runs_in_one_container_with_env_and_outputs() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    std::fs::write(h.dir.path().join("shared.txt"), "from the host\n").unwrap();
    let b = h
        .job(
            r#"
job "j" {
  container {
    image  = "@IMAGE@"
    pull   = "never"
    env    = { FROM_BLOCK = "block" }
    mounts = ["@DIR@/out:/out", "@DIR@/shared.txt:/shared.txt:ro"]
  }
  task "one" {
    run "shell" {
      cmd = "hostname > /tmp/x; echo V=1 >> $PIPEWRIGHT_OUTPUT; echo JOBVAR=j >> $PIPEWRIGHT_ENV"
    }
  }
  task "two" {
    env = { CACHE = "$WORKDIR/.cache" }
    run "shell" {
      cmd = "cat /tmp/x > /out/seen; echo \"$FROM_BLOCK $TASK_ONE_V $JOBVAR $CACHE $WORKDIR $(pwd)\" >> /out/seen; cat /shared.txt >> /out/seen; echo err >&2"
    }
  }
  task "three" {
    run "exec" {
      path = "cat"
      args = ["/tmp/x"]
    }
  }
  task "elsewhere" {
    run "docker" {
      image = "@IMAGE@"
      pull  = "never"
      cmd   = "test ! -e /tmp/x && echo fresh"
    }
  }
}
"#,
            &h.opts(),
        )
        .await;
    assert_eq!(b.status, BuildStatus::Succeeded, "{:?}", b.reason);
    let seen = h.file("out/seen");
    let lines: Vec<&str> = seen.lines().collect();
    let host = lines[0];
    assert!(!host.is_empty(), "{seen}");
    assert_eq!(
        lines[1..],
        [
            "block 1 j /workdir/.cache /workdir /workdir",
            "from the host"
        ],
        "{seen}"
    );
    // The file step one wrote outside the workspace is there for step three: one container.
    assert_eq!(h.log("three").trim(), host);
    assert!(h.log("two").contains("err"));
    // A step with its own runner is not routed into the job container.
    assert!(h.log("elsewhere").contains("fresh"));
    assert_eq!(left(&b.build_id), 0, "the job container is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_fails_the_build_with_its_exit_code_and_hooks_run_inside() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  container {
    image  = "@IMAGE@"
    pull   = "never"
    mounts = ["@DIR@/out:/out"]
  }
  task "prepare" {
    run "shell" { cmd = "echo inside > /tmp/marker" }
  }
  task "fails" {
    run "shell" { cmd = "echo about to fail; exit 7" }
  }
  task "never" {
    run "shell" { cmd = "touch /out/never" }
  }
  on_failure "shell" {
    cmd = "cat /tmp/marker > /out/hook"
  }
}
"#,
            &h.opts(),
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.as_ref().map(|r| r.to_string()).unwrap_or_default();
    assert!(reason.contains("exit code 7"), "{reason}");
    let fails = b.steps.iter().find(|s| s.step.to_string() == "fails");
    assert_eq!(fails.map(|s| s.status), Some(StepStatus::Failed));
    assert!(h.file("out/never").is_empty() && !h.dir.path().join("out/never").exists());
    assert_eq!(
        h.file("out/hook"),
        "inside\n",
        "the job hook ran in the container"
    );
    assert_eq!(left(&b.build_id), 0, "the job container is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_kills_the_steps_processes_and_a_hook_still_runs_inside() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  container {
    image  = "@IMAGE@"
    pull   = "never"
    mounts = ["@DIR@/out:/out"]
  }
  task "slow" {
    timeout = "2s"
    run "shell" {
      cmd = "trap '' TERM; (trap '' TERM; while :; do sleep 1; done) & echo started; sleep 600"
    }
  }
  on_failure "shell" {
    cmd = "sleep 1; ps > /out/ps"
  }
}
"#,
            &h.opts(),
        )
        .await;
    assert_eq!(b.status, BuildStatus::Failed);
    let reason = b.reason.as_ref().map(|r| r.to_string()).unwrap_or_default();
    assert!(reason.contains("timed out after 2s"), "{reason}");
    let ps = h.file("out/ps");
    assert!(ps.contains("ps"), "the hook ran in the container: {ps}");
    assert!(
        !ps.contains("sleep 600") && !ps.contains("sleep 1\n"),
        "the timed-out step's processes were killed:\n{ps}"
    );
    assert_eq!(left(&b.build_id), 0, "no container after a timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_build_leaves_no_container() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let opts = h.opts();
    let cancel = opts.cancel.clone();
    let events = h.events.clone();
    tokio::spawn(async move {
        for _ in 0..6000 {
            let started = events.lock().unwrap().iter().any(
                |e| matches!(&e.kind, EventKind::Log { data, .. } if data.contains("started")),
            );
            if started {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
    });
    let b = h
        .job(
            r#"
job "j" {
  container {
    image = "@IMAGE@"
    pull  = "never"
  }
  task "loop" {
    run "shell" { cmd = "echo started; sleep 600" }
  }
}
"#,
            &opts,
        )
        .await;
    assert_eq!(b.status, BuildStatus::Cancelled, "{:?}", b.reason);
    assert_eq!(left(&b.build_id), 0, "no container after a cancel");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_build_removes_its_container() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let p = h.pipeline(
        r#"
job "j" {
  container {
    image = "@IMAGE@"
    pull  = "never"
  }
  task "loop" {
    run "shell" { cmd = "echo started; sleep 600" }
  }
}
"#,
    );
    let engine = h.engine.clone();
    let opts = h.opts();
    let run = tokio::spawn(async move { engine.run_job(&p, "j", &opts).await });
    let mut build = None;
    for _ in 0..6000 {
        build = h.events.lock().unwrap().iter().find_map(|e| match &e.kind {
            EventKind::Log { data, .. } if data.contains("started") => Some(e.build_id.clone()),
            _ => None,
        });
        if build.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let build = build.expect("the step started");
    assert_eq!(left(&build), 1, "one container for the job");
    run.abort();
    let _ = run.await;
    let mut n = left(&build);
    for _ in 0..100 {
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        n = left(&build);
    }
    assert_eq!(n, 0, "the dropped build's container is removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_container_reaches_the_job_s_services_on_the_host_network() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let b = h
        .job(
            r#"
job "j" {
  container {
    image = "@IMAGE@"
    pull  = "never"
  }
  service "web" {
    image  = "@IMAGE@"
    pull   = "never"
    ports  = [8080]
    cmd    = ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    health = "wget -qO- http://127.0.0.1:8080/passwd"
  }
  task "fetch" {
    run "shell" {
      cmd = "wget -qO- http://$SERVICE_WEB_ADDR/passwd | head -n 1"
    }
  }
}
"#,
            &h.opts(),
        )
        .await;
    let log = h.log("fetch");
    assert_eq!(b.status, BuildStatus::Succeeded, "{:?}\n{log}", b.reason);
    // The service publishes on the host's 127.0.0.1; the job container shares the host's
    // network because the job has a service, so the exported address works inside it.
    assert!(log.contains("root:x:0:0"), "{log}");
    assert_eq!(
        left(&b.build_id),
        0,
        "the job container and the service are removed"
    );
}
