//! The built-in runners through the plug-in kit's runner suite: exec and shell on the host,
//! docker against a real daemon (skipped without one, as in `docker.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Params, TaskSpec};
use pipewright_runners::{DockerRunner, ExecRunner, ShellRunner};
use pipewright_testing::RunnerSuite;
use pipewright_testing::servers::require_that;
use std::process::Command;
use std::time::Duration;

fn task(params: &[(&str, &str)], args: &[&str]) -> TaskSpec {
    let mut p = Params::new();
    for (k, v) in params {
        p.insert(*k, *v);
    }
    TaskSpec {
        name: "conformance".into(),
        params: p,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..TaskSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_conforms() {
    let runner = ExecRunner::new().with_grace(Duration::from_millis(300));
    RunnerSuite::new(&runner, |script| {
        task(&[("path", "/bin/sh")], &["-c", script])
    })
    .with_detached_daemons()
    .run_all()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_conforms() {
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    RunnerSuite::new(&runner, |script| task(&[("cmd", script)], &[]))
        .with_detached_daemons()
        .run_all()
        .await;
}

const IMAGE: &str = "pipewright-test/busybox:latest";

fn docker_ready() -> bool {
    let daemon = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require_that(
        daemon,
        "no Docker daemon",
        "apt-get install docker.io; start dockerd",
    ) {
        return false;
    }
    let image = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !image {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ci/docker-test-image.sh");
        let built = Command::new(script).status().is_ok_and(|s| s.success());
        assert!(built, "cannot build {IMAGE} with {script}");
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_conforms() {
    if !docker_ready() {
        return;
    }
    let runner = DockerRunner::new().with_grace(Duration::from_secs(1));
    let mut ctx = pipewright_core::Ctx::new();
    ctx.build.build_id = format!("conformance-{}", std::process::id());
    RunnerSuite::new(&runner, |script| {
        task(&[("image", IMAGE), ("cmd", script), ("pull", "never")], &[])
    })
    .with_detached_daemons()
    .with_ctx(ctx)
    .run_all()
    .await;
}
