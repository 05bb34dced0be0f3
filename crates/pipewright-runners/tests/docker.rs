//! The Docker runner against a real daemon and a locally built busybox image
//! (`ci/docker-test-image.sh`). Without a daemon: a failure in CI, a loud skip elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Ctx, ErrorKind, LogSink, Params, Runner, Stream, TaskSpec, Workspace};
use pipewright_runners::DockerRunner;
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
        "apt-get install docker.io; start dockerd to run the Docker runner tests",
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

fn ws(dir: &std::path::Path) -> Workspace {
    Workspace {
        dir: dir.to_path_buf(),
        output_file: dir.join(".pipewright/out/t.1"),
    }
}

fn ctx(build: &str) -> (Ctx, Arc<Capture>) {
    let cap = Arc::new(Capture::default());
    let mut c = Ctx::new().with_log(cap.clone());
    c.build.build_id = build.into();
    c.build.job = "job".into();
    (c, cap)
}

/// Containers left with this build's label.
fn left(build: &str) -> usize {
    let out = Command::new("docker")
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

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:?}",
        std::process::id(),
        std::time::Instant::now()
    )
    .replace([' ', '{', '}', ':', '.'], "")
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_stay_separate_env_and_workspace_reach_the_container() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let build = unique("streams");
    let (mut c, cap) = ctx(&build);
    c.env.insert("FROM_CTX".into(), "ctx-value".into());
    let mut t = task(
        "t",
        &[(
            "cmd",
            "echo out-1; echo err-1 >&2; echo \"$FROM_CTX $TASK_VAR $WORKDIR\" > /workdir/seen; \
             echo out-2; echo $PIPEWRIGHT_OUTPUT; exit 3",
        )],
        &["-e", "TASK_VAR=flag-value"],
    );
    t.env.insert("IGNORED_NOT".into(), "x".into());
    let exit = DockerRunner::new()
        .run(&c, &t, &ws(dir.path()))
        .await
        .unwrap();
    assert_eq!(exit, pipewright_core::ExitStatus::Code(3));
    let (out, err) = cap.0.lock().unwrap().clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out, "out-1\nout-2\n/workdir/.pipewright/out/t.1\n",
        "stdout alone"
    );
    assert_eq!(String::from_utf8(err).unwrap(), "err-1\n", "stderr alone");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        "ctx-value flag-value /workdir\n"
    );
    assert_eq!(left(&build), 0, "container removed after a failure exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_killed_with_a_clear_message() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let build = unique("oom");
    let (c, _cap) = ctx(&build);
    let t = task(
        "hog",
        &[
            ("cmd", "dd if=/dev/zero of=/dev/null bs=256M count=1"),
            ("memory", "32m"),
        ],
        &[],
    );
    let err = DockerRunner::new()
        .run(&c, &t, &ws(dir.path()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert!(
        err.to_string()
            .contains("ran out of memory (limit 32m) and was killed"),
        "{err}"
    );
    assert_eq!(left(&build), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_and_cancel_stop_and_remove_the_container() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runner = DockerRunner::new().with_grace(Duration::from_secs(1));

    let build = unique("timeout");
    let (c, _) = ctx(&build);
    let c = c.with_timeout(Duration::from_millis(800));
    let t = task("sleepy", &[("cmd", "trap '' TERM; sleep 60")], &[]);
    let started = std::time::Instant::now();
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(left(&build), 0, "no labelled container after a timeout");

    let build = unique("cancel");
    let (c, cap) = ctx(&build);
    let cancel = c.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        cancel.cancel();
    });
    let t = task("loop", &[("cmd", "echo started; sleep 60")], &[]);
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(String::from_utf8_lossy(&cap.0.lock().unwrap().0).contains("started"));
    assert_eq!(left(&build), 0, "no labelled container after a cancel");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_images_and_refused_settings_are_clear_errors() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = ctx(&unique("errors"));
    let runner = DockerRunner::new();
    let mut t = task("t", &[("cmd", "true"), ("pull", "never")], &[]);
    t.params.insert("image", "pipewright-test/absent:1.0");
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains("`pipewright-test/absent:1.0` is not present"),
        "{err}"
    );

    // Default policy: a pull is attempted; with no registry it fails naming the image.
    t.params.insert("pull", "if-not-present");
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("`pipewright-test/absent:1.0` is not present and could not be pulled"),
        "{err}"
    );

    let t = task("t", &[("cmd", "true"), ("privileged", "true")], &[]);
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert!(
        err.to_string().contains("privileged containers are off"),
        "{err}"
    );
    let t = task("t", &[("cmd", "true")], &["--gpus", "all"]);
    let err = runner.run(&c, &t, &ws(dir.path())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_dead_engine_are_reaped() {
    if !docker_ready() {
        return;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let build = unique("orphan");
    // A container as a crashed engine (a pid that does not exist) would have left it.
    let out = Command::new("docker")
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
    // Connecting reaps; `reap` can also be called at any time. The other tests' runners reap
    // when they connect too, so the container may be gone already.
    DockerRunner::new().reap().await.unwrap();
    assert_eq!(left(&build), 0);
    // A live owner's containers are left alone.
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    let out = Command::new("docker")
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
    assert_eq!(DockerRunner::new().reap().await.unwrap(), 0);
    assert_eq!(left(&build), 1);
    let _ = Command::new("docker")
        .args(["rm", "-f", String::from_utf8_lossy(&out.stdout).trim()])
        .output();
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_conforms_to_the_runner_suite() {
    if !docker_ready() {
        return;
    }
    let runner = DockerRunner::new().with_grace(Duration::from_secs(1));
    let (c, _) = ctx(&unique("conformance"));
    pipewright_testing::RunnerSuite::new(&runner, |script| {
        task("conformance", &[("cmd", script), ("pull", "never")], &[])
    })
    .with_detached_daemons()
    .with_ctx(c)
    .run_all()
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_container_stops_on_sigterm_without_waiting_for_the_grace() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Without an init, `sh` as PID 1 ignores SIGTERM and the stop waits the whole grace.
    let grace = Duration::from_secs(30);
    let runner = DockerRunner::new().with_grace(grace);
    let build = unique("init");
    let (c, cap) = ctx(&build);
    let cancel = c.cancel.clone();
    let t = task("sleepy", &[("cmd", "echo started; sleep 100")], &[]);
    let run = tokio::spawn(async move {
        let r = runner.run(&c, &t, &ws(dir.path())).await;
        (r, dir)
    });
    for _ in 0..3000 {
        if String::from_utf8_lossy(&cap.0.lock().unwrap().0).contains("started") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = std::time::Instant::now();
    cancel.cancel();
    let (r, _dir) = run.await.unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
    let took = cancelled.elapsed();
    assert!(
        took < grace / 2,
        "the container took {took:?} to stop: SIGTERM did not reach the command"
    );
    assert_eq!(left(&build), 0, "no labelled container after a cancel");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relative_workspace_directory_is_mounted() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The same directory, relative to where the tests run.
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = std::path::PathBuf::from(up).join(dir.path().strip_prefix("/").unwrap());
    assert!(relative.is_relative() && relative.is_dir());
    let build = unique("relative");
    let (c, _) = ctx(&build);
    let t = task("t", &[("cmd", "echo here > /workdir/seen")], &[]);
    let exit = DockerRunner::new()
        .run(&c, &t, &ws(&relative))
        .await
        .unwrap();
    assert!(exit.success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("seen")).unwrap(),
        "here\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_container_carries_the_reaping_labels_and_stop_removes_it() {
    if !docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let build = unique("session");
    let (c, cap) = ctx(&build);
    let runner = DockerRunner::new().with_grace(Duration::from_secs(1));
    let spec = task("container", &[("pull", "never")], &["-e", "FROM_FLAG=flag"]);
    let session = runner
        .start_session(&c, &spec, &ws(dir.path()))
        .await
        .unwrap();
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.pipewright.managed\"}} {{index .Config.Labels \"io.pipewright.owner\"}}",
            session.id(),
        ])
        .output()
        .unwrap();
    let labels = String::from_utf8(out.stdout).unwrap();
    let pid = std::process::id().to_string();
    assert!(labels.starts_with("1 "), "{labels}");
    assert!(
        labels.split(':').nth(1) == Some(pid.as_str()),
        "owned by this process: {labels}"
    );
    // Steps are execs: `exec` argv and `shell` scripts with `$1…`, both under /workdir.
    let mut step = task(
        "a",
        &[("path", "sh")],
        &["-c", "echo $FROM_FLAG $(pwd) > /tmp/a"],
    );
    step.params = Params::new();
    step.params.insert("path", "sh");
    assert!(
        session
            .run(&c, &step, &ws(dir.path()))
            .await
            .unwrap()
            .success()
    );
    let mut step = task("b", &[], &["arg1"]);
    step.params = Params::new();
    step.params.insert("cmd", "cat /tmp/a; echo \"$1\"; exit 4");
    let exit = session.run(&c, &step, &ws(dir.path())).await.unwrap();
    assert_eq!(exit, pipewright_core::ExitStatus::Code(4));
    assert_eq!(
        String::from_utf8_lossy(&cap.0.lock().unwrap().0),
        "flag /workdir\narg1\n"
    );
    assert_eq!(left(&build), 1);
    session.stop().await;
    assert_eq!(left(&build), 0, "stop removes the job container");
    let err = session.run(&c, &step, &ws(dir.path())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}
