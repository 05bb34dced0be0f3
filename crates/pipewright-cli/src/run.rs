//! `pipewright run`: run jobs locally and show them as they go.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipewright_core::{
    BuildStatus, CancellationToken, Event, EventKind, SCHEMA_VERSION, StepId, StepStatus, Stream,
};
use pipewright_engine::{
    BuildResult, BuiltinOptions, ChannelSink, Engine, EngineOptions, PipelineResult, Registry,
    RunOptions,
};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

/// How `run` shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spinners for running steps, log lines above them.
    Live,
    /// One prefixed line per log line and per step change.
    Plain,
    /// One JSON event per line.
    Json,
}

/// Everything `run` needs besides the pipeline.
#[derive(Debug)]
pub struct RunArgs {
    pub pipeline_name: String,
    pub jobs: Vec<String>,
    pub inputs: BTreeMap<String, PathBuf>,
    pub job_inputs: BTreeMap<String, serde_json::Value>,
    pub keep: bool,
    pub parallel: usize,
    pub grace: Duration,
    pub allow_privileged: bool,
    pub workspace_root: Option<PathBuf>,
    pub mode: Mode,
    pub color: bool,
    /// Run this plan's one build instead of the pipeline's jobs.
    pub plan: Option<pipewright_engine::BuildPlan>,
    /// The pipeline's local history (build numbers, versions that passed); `None`: this run
    /// alone, numbered 1, with a fresh version history.
    pub history: Option<PathBuf>,
}

pub(crate) fn cache_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

/// The plug-ins of the reference binary: every built-in, from the one list in the engine's
/// registry. Validation uses its catalogue, so whatever validates can run.
pub(crate) fn registry(grace: Duration, allow_privileged: bool) -> Registry {
    Registry::builtins(&BuiltinOptions {
        grace,
        cache_root: default_cache_root(),
        allow_privileged,
    })
}

pub(crate) fn default_cache_root() -> PathBuf {
    match cache_home() {
        Some(c) => c.join("pipewright").join("cache"),
        None => std::env::temp_dir().join("pipewright-cache"),
    }
}

/// Where `https://` type definitions are cached.
pub(crate) fn types_cache_dir() -> PathBuf {
    default_cache_root().join("types")
}

pub(crate) fn default_workspace_root() -> PathBuf {
    match cache_home() {
        Some(c) => c.join("pipewright").join("builds"),
        None => std::env::temp_dir().join("pipewright-builds"),
    }
}

/// The version store and build counter of a pipeline's local history. One that cannot be
/// opened is said once and the run goes on without it, numbered 1 with a fresh history.
async fn local_history(
    dir: &std::path::Path,
) -> (
    Option<Arc<dyn pipewright_engine::VersionStore>>,
    Option<Arc<dyn pipewright_engine::BuildNumbers>>,
) {
    match crate::history::versions(dir).await {
        Ok(store) => (
            Some(Arc::new(store)),
            Some(Arc::new(crate::history::Counter::new(dir.to_path_buf()))),
        ),
        Err(e) => {
            eprintln!("warning: no local build history this run: {e}");
            (None, None)
        }
    }
}

/// How many events wait for the renderer at most.
const EVENT_BUFFER: usize = 1024;

/// Runs the jobs and returns the process exit code.
pub fn run(pipeline: &pipewright_config::Pipeline, args: RunArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(run_async(pipeline, args))
}

/// Engine settings from the command line. The workspace root is made absolute once, here:
/// `$WORKDIR` must survive a task's `cd`, and Docker takes a relative bind source for a volume
/// name.
pub(crate) fn engine_options(args: &RunArgs) -> Result<EngineOptions, String> {
    let root = args
        .workspace_root
        .clone()
        .unwrap_or_else(default_workspace_root);
    let workspace_root = std::path::absolute(&root)
        .map_err(|e| format!("the workspace root `{}`: {e}", root.display()))?;
    Ok(EngineOptions {
        workspace_root,
        keep_workspace: args.keep,
        parallel_jobs: args.parallel,
        kill_grace: args.grace,
        cache_root: default_cache_root(),
        ..EngineOptions::default()
    })
}

