//! The podman runner against real podman and the local busybox test image, loaded from Docker
//! (`docker save … | podman load`) when podman lacks it. Without podman: a failure in CI, a
//! loud skip elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Ctx, ExitStatus, LogSink, Params, Runner, Stream, TaskSpec, Workspace};
use pipewright_runners::PodmanRunner;
use pipewright_testing::servers::require_that;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IMAGE: &str = "localhost/pipewright-test/busybox:latest";
const DOCKER_IMAGE: &str = "pipewright-test/busybox:latest";

/// True when podman runs; loads the test image from Docker (building it first if needed).
fn podman_ready() -> bool {
    let ok = Command::new("podman")
        .args(["version", "--format", "{{.Client.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !require_that(
        ok,
        "no podman",
        "apt-get install podman to run the podman runner tests",
    ) {
        return false;
    }
    let have = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        let in_docker = Command::new("docker")
            .args(["image", "inspect", DOCKER_IMAGE])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !in_docker {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ci/docker-test-image.sh");
            assert!(Command::new(script).status().unwrap().success());
        }
        let mut save = Command::new("docker")
            .args(["save", DOCKER_IMAGE])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("podman")
            .args(["load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success());
        assert!(
            load.status.success(),
            "podman load: {}",
            String::from_utf8_lossy(&load.stderr)
        );
    }
    true
}

#[derive(Default)]
struct Capture(Mutex<(Vec<u8>, Vec<u8>)>);

impl LogSink for Capture {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        let mut c = self.0.lock().unwrap();
        match stream {
            Stream::Stderr => c.1.extend_from_slice(chunk),
            _ => c.0.extend_from_slice(chunk),
        }
    }
}

fn task(name: &str, params: &[(&str, &str)], args: &[&str]) -> TaskSpec {
    let mut p = Params::new();
    p.insert("image", IMAGE);
    p.insert("pull", "never");
    for (k, v) in params {
        p.insert(*k, *v);
    }
    TaskSpec {
        name: name.into(),
        params: p,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: Default::default(),
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    )
    .replace([' ', '{', '}', ':', '.', ','], "")
}

/// Podman containers labelled with `build`.
fn left(build: &str) -> usize {
    let out = Command::new("podman")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.pipewright.build={build}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_conforms_to_the_runner_suite() {
    if !podman_ready() {
        return;
    }
    let runner = PodmanRunner::new().with_grace(Duration::from_secs(1));
    let build = unique("conformance");
    let mut c = Ctx::new();
    c.build.build_id = build.clone();
    pipewright_testing::RunnerSuite::new(&runner, |script| {
        task("conformance", &[("cmd", script)], &[])
    })
    .with_detached_daemons()
    .with_ctx(c)
    .run_all()
    .await;
    assert_eq!(left(&build), 0, "no container left after the suite");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_env_and_outputs_reach_the_container() {
    if !podman_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let build = unique("workspace");
    let cap = Arc::new(Capture::default());
    let mut c = Ctx::new().with_log(cap.clone());
    c.build.build_id = build.clone();
    c.env.insert("FROM_CTX".into(), "ctx-value".into());
    std::fs::write(dir.path().join("input.txt"), "from the host\n").unwrap();
    let mut t = task(
        "t",
        &[(
            "cmd",
            "cat input.txt; echo \"$FROM_CTX $TASK_VAR $WORKDIR $(pwd)\" > /workdir/seen; \
             echo K=V >> $PIPEWRIGHT_OUTPUT; echo err >&2; exit 5",
        )],
        &["-e", "TASK_VAR=flag-value"],
    );
    t.env.insert("SECRETISH".into(), "not-in-argv".into());
    let ws = Workspace {
        dir: dir.path().to_path_buf(),
        output_file: dir.path().join(".pipewright-out"),
    };
    let exit = PodmanRunner::new().run(&c, &t, &ws).await.unwrap();
    assert_eq!(exit, ExitStatus::Code(5));
    let (out, err) = cap.0.lock().unwrap().clone();
    assert_eq!(String::from_utf8(out).unwrap(), "from the host\n");
    assert!(String::from_utf8(err).unwrap().contains("err\n"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        "ctx-value flag-value /workdir /workdir\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".pipewright-out")).unwrap(),
        "K=V\n"
    );
    assert_eq!(left(&build), 0, "--rm removed the container");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_dead_engine_are_reaped() {
    if !podman_ready() {
        return;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let build = unique("orphan");
    let out = Command::new("podman")
        .args(["create", "--label", "io.pipewright.managed=1", "--label"])
        .arg(format!("io.pipewright.owner={}:4194303:1", host.trim()))
        .args([
            "--label",
            &format!("io.pipewright.build={build}"),
            IMAGE,
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The other tests' runners reap on first use too, so this one may find it gone already.
    PodmanRunner::new().reap().await.unwrap();
    assert_eq!(left(&build), 0, "the dead engine's container is removed");
    // A live owner's containers are left alone.
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let out = Command::new("podman")
        .args(["create", "--label", "io.pipewright.managed=1", "--label"])
        .arg(format!("io.pipewright.owner={}:{me}:{start}", host.trim()))
        .args([
            "--label",
            &format!("io.pipewright.build={build}"),
            IMAGE,
            "true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    PodmanRunner::new().reap().await.unwrap();
    assert_eq!(left(&build), 1, "a live owner's container is kept");
    let _ = Command::new("podman")
        .args(["rm", "-f", String::from_utf8_lossy(&out.stdout).trim()])
        .output();
}
