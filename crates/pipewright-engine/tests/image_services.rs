//! Services from container images (`service "NAME" { image = "…" }`) against a real Docker
//! daemon and the locally built test images (`ci/postgres-test-image.sh`,
//! `ci/docker-test-image.sh`). Without a daemon: a failure in CI, a loud skip elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{BuildStatus, Event, EventKind, StepStatus};
use pipewright_engine::{BuildResult, Engine, EngineOptions, Registry, RunOptions};
use pipewright_testing::servers::{require, require_that};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const POSTGRES: &str = "pipewright-test/postgres:latest";
const BUSYBOX: &str = "pipewright-test/busybox:latest";

fn have_image(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// True when a daemon answers; builds the test images when they are missing.
fn docker_ready() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !require_that(
        ok,
        "no Docker daemon",
        "apt-get install docker.io; start dockerd to run the container service tests",
    ) {
        return false;
    }
    for (image, script) in [
        (POSTGRES, "postgres-test-image.sh"),
        (BUSYBOX, "docker-test-image.sh"),
    ] {
        if !have_image(image) {
            let script = format!("{}/../../ci/{script}", env!("CARGO_MANIFEST_DIR"));
            let built = Command::new(&script).status().map(|s| s.success());
            assert!(
                matches!(built, Ok(true)),
                "cannot build {image} with {script}"
            );
        }
    }
    true
}