async fn run_async(pipeline: &pipewright_config::Pipeline, args: RunArgs) -> u8 {
    let options = match engine_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let engine = Engine::new(registry(args.grace, args.allow_privileged)).with_options(options);
    // Bounded: when the terminal (or the pipe to `jq`) is slower than the build, the build
    // waits; no event is dropped and memory stays bounded.
    let (sink, rx) = ChannelSink::new(EVENT_BUFFER);
    let sink = Arc::new(sink);
    let (store, numbers) = match (&args.history, &args.plan) {
        (Some(dir), None) => local_history(dir).await,
        _ => (None, None),
    };
    let opts = RunOptions {
        pipeline_name: args.pipeline_name.clone(),
        inputs: args.inputs.clone(),
        job_inputs: args.job_inputs.clone(),
        events: sink,
        store,
        numbers,
        ..RunOptions::default()
    };
    if args.mode != Mode::Json
        && let Some(line) = variable_origins(pipeline)
    {
        eprintln!("{line}");
    }
    let renderer = tokio::spawn(render(rx, args.mode, args.color));

    let signals = match StopSignals::register() {
        Ok(s) => tokio::spawn(s.watch(opts.cancel.clone(), opts.force.clone(), args.mode)),
        Err(e) => {
            eprintln!("error: cannot listen for signals: {e}");
            return 1;
        }
    };

    let result = match &args.plan {
        Some(plan) => engine.run_plan(plan, &opts).await.map(|b| PipelineResult {
            status: b.status,
            builds: vec![b],
            not_run: Vec::new(),
        }),
        None => engine.run_pipeline(pipeline, &args.jobs, &opts).await,
    };
    drop(opts);
    signals.abort();
    // The renderer ends when every sender is gone.
    let _ = renderer.await;
    match result {
        Ok(result) => {
            match args.mode {
                Mode::Json => print_json_summary(&result),
                _ => print_summary(&result, args.color),
            }
            match result.status {
                s if s.passes() => 0,
                BuildStatus::Cancelled => 130,
                _ => 1,
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// The signals that stop a run: Ctrl-C (`SIGINT`), and `SIGTERM` and `SIGHUP`, which `timeout`,
/// systemd, `docker stop`, CI cancels and a closed terminal send. Registered before the run
/// starts, so none of them can kill the process outright and orphan its tasks.
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    fn register() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The first signal cancels (hooks and `ensure` still run); a second one of any kind stops
    /// everything.
    async fn watch(mut self, cancel: CancellationToken, force: CancellationToken, mode: Mode) {
        let mut received = 0;
        loop {
            let name = tokio::select! {
                Some(()) = self.int.recv() => "Ctrl-C",
                Some(()) = self.term.recv() => "SIGTERM",
                Some(()) = self.hup.recv() => "SIGHUP",
                else => break,
            };
            received += 1;
            tracing::info!(signal = name, received, "stop signal");
            if received == 1 {
                if mode != Mode::Json {
                    eprintln!(
                        "\n{name}: cancelling… hooks and `ensure` still run (a second signal stops them too)"
                    );
                }
                cancel.cancel();
            } else {
                if mode != Mode::Json {
                    eprintln!("\n{name}: stopping everything");
                }
                force.cancel();
                break;
            }
        }
    }
}

/// Where each variable's value comes from, names only (never values): `variables: token
/// (secret `vault`), region (--var), replicas (default)`.
fn variable_origins(pipeline: &pipewright_config::Pipeline) -> Option<String> {
    use pipewright_config::VarOrigin;
    if pipeline.variables.is_empty() {
        return None;
    }
    let parts: Vec<String> = pipeline
        .variables
        .values()
        .map(|v| {
            let from = match (&v.origin, &v.secret) {
                (VarOrigin::Cli, _) => "--var".to_owned(),
                (VarOrigin::VarsFile(f), _) => format!("vars file {f}"),
                (VarOrigin::Secret, Some(b)) => format!("secret `{}`", b.secret_type),
                (VarOrigin::Secret, None) => "secret".to_owned(),
                (VarOrigin::Default, _) => "default".to_owned(),
            };
            format!("{} ({from})", v.name)
        })
        .collect();
    Some(format!("variables: {}", parts.join(", ")))
}

#[derive(Default)]
struct StepView {
    bar: Option<ProgressBar>,
    /// A partial line per stream, printed when its newline arrives or the step ends.
    partial: [String; 3],
    /// How many attempts the step may make.
    attempts: u32,
}

struct Renderer {
    mode: Mode,
    color: bool,
    multi: Option<MultiProgress>,
    jobs: HashMap<String, String>,
    steps: HashMap<(String, StepId), StepView>,
    /// Plain and JSON output, written out whenever no event is waiting (one write per burst).
    buf: std::cell::RefCell<Vec<u8>>,
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::System => 2,
    }
}

impl Renderer {
    fn paint(&self, text: &str, style: console::Style) -> String {
        if self.color {
            style.apply_to(text).to_string()
        } else {
            text.to_owned()
        }
    }

    fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if !buf.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf);
            let _ = out.flush();
            buf.clear();
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let mut buf = self.buf.borrow_mut();
                buf.extend_from_slice(text.as_bytes());
                buf.push(b'\n');
            }
        }
    }

    fn prefix(&self, build: &str, step: &str) -> String {
        let job = self.jobs.get(build).map(String::as_str).unwrap_or("?");
        self.paint(&format!("{job}/{step}"), console::Style::new().cyan())
    }

    fn log_line(&self, build: &str, step: &str, stream: Stream, text: &str) {
        let prefix = self.prefix(build, step);
        let bar = self.paint("│", console::Style::new().dim());
        let body = match stream {
            Stream::Stdout => text.to_owned(),
            Stream::Stderr => self.paint(text, console::Style::new().yellow()),
            Stream::System => self.paint(text, console::Style::new().dim()),
        };
        self.line(&format!("{prefix} {bar} {body}"));
    }

    fn flush_partial(&mut self, build: &str, step: &StepId) {
        let key = (build.to_owned(), step.clone());
        let Some(view) = self.steps.get_mut(&key) else {
            return;
        };
        let partial = std::mem::take(&mut view.partial);
        let name = step.to_string();
        for (i, text) in partial.iter().enumerate() {
            if !text.is_empty() {
                let stream = [Stream::Stdout, Stream::Stderr, Stream::System][i];
                self.log_line(build, &name, stream, text);
            }
        }
    }

    fn handle(&mut self, e: Event) {
        if self.mode == Mode::Json {
            if let Ok(s) = serde_json::to_string(&e) {
                self.line(&s);
            }
            return;
        }
        let build = e.build_id;
        match e.kind {
            EventKind::BuildStarted { job, .. } => {
                self.jobs.insert(build, job);
            }
            EventKind::StepStarted {
                step,
                attempt,
                attempts,
            } => self.step_started(&build, step, attempt, attempts),
            EventKind::Log {
                step, stream, data, ..
            } => {
                let name = step.to_string();
                let mut complete = Vec::new();
                {
                    let view = self.steps.entry((build.clone(), step)).or_default();
                    split_lines(&mut view.partial[slot(stream)], &data, &mut complete);
                }
                for line in complete {
                    self.log_line(&build, &name, stream, &line);
                }
            }
            EventKind::StepFinished {
                step,
                attempt,
                is_final,
                status,
                duration_ms,
                reason,
                ..
            } => self.step_finished(
                &build,
                &step,
                attempt,
                is_final,
                status,
                duration_ms,
                reason,
            ),
            EventKind::BuildFinished { status, .. } => {
                let job = self.jobs.get(&build).cloned().unwrap_or_default();
                let style = if status.passes() {
                    console::Style::new().green().bold()
                } else {
                    console::Style::new().red().bold()
                };
                self.line(&self.paint(&format!("job {job} {status}"), style));
            }
            _ => {}
        }
    }
}

