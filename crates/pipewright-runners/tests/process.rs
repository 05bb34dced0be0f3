//! Real processes: streaming, exit statuses, and the kill sequence reaching every descendant.
#![allow(clippy::unwrap_used)]

use pipewright_core::{
    Ctx, ErrorKind, ExitStatus, LogSink, Params, Runner, Stream, TaskSpec, Workspace,
};
use pipewright_runners::{ExecRunner, ShellRunner};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Capture {
    chunks: Mutex<Vec<(Stream, Vec<u8>)>>,
}

impl LogSink for Capture {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        self.chunks.lock().unwrap().push((stream, chunk.to_vec()));
    }
}

impl Capture {
    fn text(&self, stream: Stream) -> String {
        let chunks = self.chunks.lock().unwrap();
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, c)| c.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn setup() -> (tempfile::TempDir, Workspace, Arc<Capture>, Ctx) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace {
        dir: dir.path().to_path_buf(),
        output_file: dir.path().join("out"),
    };
    let cap = Arc::new(Capture::default());
    let ctx = Ctx::new().with_log(cap.clone());
    (dir, ws, cap, ctx)
}

fn shell(cmd: &str) -> TaskSpec {
    let mut params = Params::new();
    params.insert("cmd", cmd);
    TaskSpec {
        name: "t".into(),
        params,
        ..TaskSpec::default()
    }
}

/// Alive = exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

fn pids(ws: &Workspace) -> Vec<i32> {
    std::fs::read_to_string(ws.dir.join("pids"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// Starts a daemon that leaves the process group (`setsid`) and a child that ignores TERM, then
/// blocks. Both write their pid so the test can check they are gone.
const TREE: &str = "setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $! >> pids; \
                    (trap '' TERM; exec sleep 302) & echo $! >> pids; \
                    echo started; sleep 303";

#[tokio::test]
async fn streams_stdout_and_stderr_separately_with_env_and_exit_code() {
    let (_d, ws, cap, mut ctx) = setup();
    ctx.env.insert("BUILD_JOB_NAME".into(), "unit".into());
    let mut task = shell(
        "echo out $BUILD_JOB_NAME \"$1\"; echo err >&2; echo K=V >> \"$PIPEWRIGHT_OUTPUT\"; exit 3",
    );
    task.args = vec!["first arg".into()];
    let status = ShellRunner::new().run(&ctx, &task, &ws).await.unwrap();
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(cap.text(Stream::Stdout), "out unit first arg\n");
    assert_eq!(cap.text(Stream::Stderr), "err\n");
    assert_eq!(std::fs::read_to_string(&ws.output_file).unwrap(), "K=V\n");
}

#[tokio::test]
async fn large_output_arrives_in_bounded_chunks() {
    let (_d, ws, cap, ctx) = setup();
    let task = shell("head -c 20000000 /dev/zero");
    let status = ShellRunner::new().run(&ctx, &task, &ws).await.unwrap();
    assert!(status.success());
    let chunks = cap.chunks.lock().unwrap();
    let total: usize = chunks.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(total, 20_000_000);
    assert!(chunks.iter().all(|(_, c)| c.len() <= 64 * 1024));
    assert!(chunks.len() >= 20_000_000 / (64 * 1024));
}

#[tokio::test]
async fn exec_runs_a_path_with_args_and_reports_signals() {
    let (_d, ws, cap, ctx) = setup();
    let mut params = Params::new();
    params.insert("path", "echo");
    let task = TaskSpec {
        name: "e".into(),
        params,
        args: vec!["a b".into(), "$HOME".into()],
        ..TaskSpec::default()
    };
    assert!(
        ExecRunner::new()
            .run(&ctx, &task, &ws)
            .await
            .unwrap()
            .success()
    );
    assert_eq!(
        cap.text(Stream::Stdout),
        "a b $HOME\n",
        "args are not expanded by a shell"
    );

    let status = ShellRunner::new()
        .run(&ctx, &shell("kill -9 $$"), &ws)
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Signal(9));
}

#[tokio::test]
async fn a_missing_program_is_not_found() {
    let (_d, ws, _cap, ctx) = setup();
    let mut params = Params::new();
    params.insert("path", "/no/such/program");
    let task = TaskSpec {
        name: "e".into(),
        params,
        ..TaskSpec::default()
    };
    let err = ExecRunner::new().run(&ctx, &task, &ws).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_including_daemons_and_term_ignorers() {
    let (_d, ws, cap, ctx) = setup();
    let ctx = ctx.with_timeout(Duration::from_millis(500));
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    let started = Instant::now();
    let err = runner.run(&ctx, &shell(TREE), &ws).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the run returned"
    );
    assert!(cap.text(Stream::Stdout).contains("started"));
    let pids = pids(&ws);
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the timeout");
    }
}

#[tokio::test]
async fn cancel_kills_the_whole_tree() {
    let (_d, ws, _cap, ctx) = setup();
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    let cancel = ctx.cancel.clone();
    let ws2 = ws.clone();
    let handle = tokio::spawn(async move { runner.run(&ctx, &shell(TREE), &ws2).await });
    // Wait until both children have written their pids.
    for _ in 0..500 {
        if std::fs::read_to_string(ws.dir.join("pids")).is_ok_and(|s| s.lines().count() == 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let err = handle.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    for pid in pids(&ws) {
        assert!(!alive(pid), "process {pid} survived cancellation");
    }
}

#[tokio::test]
async fn background_children_do_not_outlive_a_finished_task() {
    let (_d, ws, cap, ctx) = setup();
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    let status = runner
        .run(
            &ctx,
            &shell("sleep 304 & echo $! >> pids; setsid sleep 305 & echo $! >> pids; echo done"),
            &ws,
        )
        .await
        .unwrap();
    assert!(status.success());
    assert!(cap.text(Stream::Stdout).contains("done"));
    assert!(cap.text(Stream::System).contains("left processes running"));
    for pid in pids(&ws) {
        assert!(!alive(pid), "process {pid} outlived its task");
    }
}
