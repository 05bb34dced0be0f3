//! `pipewright run` with a container service, killed with SIGKILL: the container outlives it,
//! and the next container service started on the host removes it. Needs a Docker daemon and
//! the local test images (built when missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_testing::servers::require_that;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POSTGRES: &str = "pipewright-test/postgres:latest";
const BUSYBOX: &str = "pipewright-test/busybox:latest";

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
        let have = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !have {
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

fn run(p: &Path, ws: &Path, job: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    c.arg("run")
        .arg(p)
        .args([
            "--no-history",
            "--color",
            "never",
            "--job",
            job,
            "--workspace-root",
        ])
        .arg(ws);
    c
}

/// The containers of service `name` owned by process `pid`.
fn owned_by(name: &str, pid: u32) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--no-trunc", "--filter"])
        .arg(format!("label=io.pipewright.service={name}"))
        .args(["--format", "{{.ID}} {{.Label \"io.pipewright.owner\"}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, owner) = l.split_once(' ')?;
            (owner.split(':').nth(1) == Some(&pid.to_string())).then(|| id.to_owned())
        })
        .collect()
}

fn exists(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn a_service_container_left_by_a_killed_run_is_removed_by_the_next_service_start() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let p = dir.path().join("pipeline.hcl");
    std::fs::write(
        &p,
        format!(
            r#"
job "hang" {{
  service "killed-db" {{
    image = "{POSTGRES}"
    ports = [5432]
  }}
  task "sleep" {{
    run "shell" {{ cmd = "touch {}; sleep 300" }}
  }}
}}

job "next" {{
  service "next" {{
    image = "{BUSYBOX}"
    cmd   = "exec sleep 300"
  }}
  task "t" {{
    run "shell" {{ cmd = "true" }}
  }}
}}
"#,
            started.display()
        ),
    )
    .unwrap();
    let ws = dir.path().join("ws");
    let mut child = run(&p, &ws, "hang")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < until, "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ids = owned_by("killed-db", child.id());
    assert_eq!(ids.len(), 1, "one service container: {ids:?}");
    child.kill().unwrap(); // SIGKILL: no `stop` runs
    child.wait().unwrap();
    assert!(
        exists(&ids[0]),
        "the container outlives the SIGKILLed engine"
    );

    let out = run(&p, &ws, "next").output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !exists(&ids[0]),
        "the next container service start removed the orphan {}",
        ids[0]
    );
}
