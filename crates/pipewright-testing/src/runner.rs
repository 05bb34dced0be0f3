//! The [`Runner`] conformance suite.
//!
//! A runner is checked by running small POSIX `sh` scripts through it. The suite does not know
//! how a runner takes a script (a `cmd` param, a `path` and `args`, an image and a command…), so
//! the caller passes a function that turns a script into a [`TaskSpec`] for that runner. Every
//! script runs with the workspace as its working directory and only writes files there, so the
//! suite works for host runners and containers alike.
//!
//! The rules, each a method of [`RunnerSuite`]:
//!
//! - **exit codes**: `exit N` is `Ok(ExitStatus::Code(N))`; a failing task is `Ok`, not `Err`.
//! - **streams kept apart**: what the task writes to stdout reaches [`Stream::Stdout`] and only
//!   that; the same for stderr.
//! - **cancel kills the process tree**: cancelling [`Ctx::cancel`] ends the run with
//!   [`ErrorKind::Cancelled`] and stops every process the task started, including one that
//!   ignores `SIGTERM`.
//! - **timeout**: a run past [`Ctx::deadline`] ends with [`ErrorKind::Timeout`] and stops the
//!   same tree.
//! - **nothing left running**: when the task's main process exits, the background processes it
//!   left behind are stopped before `run` returns.
//!
//! "Stopped" is observed from outside: each background process appends to a heartbeat file in
//! the workspace every 100 ms, and after `run` returns the files must stop growing.
//!
//! ```no_run
//! # async fn demo() {
//! use pipewright_core::{Params, TaskSpec};
//! use pipewright_testing::runner::RunnerSuite;
//! # struct MyRunner;
//! # #[async_trait::async_trait]
//! # impl pipewright_core::Runner for MyRunner {
//! #     async fn run(&self, _: &pipewright_core::Ctx, _: &TaskSpec, _: &pipewright_core::Workspace)
//! #         -> pipewright_core::Result<pipewright_core::ExitStatus> { Ok(pipewright_core::ExitStatus::SUCCESS) }
//! # }
//! let runner = MyRunner;
//! RunnerSuite::new(&runner, |script| {
//!     let mut params = Params::new();
//!     params.insert("cmd", script);
//!     TaskSpec { name: "conformance".into(), params, ..TaskSpec::default() }
//! })
//! .run_all()
//! .await;
//! # }
//! ```

use crate::log::RecordingSink;
use pipewright_core::{Ctx, ErrorKind, ExitStatus, Result, Runner, Stream, TaskSpec, Workspace};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a rule waits for a task to start, or for a killed run to return.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long the heartbeat files are watched after `run` returns.
const QUIET: Duration = Duration::from_millis(1500);

type ToTask<'a> = Box<dyn Fn(&str) -> TaskSpec + Send + Sync + 'a>;

/// The runner suite: a runner, how to give it a script, and which optional rules apply.
pub struct RunnerSuite<'a> {
    runner: &'a dyn Runner,
    to_task: ToTask<'a>,
    detached: bool,
    base: Ctx,
}

impl std::fmt::Debug for RunnerSuite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSuite")
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

/// A temporary workspace and the context of one rule.
struct Run {
    _dir: tempfile::TempDir,
    ws: Workspace,
    log: Arc<RecordingSink>,
    ctx: Ctx,
}

fn broke(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("runner rule `{rule}` broke: {detail}")
}

impl<'a> RunnerSuite<'a> {
    /// A suite for `runner`; `to_task` turns a POSIX `sh` script into a task for it.
    pub fn new(
        runner: &'a dyn Runner,
        to_task: impl Fn(&str) -> TaskSpec + Send + Sync + 'a,
    ) -> Self {
        Self {
            runner,
            to_task: Box::new(to_task),
            detached: false,
            base: Ctx::new(),
        }
    }

    /// Also requires that processes which left the task's process group (`setsid` daemons) are
    /// stopped on cancel, timeout and exit. The task's environment must have `setsid`.
    pub fn with_detached_daemons(mut self) -> Self {
        self.detached = true;
        self
    }

    /// The context every rule starts from (build metadata, environment); the suite replaces
    /// its log sink, token and deadline.
    pub fn with_ctx(mut self, ctx: Ctx) -> Self {
        self.base = ctx;
        self
    }