impl Renderer {
    fn step_started(&mut self, build: &str, step: StepId, attempt: u32, attempts: u32) {
        let name = step.to_string();
        // A skipped step (attempt 0) only shows its end.
        let bar = (attempt > 0)
            .then_some(self.multi.as_ref())
            .flatten()
            .map(|m| {
                let pb = m.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                pb.set_style(style);
                pb.set_message(self.prefix(build, &name));
                pb.enable_steady_tick(Duration::from_millis(100));
                pb
            });
        if self.multi.is_none() && attempt == 1 {
            let p = self.prefix(build, &name);
            self.line(&format!(
                "{p} {}",
                self.paint("started", console::Style::new().dim())
            ));
        }
        self.steps.insert(
            (build.to_owned(), step),
            StepView {
                bar,
                partial: Default::default(),
                attempts,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn step_finished(
        &mut self,
        build: &str,
        step: &StepId,
        attempt: u32,
        is_final: bool,
        status: StepStatus,
        duration_ms: u64,
        reason: Option<String>,
    ) {
        self.flush_partial(build, step);
        let mut attempts = 1;
        if let Some(view) = self.steps.remove(&(build.to_owned(), step.clone())) {
            attempts = view.attempts;
            if let Some(bar) = view.bar {
                bar.finish_and_clear();
                if let Some(m) = &self.multi {
                    m.remove(&bar);
                }
            }
        }
        let (mark, style) = status_mark(status);
        let took = format_ms(duration_ms);
        let retrying = if is_final {
            String::new()
        } else {
            format!(" (attempt {attempt}/{attempts}, retrying)")
        };
        let why = reason
            .map(|r| format!(": {r}{retrying}"))
            .unwrap_or(retrying);
        let p = self.prefix(build, &step.to_string());
        let text = if status == StepStatus::Skipped {
            format!("{mark} {p} skipped{why}")
        } else {
            format!("{mark} {p} {status} in {took}{why}")
        };
        self.line(&self.paint(&text, style));
    }
}

/// The longest line printed as one: longer ones are printed in pieces of this size, so a
/// single huge line costs time and memory in proportion to its length, not its square.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Appends `data` to the partial line `buf` and moves every complete line (and every
/// [`MAX_LINE_BYTES`] piece of an over-long one) to `out`. Only the new bytes are searched.
fn split_lines(buf: &mut String, data: &str, out: &mut Vec<String>) {
    let mut search = buf.len();
    buf.push_str(data);
    let mut from = 0;
    while let Some(rel) = buf[search..].find('\n') {
        let end = search + rel;
        out.push(buf[from..end].trim_end_matches('\r').to_owned());
        from = end + 1;
        search = from;
    }
    while buf.len() - from > MAX_LINE_BYTES {
        let mut cut = from + MAX_LINE_BYTES;
        while !buf.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(buf[from..cut].to_owned());
        from = cut;
    }
    buf.drain(..from);
}

fn status_mark(status: StepStatus) -> (&'static str, console::Style) {
    match status {
        StepStatus::Succeeded => ("✓", console::Style::new().green()),
        StepStatus::Failed | StepStatus::Errored => ("✗", console::Style::new().red()),
        StepStatus::Cancelled => ("⊘", console::Style::new().yellow()),
        _ => ("·", console::Style::new().dim()),
    }
}

fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

async fn render(mut rx: mpsc::Receiver<Event>, mode: Mode, color: bool) {
    let mut r = Renderer {
        mode,
        color,
        multi: (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stdout())),
        jobs: HashMap::new(),
        steps: HashMap::new(),
        buf: Default::default(),
    };
    while let Some(e) = rx.recv().await {
        r.handle(e);
        if rx.is_empty() {
            r.flush();
        }
    }
    r.flush();
    if let Some(m) = &r.multi {
        let _ = m.clear();
    }
}

fn summary_rows(result: &PipelineResult) -> Vec<[String; 5]> {
    let mut rows = Vec::new();
    for b in &result.builds {
        for s in &b.steps {
            rows.push([
                b.job.clone(),
                s.step.to_string(),
                s.status.to_string(),
                s.attempts.to_string(),
                format_ms(u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX)),
            ]);
        }
    }
    for (job, _) in &result.not_run {
        rows.push([
            job.clone(),
            "—".into(),
            "not run".into(),
            "0".into(),
            "—".into(),
        ]);
    }
    rows
}

fn print_summary(result: &PipelineResult, color: bool) {
    let header = ["JOB", "STEP", "STATUS", "ATTEMPTS", "DURATION"];
    let rows = summary_rows(result);
    let mut widths = header.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt_row = |r: &[&str]| {
        r.iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", fmt_row(&header));
    for r in &rows {
        let line = fmt_row(&r.each_ref().map(String::as_str));
        let style = match r[2].as_str() {
            "succeeded" => console::Style::new(),
            "failed" | "errored" => console::Style::new().red(),
            _ => console::Style::new().dim(),
        };
        let _ = if color {
            writeln!(out, "{}", style.apply_to(line))
        } else {
            writeln!(out, "{line}")
        };
    }
    let _ = writeln!(out);
    for b in &result.builds {
        let _ = writeln!(out, "{}", build_line(b));
        if let Some(ws) = &b.workspace {
            let _ = writeln!(out, "  workspace kept at {}", ws.display());
        }
    }
    for (job, why) in &result.not_run {
        let _ = writeln!(out, "job {job}: not run ({why})");
    }
    let _ = writeln!(
        out,
        "{}",
        match result.status {
            s if s.passes() => "pipeline succeeded".to_owned(),
            s => format!("pipeline {s}"),
        }
    );
}

fn build_line(b: &BuildResult) -> String {
    let secs = b.duration.as_secs_f64();
    match &b.reason {
        Some(r) => format!(
            "job {} #{}: {} in {secs:.2}s: {r}",
            b.job, b.number, b.status
        ),
        None => format!("job {} #{}: {} in {secs:.2}s", b.job, b.number, b.status),
    }
}

/// The last line of `--output json`: the whole run, in the contract's shapes (each build as its
/// `build_finished` says, plus its id, job and number).
fn print_json_summary(result: &PipelineResult) {
    let builds: Vec<serde_json::Value> = result
        .builds
        .iter()
        .map(|b| serde_json::to_value(b).unwrap_or_default())
        .collect();
    let summary = serde_json::json!({
        "schema": SCHEMA_VERSION,
        "event": "summary",
        "status": result.status,
        "builds": builds,
        "not_run": result.not_run.iter().map(|(j, r)| serde_json::json!({"job": j, "reason": r})).collect::<Vec<_>>(),
    });
    crate::write_out(format_args!("{summary}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_keeps_partial_lines_and_bounds_long_ones() {
        let (mut buf, mut out) = (String::new(), Vec::new());
        split_lines(&mut buf, "a\r\nb", &mut out);
        assert_eq!(out, ["a"]);
        assert_eq!(buf, "b");
        split_lines(&mut buf, "c\n", &mut out);
        assert_eq!(out, ["a", "bc"]);
        assert!(buf.is_empty());
        // One line far longer than the limit arrives in many chunks: it leaves in bounded
        // pieces and the partial buffer never holds more than the limit.
        let chunk = "é".repeat(1000);
        for _ in 0..200 {
            split_lines(&mut buf, &chunk, &mut out);
            assert!(buf.len() <= MAX_LINE_BYTES);
        }
        let pieces = &out[2..];
        assert!(pieces.iter().all(|p| p.len() <= MAX_LINE_BYTES));
        let total: usize = pieces.iter().map(String::len).sum::<usize>() + buf.len();
        assert_eq!(total, 200 * chunk.len());
    }
}