/// The ids of the containers (running or not) carrying every label in `labels`.
fn containers(labels: &[(&str, &str)]) -> Vec<String> {
    let mut c = Command::new("docker");
    c.args(["ps", "-aq", "--no-trunc"]);
    for (k, v) in labels {
        c.arg("--filter").arg(format!("label={k}={v}"));
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn service_containers(b: &BuildResult) -> Vec<String> {
    containers(&[
        ("io.pipewright.managed", "1"),
        ("io.pipewright.build", &b.build_id),
    ])
}

struct Harness {
    dir: tempfile::TempDir,
    engine: Engine,
    events: Arc<Mutex<Vec<Event>>>,
    catalog: pipewright_config::Catalog,
}

fn harness() -> Harness {
    let registry = Registry::with_builtins(Duration::from_millis(300));
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

impl Harness {
    fn load(&self, text: &str) -> Result<pipewright_config::Pipeline, String> {
        let text = text.replace("@DIR@", &self.dir.path().display().to_string());
        let opts = pipewright_config::LoadOptions {
            catalog: self.catalog.clone(),
            ..Default::default()
        };
        pipewright_config::load_str("test.hcl", &text, &opts)
            .map(|l| l.pipeline)
            .map_err(|e| e.render(false))
    }

    fn opts(&self) -> RunOptions {
        let events = self.events.clone();
        RunOptions {
            events: Arc::new(move |e: Event| events.lock().unwrap().push(e)),
            ..RunOptions::default()
        }
    }

    async fn run(&self, text: &str, opts: &RunOptions) -> BuildResult {
        let p = self.load(text).unwrap_or_else(|e| panic!("{e}"));
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

fn step<'a>(b: &'a BuildResult, name: &str) -> &'a pipewright_core::StepRecord {
    b.steps
        .iter()
        .find(|s| s.step.to_string() == name)
        .unwrap_or_else(|| panic!("no step {name} in {:#?}", b.steps))
}

const DB: &str = r#"
  service "db" {
    image = "pipewright-test/postgres:latest"
    ports = [5432]
    env   = { POSTGRES_PASSWORD = "s3cret" }
  }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_task_queries_a_postgres_image_service_through_its_exports() {
    if !docker_ready() || !require("psql", "apt-get install postgresql-client") {
        return;
    }
    let h = harness();
    let text = format!(
        r#"
job "j" {{
{DB}
  task "query" {{
    env = {{ PGPASSWORD = "s3cret" }}
    run "shell" {{
      cmd = <<-SH
        env | grep '^SERVICE_DB_' | sort > @DIR@/exports
        psql -h "$SERVICE_DB_HOST" -p "$SERVICE_DB_PORT" -U postgres -Atc 'select 40 + 2'
      SH
    }}
  }}
}}
"#
    );
    let b = h.run(&text, &h.opts()).await;
    let log = h.log("query");
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}\n{log}");
    assert!(log.contains("42"), "postgres answered: {log}");
    let exports: std::collections::BTreeMap<String, String> = h
        .file("exports")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let port = &exports["SERVICE_DB_PORT"];
    assert_eq!(exports["SERVICE_DB_HOST"], "127.0.0.1");
    assert_eq!(&exports["SERVICE_DB_PORT_5432"], port);
    assert_eq!(exports["SERVICE_DB_ADDR"], format!("127.0.0.1:{port}"));
    let id = &exports["SERVICE_DB_CONTAINER"];
    assert_eq!(id.len(), 64, "a full container id: {exports:?}");
    assert_eq!(step(&b, "db:stop").status, StepStatus::Succeeded);
    assert!(
        service_containers(&b).is_empty(),
        "the service container is removed after a successful build"
    );
    let gone = Command::new("docker")
        .args(["inspect", id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "container {id} is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_is_removed_when_the_task_fails() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let text = format!(
        r#"
job "j" {{
{DB}
  task "fail" {{
    run "shell" {{ cmd = "echo $SERVICE_DB_CONTAINER > @DIR@/id; exit 4" }}
  }}
}}
"#
    );
    let b = h.run(&text, &h.opts()).await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    assert_eq!(step(&b, "fail").status, StepStatus::Failed);
    assert_eq!(h.file("id").trim().len(), 64, "the task saw the container");
    assert!(
        service_containers(&b).is_empty(),
        "the service container is removed after a failed task"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_is_removed_when_the_build_is_cancelled() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let text = format!(
        r#"
job "j" {{
{DB}
  task "hang" {{
    run "shell" {{ cmd = "echo $SERVICE_DB_CONTAINER > @DIR@/id; sleep 300" }}
  }}
}}
"#
    );
    let opts = h.opts();
    let cancel = opts.cancel.clone();
    let id_file = h.dir.path().join("id");
    let watcher = tokio::spawn(async move {
        while std::fs::read_to_string(&id_file).map_or(0, |s| s.trim().len()) < 64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let id = std::fs::read_to_string(&id_file).unwrap();
        cancel.cancel();
        id.trim().to_owned()
    });
    let b = h.run(&text, &opts).await;
    let id = watcher.await.unwrap();
    assert_eq!(b.status, BuildStatus::Cancelled, "{b:#?}");
    assert!(
        !containers(&[
            ("io.pipewright.service", "db"),
            ("io.pipewright.build", &b.build_id)
        ])
        .contains(&id),
        "the service container {id} is removed after a cancelled build"
    );
    assert!(service_containers(&b).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_that_exits_before_it_is_ready_fails_the_build_with_its_last_lines() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    let text = format!(
        r#"
job "j" {{
  service "broken" {{
    image = "{BUSYBOX}"
    ports = [8080]
    cmd   = ["sh", "-c", "echo the config file is missing >&2; exit 3"]
  }}
  task "never" {{
    run "shell" {{ cmd = "touch @DIR@/ran" }}
  }}
}}
"#
    );
    let b = h.run(&text, &h.opts()).await;
    assert_eq!(b.status, BuildStatus::Failed, "{b:#?}");
    let start = step(&b, "broken:start");
    assert_eq!(start.status, StepStatus::Failed);
    let reason = start.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("exited with code 3 before it was ready")
            && reason.contains("the config file is missing"),
        "{reason}"
    );
    assert!(
        h.log("broken:start").contains("the config file is missing"),
        "the last lines are in the step's log"
    );
    assert!(!h.dir.path().join("ran").exists(), "the task did not run");
    assert!(service_containers(&b).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_by_health_command_and_by_tcp_port_without_a_healthcheck() {
    if !docker_ready() {
        return;
    }
    let h = harness();
    // `late` only becomes ready once its marker exists; `web` answers on its port.
    let text = format!(
        r#"
job "j" {{
  service "late" {{
    image          = "{BUSYBOX}"
    cmd            = "sleep 1; touch /tmp/up; exec sleep 300"
    health         = "test -f /tmp/up"
    ready_interval = "100ms"
    ready_timeout  = "30s"
  }}
  service "web" {{
    image = "{BUSYBOX}"
    ports = [8080, 9090]
    cmd   = ["httpd", "-f", "-p", "8080"]
  }}
  task "check" {{
    run "shell" {{
      cmd = <<-SH
        test -n "$SERVICE_LATE_CONTAINER"
        test -z "$SERVICE_LATE_PORT"
        test "$SERVICE_WEB_PORT" = "$SERVICE_WEB_PORT_8080"
        test "$SERVICE_WEB_PORT" != "$SERVICE_WEB_PORT_9090"
        docker exec "$SERVICE_LATE_CONTAINER" test -f /tmp/up && echo marker-present
      SH
    }}
  }}
}}
"#
    );
    let b = h.run(&text, &h.opts()).await;
    let log = h.log("check");
    assert_eq!(b.status, BuildStatus::Succeeded, "{b:#?}\n{log}");
    assert!(
        log.contains("marker-present"),
        "`late` was ready only after its health command passed: {log}"
    );
    assert!(service_containers(&b).is_empty());
}

#[test]
fn a_typo_in_an_image_service_is_a_load_error_with_a_suggestion() {
    let h = harness();
    let err = h
        .load(
            r#"
job "j" {
  service "db" {
    image = "postgres:16"
    port  = [5432]
  }
}
"#,
        )
        .unwrap_err();
    assert!(
        err.contains("container service `db` has no parameter `port`")
            && err.contains("did you mean `ports`?"),
        "{err}"
    );
    let err = h
        .load("job \"j\" {\n  service \"dbx\" {}\n}\n")
        .unwrap_err();
    assert!(
        err.contains("unknown service type `dbx`") && err.contains("image = "),
        "an unknown type points at image services: {err}"
    );
    // A declared type keeps `image` as one of its own params.
    let ok = h.load(
        r#"
service_type "db" {
  start "shell" { cmd = "echo $param_image" }
  stop "shell" { cmd = "true" }
}
job "j" {
  service "db" { image = "postgres:16" }
}
"#,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let p = ok.unwrap();
    let s = match &p.jobs["j"].steps[0].kind {
        pipewright_config::StepKind::Service(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(!pipewright_config::image_service(&p, &s));
}