    /// Runs every rule, one after the other.
    pub async fn run_all(&self) {
        self.exit_codes().await;
        self.streams_kept_apart().await;
        self.cancel_kills_the_process_tree().await;
        self.timeout_kills_the_process_tree().await;
        self.nothing_left_running().await;
    }

    fn prepare(&self, rule: &str) -> Run {
        let dir = match tempfile::Builder::new()
            .prefix("pipewright-runner-")
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => broke(rule, format!("cannot make a workspace: {e}")),
        };
        let ws = Workspace {
            dir: dir.path().to_path_buf(),
            output_file: dir.path().join(".pipewright-output"),
        };
        let log = RecordingSink::new();
        let mut ctx = self.base.clone().with_log(log.clone());
        ctx.cancel = pipewright_core::CancellationToken::new();
        ctx.deadline = None;
        Run {
            _dir: dir,
            ws,
            log,
            ctx,
        }
    }

    async fn run(&self, run: &Run, script: &str) -> Result<ExitStatus> {
        let task = (self.to_task)(script);
        self.runner.run(&run.ctx, &task, &run.ws).await
    }

    /// Rule **exit codes**: `exit 0`, `exit 1`, `exit 3` and `exit 42` come back as those codes.
    pub async fn exit_codes(&self) {
        const RULE: &str = "exit codes";
        for code in [0, 1, 3, 42] {
            let run = self.prepare(RULE);
            match self.run(&run, &format!("exit {code}")).await {
                Ok(ExitStatus::Code(c)) if c == code => {}
                Ok(other) => broke(RULE, format!("`exit {code}` came back as {other}")),
                Err(e) => broke(
                    RULE,
                    format!("`exit {code}` is an error ({}: {e}), not Ok", e.kind()),
                ),
            }
        }
    }

    /// Rule **streams kept apart**: interleaved writes to stdout and stderr arrive on their own
    /// streams, complete and in order.
    pub async fn streams_kept_apart(&self) {
        const RULE: &str = "streams kept apart";
        let run = self.prepare(RULE);
        let script = "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; printf 'no newline'";
        match self.run(&run, script).await {
            Ok(s) if s.success() => {}
            Ok(s) => broke(RULE, format!("the task ended with {s}")),
            Err(e) => broke(RULE, format!("the task errored: {e}")),
        }
        let (out, err) = (run.log.text(Stream::Stdout), run.log.text(Stream::Stderr));
        if out != "out-1\nout-2\nno newline" {
            broke(RULE, format!("stdout was {out:?}, stderr {err:?}"));
        }
        if err != "err-1\nerr-2\n" {
            broke(RULE, format!("stderr was {err:?}, stdout {out:?}"));
        }
    }

    /// The script of the kill rules: background processes (one ignoring `SIGTERM`, optionally a
    /// `setsid` daemon) beating into files, then `started` and `tail` (or the task's exit).
    fn tree_script(&self, tail: &str) -> String {
        let beat = |file: &str| format!("while :; do echo . >> {file}; sleep 0.1; done");
        let mut s = format!(
            "(trap '' TERM; {}) & ({}) & ",
            beat("beat-stubborn"),
            beat("beat-child")
        );
        if self.detached {
            s.push_str(&format!(
                "setsid sh -c '{}' </dev/null >/dev/null 2>&1 & ",
                beat("beat-daemon")
            ));
        }
        s.push_str(&format!("{}; echo started; {tail}", self.wait_beats()));
        s
    }

    fn beats(&self) -> Vec<&'static str> {
        let mut b = vec!["beat-stubborn", "beat-child"];
        if self.detached {
            b.push("beat-daemon");
        }
        b
    }

    /// A shell loop that waits (up to 30 s) until every heartbeat file exists.
    fn wait_beats(&self) -> String {
        let tests: Vec<String> = self.beats().iter().map(|b| format!("[ -e {b} ]")).collect();
        format!(
            "i=0; until {}; do i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1; done",
            tests.join(" && ")
        )
    }

    /// After `run` returned: every heartbeat file exists and stops growing.
    async fn assert_quiet(&self, rule: &str, ws: &Path) {
        let sizes = |names: &[&str]| -> Vec<Option<u64>> {
            names
                .iter()
                .map(|n| std::fs::metadata(ws.join(n)).ok().map(|m| m.len()))
                .collect()
        };
        let names = self.beats();
        let before = sizes(&names);
        for (name, size) in names.iter().zip(&before) {
            if size.is_none() {
                broke(
                    rule,
                    format!("the background process writing `{name}` never started"),
                );
            }
        }
        tokio::time::sleep(QUIET).await;
        let after = sizes(&names);
        for ((name, b), a) in names.iter().zip(&before).zip(&after) {
            if b != a {
                broke(
                    rule,
                    format!(
                        "a process the task started is still running after `run` returned (`{name}` grew from {b:?} to {a:?} bytes)"
                    ),
                );
            }
        }
    }

    /// Rule **cancel kills the process tree**.
    pub async fn cancel_kills_the_process_tree(&self) {
        const RULE: &str = "cancel kills the process tree";
        let run = self.prepare(RULE);
        let script = self.tree_script("sleep 600");
        let cancel = run.ctx.cancel.clone();
        let log = run.log.clone();
        let started = Instant::now();
        let (result, seen) = tokio::join!(
            tokio::time::timeout(PATIENCE * 2, self.run(&run, &script)),
            async move {
                let seen = log.wait_for(Stream::Stdout, "started", PATIENCE).await;
                cancel.cancel();
                seen
            }
        );
        if !seen {
            broke(
                RULE,
                format!(
                    "the task did not start within {PATIENCE:?}; stderr: {:?}",
                    run.log.text(Stream::Stderr)
                ),
            );
        }
        match result {
            Err(_) => broke(RULE, "`run` did not return after the cancel"),
            Ok(Err(e)) if e.kind() == ErrorKind::Cancelled => {}
            Ok(Err(e)) => broke(
                RULE,
                format!(
                    "a cancelled run must be a Cancelled error, got {}: {e}",
                    e.kind()
                ),
            ),
            Ok(Ok(s)) => broke(
                RULE,
                format!("a cancelled run must be a Cancelled error, got Ok({s})"),
            ),
        }
        tracing::debug!(took = ?started.elapsed(), "cancelled run returned");
        self.assert_quiet(RULE, &run.ws.dir).await;
    }

    /// Rule **timeout**: a deadline five seconds away ends the run as [`ErrorKind::Timeout`] and
    /// stops the whole tree.
    pub async fn timeout_kills_the_process_tree(&self) {
        const RULE: &str = "timeout";
        let mut run = self.prepare(RULE);
        run.ctx = run.ctx.clone().with_timeout(Duration::from_secs(5));
        let script = self.tree_script("sleep 600");
        match tokio::time::timeout(PATIENCE * 2, self.run(&run, &script)).await {
            Err(_) => broke(RULE, "`run` did not return after its deadline"),
            Ok(Err(e)) if e.kind() == ErrorKind::Timeout => {}
            Ok(Err(e)) => broke(
                RULE,
                format!(
                    "a run past its deadline must be a Timeout error, got {}: {e}",
                    e.kind()
                ),
            ),
            Ok(Ok(s)) => broke(
                RULE,
                format!("a run past its deadline must be a Timeout error, got Ok({s})"),
            ),
        }
        if !run.log.text(Stream::Stdout).contains("started") {
            broke(
                RULE,
                format!(
                    "the task never started; stderr: {:?}",
                    run.log.text(Stream::Stderr)
                ),
            );
        }
        self.assert_quiet(RULE, &run.ws.dir).await;
    }

    /// Rule **nothing left running**: the task exits 0 while its background processes are
    /// still beating; `run` returns `Ok(Code(0))` and they are gone.
    pub async fn nothing_left_running(&self) {
        const RULE: &str = "nothing left running";
        let run = self.prepare(RULE);
        let script = self.tree_script("exit 0");
        match tokio::time::timeout(PATIENCE * 2, self.run(&run, &script)).await {
            Err(_) => broke(RULE, "`run` did not return after the task exited"),
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => broke(RULE, format!("the task exits 0, got {s}")),
            Ok(Err(e)) => broke(RULE, format!("the task exits 0, got an error: {e}")),
        }
        self.assert_quiet(RULE, &run.ws.dir).await;
    }
}
