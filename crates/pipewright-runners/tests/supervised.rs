//! Host tasks under a task supervisor, with real processes. A test binary of its own without
//! the libtest harness: the supervisor is this executable started again, so `main` must call
//! `enable_task_supervisor` first, as the `pipewright` binary does.
#![allow(clippy::unwrap_used)]

use pipewright_core::{
    Ctx, ErrorKind, ExitStatus, LogSink, Params, Runner, Stream, TaskSpec, Workspace,
};
use pipewright_runners::{ExecRunner, ShellRunner};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Capture(Mutex<Vec<(Stream, Vec<u8>)>>);

impl LogSink for Capture {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        self.0.lock().unwrap().push((stream, chunk.to_vec()));
    }
}

impl Capture {
    fn text(&self, stream: Stream) -> String {
        let chunks = self.0.lock().unwrap();
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, c)| c.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    ws: Workspace,
    cap: Arc<Capture>,
    ctx: Ctx,
}

fn setup(build: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace {
        dir: dir.path().to_path_buf(),
        output_file: dir.path().join("out"),
    };
    let cap = Arc::new(Capture::default());
    let mut ctx = Ctx::new().with_log(cap.clone());
    ctx.build.build_id = build.into();
    Setup {
        _dir: dir,
        ws,
        cap,
        ctx,
    }
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

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

fn pids(ws: &Workspace, lines: usize) -> Vec<i32> {
    for _ in 0..1000 {
        let text = std::fs::read_to_string(ws.dir.join("pids")).unwrap_or_default();
        if text.lines().count() >= lines {
            return text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the task never wrote {lines} pid(s)");
}

/// Waits (up to 5 s) for every pid to be gone; returns the survivors.
async fn survivors(pids: &[i32]) -> Vec<i32> {
    for _ in 0..500 {
        if pids.iter().all(|p| !alive(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pids.iter().copied().filter(|p| alive(*p)).collect()
}

/// A daemon that left the group and cleared its environment (no cookie), a TERM-ignoring child,
/// and a main process that counts the `SIGTERM`s it gets.
const TREE: &str = "setsid env -i sleep 361 </dev/null >/dev/null 2>&1 & echo $! >> pids; \
                    (trap '' TERM; exec sleep 362) & echo $! >> pids; \
                    trap 'echo term >> terms' TERM; echo started; \
                    while :; do sleep 0.05; done";

async fn exit_statuses_output_and_missing_programs() {
    let s = setup("statuses");
    let status = ShellRunner::new()
        .run(&s.ctx, &shell("echo out; echo err >&2; exit 3"), &s.ws)
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Code(3));
    assert_eq!(s.cap.text(Stream::Stdout), "out\n");
    assert_eq!(s.cap.text(Stream::Stderr), "err\n");
    let status = ShellRunner::new()
        .run(&s.ctx, &shell("kill -9 $$"), &s.ws)
        .await
        .unwrap();
    assert_eq!(status, ExitStatus::Signal(9));

    // The task starts with no signal blocked (the supervisor blocks some for itself).
    let s = setup("mask");
    let mut params = Params::new();
    params.insert("path", "grep");
    let task = TaskSpec {
        name: "e".into(),
        params,
        args: vec!["SigBlk".into(), "/proc/self/status".into()],
        ..TaskSpec::default()
    };
    assert!(
        ExecRunner::new()
            .run(&s.ctx, &task, &s.ws)
            .await
            .unwrap()
            .success()
    );
    assert_eq!(s.cap.text(Stream::Stdout), "SigBlk:\t0000000000000000\n");

    let mut params = Params::new();
    params.insert("path", "/no/such/program");
    let task = TaskSpec {
        name: "e".into(),
        params,
        ..TaskSpec::default()
    };
    let err = ExecRunner::new()
        .run(&s.ctx, &task, &s.ws)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("/no/such/program"), "{err}");
}

async fn cancel_stops_every_process_once_and_for_all() {
    let s = setup("cancel");
    let runner = ShellRunner::new().with_grace(Duration::from_millis(500));
    let cancel = s.ctx.cancel.clone();
    let (ctx, ws) = (s.ctx.clone(), s.ws.clone());
    let run = tokio::spawn(async move { runner.run(&ctx, &shell(TREE), &ws).await });
    let pids = pids(&s.ws, 2);
    cancel.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the cancel");
    }
    // One SIGTERM: a second one tells programs such as `pipewright run` to skip their cleanup.
    let terms = std::fs::read_to_string(s.ws.dir.join("terms")).unwrap_or_default();
    assert_eq!(terms, "term\n", "the main process got {terms:?}");
}

async fn a_daemon_outlives_its_task_until_the_build_ends() {
    let s = setup("daemon");
    let status = ShellRunner::new()
        .run(
            &s.ctx,
            // The task ends once the daemon has left its process group.
            &shell(
                "setsid env -i sh -c 'echo $$ >> pids; exec sleep 363' </dev/null >/dev/null 2>&1 & \
                 while [ ! -s pids ]; do sleep 0.01; done",
            ),
            &s.ws,
        )
        .await
        .unwrap();
    assert!(status.success());
    let pids = pids(&s.ws, 1);
    assert!(alive(pids[0]), "a later step may use the daemon");
    // Another build's end leaves it alone; its own build's end stops it.
    pipewright_runners::reap_build("another").await;
    assert!(alive(pids[0]));
    assert!(pipewright_runners::reap_build("daemon").await >= 1);
    assert!(!alive(pids[0]), "the daemon outlived its build");
}

async fn a_dropped_run_takes_its_processes_along() {
    let s = setup("dropped");
    let runner = ShellRunner::new();
    let (ctx, ws) = (s.ctx.clone(), s.ws.clone());
    let run = tokio::spawn(async move { runner.run(&ctx, &shell(TREE), &ws).await });
    let pids = pids(&s.ws, 2);
    run.abort();
    let _ = run.await;
    let left = survivors(&pids).await;
    assert!(left.is_empty(), "{left:?} outlived the dropped run");
}

async fn leftovers_of_a_finished_task_are_stopped() {
    let s = setup("leftovers");
    let runner = ShellRunner::new().with_grace(Duration::from_millis(300));
    let status = runner
        .run(
            &s.ctx,
            &shell(
                "sleep 364 & echo $! >> pids; setsid env -i sleep 365 & echo $! >> pids; echo done",
            ),
            &s.ws,
        )
        .await
        .unwrap();
    assert!(status.success());
    assert!(
        s.cap
            .text(Stream::System)
            .contains("left processes running")
    );
    // The second one holds the task's output open and carries no cookie.
    for pid in pids(&s.ws, 2) {
        assert!(!alive(pid), "process {pid} outlived its task");
    }
}

fn main() {
    pipewright_runners::enable_task_supervisor();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        exit_statuses_output_and_missing_programs().await;
        eprintln!("exit_statuses_output_and_missing_programs ... ok");
        cancel_stops_every_process_once_and_for_all().await;
        eprintln!("cancel_stops_every_process_once_and_for_all ... ok");
        a_daemon_outlives_its_task_until_the_build_ends().await;
        eprintln!("a_daemon_outlives_its_task_until_the_build_ends ... ok");
        a_dropped_run_takes_its_processes_along().await;
        eprintln!("a_dropped_run_takes_its_processes_along ... ok");
        leftovers_of_a_finished_task_are_stopped().await;
        eprintln!("leftovers_of_a_finished_task_are_stopped ... ok");
    });
}
