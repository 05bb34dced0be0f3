//! The `pipewright` command.

use clap::{Args, Parser, Subcommand, ValueEnum};
use pipewright_config::{LoadError, LoadOptions, Loaded, Severity};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

mod blobs;
mod client;
mod history;
mod params;
mod plan;
mod run;
mod server;
mod worker;

/// Pipewright: a CI/CD toolkit. Pipelines are HCL files of resources, jobs and steps.
#[derive(Debug, Parser)]
#[command(
    name = "pipewright",
    version,
    propagate_version = true,
    after_help = "Examples:\n  pipewright run --pipeline examples/pipelines/hello.hcl\n  pipewright validate examples/pipelines/hello.hcl\n  pipewright graph --format dot examples/pipelines/fan-out-fan-in.hcl\n\nThe pipeline language is described in docs/pipeline-language.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: client::Conn,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run jobs on this machine, with no server: one job with `--job`, otherwise the whole
    /// pipeline (jobs linked by `passed` run in order, the rest in parallel).
    ///
    /// Each build gets a fresh workspace (removed afterwards unless `--keep`). A `get` uses the
    /// directory given with `--input NAME=DIR`, otherwise it checks the resource and fetches the
    /// newest version. Ctrl-C, SIGTERM or SIGHUP cancels (hooks and `ensure` still run); a second
    /// one stops everything. Exits 0 when every job passed, 1 when one failed, 130 when cancelled.
    ///
    /// Example: pipewright run --pipeline examples/pipelines/hello.hcl --var greeting=hi
    Run(RunCmd),
    /// Show the plan a build of one job would run, without running it: the version each `get`
    /// would fetch and why (resources are checked as a build would check them), the job's
    /// inputs and the steps. `--output json` writes the plan itself, which `run --plan`
    /// executes anywhere.
    ///
    /// Example: pipewright plan examples/pipelines/git-to-deploy.hcl --job test
    Plan(PlanCmd),
    /// Check a pipeline file and report every problem with file:line:col and a suggested fix.
    ///
    /// Exits 0 when the pipeline is valid (warnings are printed but do not fail), 1 when it has
    /// errors. Validation needs no credentials: secret-backed variables are not fetched.
    ///
    /// Example: pipewright validate examples/pipelines/hello.hcl --var greeting=hi
    Validate(ValidateCmd),
    /// Print the job graph: resources feed jobs, `passed` links jobs, puts feed resources.
    ///
    /// Example: pipewright graph --format dot pipeline.hcl | dot -Tsvg > pipeline.svg
    Graph(GraphCmd),
    /// Run the CI server: check loops, triggers, a scheduler, workers and the HTTP API.
    ///
    /// In memory with a worker in the process, the whole CI is one command; `--db sqlite://…`
    /// keeps builds and versions across restarts. The pipeline file never changes. See
    /// docs/server.md.
    ///
    /// Example: pipewright server --db mem --queue mem --run-worker --pipeline pipeline.hcl
    Server(server::ServerCmd),
    /// Take builds from a server's NATS queue and run them on this machine.
    ///
    /// A worker needs only the NATS address and a worker token; it holds no database
    /// credentials. See docs/workers.md.
    ///
    /// Example: pipewright worker --queue nats://ci.example.com:4222 --token-file worker-token --tags linux
    Worker(worker::WorkerCmd),
    /// Look after the blob store of artifacts and task caches (`--blobs`).
    #[command(subcommand)]
    Blobs(blobs::BlobsCmd),
    #[command(flatten)]
    Client(client::ClientCmd),
}

#[derive(Debug, Args)]
struct RunCmd {
    /// The pipeline file.
    #[arg(value_name = "FILE", required_unless_present_any = ["pipeline", "plan"])]
    file: Option<PathBuf>,
    /// Run one build from a plan written by `pipewright plan --output json` instead of a
    /// pipeline file: no HCL, no type fetch, the plan's versions.
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["file", "pipeline", "job"])]
    plan: Option<PathBuf>,
    /// The pipeline file (the same as the positional FILE).
    #[arg(long, short = 'p', value_name = "FILE", conflicts_with = "file")]
    pipeline: Option<PathBuf>,
    /// Run only this job (repeatable). Default: every job.
    #[arg(long, short = 'j', value_name = "NAME")]
    job: Vec<String>,
    #[command(flatten)]
    vars: VarArgs,
    /// Use a local directory for a resource: `--input src=./` (repeatable).
    #[arg(long = "input", value_name = "NAME=DIR", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// A value for a job's `input` block, seen by commands as `INPUT_<NAME>`:
    /// `--param target=staging` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_var)]
    params: Vec<(String, String)>,
    /// Keep build workspaces and print where they are.
    #[arg(long)]
    keep: bool,
    /// How many jobs may run at once (0 = as many as the job graph allows).
    #[arg(long, value_name = "N", default_value_t = 0)]
    parallel: usize,
    /// How long a stopped task may take to exit after SIGTERM before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_grace)]
    kill_grace: std::time::Duration,
    /// Let `run "docker"` blocks ask for `privileged = true` (off: a privileged container
    /// owns the host).
    #[arg(long)]
    allow_privileged: bool,
    /// Where build workspaces are made (default: $XDG_CACHE_HOME/pipewright/builds).
    #[arg(long, value_name = "DIR")]
    workspace_root: Option<PathBuf>,
    /// Leave the pipeline's local history alone: builds are numbered 1 and `passed` sees only
    /// this run (default: numbers and passed versions carry over from earlier runs, kept under
    /// $XDG_CACHE_HOME/pipewright/history).
    #[arg(long)]
    no_history: bool,
    /// `text` for people (a live view on a terminal, prefixed lines otherwise), `json` for
    /// tools (one event per line, then a summary).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    color: ColorArg,
}

#[derive(Debug, Args)]
struct PlanCmd {
    /// The pipeline file.
    #[arg(value_name = "FILE", required_unless_present = "pipeline")]
    file: Option<PathBuf>,
    /// The pipeline file (the same as the positional FILE).
    #[arg(long, short = 'p', value_name = "FILE", conflicts_with = "file")]
    pipeline: Option<PathBuf>,
    /// The job to plan.
    #[arg(long, short = 'j', value_name = "NAME")]
    job: String,
    #[command(flatten)]
    vars: VarArgs,
    /// Use a local directory for a resource: `--input src=./` (repeatable).
    #[arg(long = "input", value_name = "NAME=DIR", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// A value for a job's `input` block: `--param target=staging` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_var)]
    params: Vec<(String, String)>,
    /// `text` for people, `json` for the plan itself.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    color: ColorArg,
}

#[derive(Debug, Args)]
struct ValidateCmd {
    /// The pipeline file.
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    /// `text` for people, `json` for tools (the typed pipeline model, or the diagnostics).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    color: ColorArg,
}

#[derive(Debug, Args)]
struct GraphCmd {
    /// The pipeline file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    format: GraphFormat,
    #[command(flatten)]
    vars: VarArgs,
    #[command(flatten)]
    color: ColorArg,
}

#[derive(Debug, Args)]
pub(crate) struct VarArgs {
    /// Set a variable: `--var name=value` (repeatable; beats vars files, secrets and defaults).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Read variables from a file: JSON (`.json`) or HCL `name = value` lines (repeatable; later
    /// files win).
    #[arg(long = "vars-file", value_name = "FILE")]
    vars_files: Vec<PathBuf>,
    /// Let a type definition's relative `source` path point outside the pipeline's directory.
    #[arg(long)]
    allow_sources_outside: bool,
}

#[derive(Debug, Args)]
struct ColorArg {
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl ColorArg {
    fn enabled(&self) -> bool {
        match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

impl ColorArg {
    /// Colour for what goes to stdout (the run view).
    fn enabled_for_stdout(&self) -> bool {
        match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

pub(crate) fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.is_empty() => {
            let dir = PathBuf::from(v);
            if !dir.is_dir() {
                return Err(format!("`{v}` is not a directory"));
            }
            Ok((k.trim().to_owned(), dir))
        }
        _ => Err(format!("expected NAME=DIR, got `{s}`")),
    }
}

pub(crate) fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    pipewright_config::parse_duration(s).map_err(|e| e.to_string())
}

pub(crate) fn load(file: &std::path::Path, vars: &VarArgs) -> Result<Loaded, LoadError> {
    let registry = run::registry(pipewright_runners::DEFAULT_GRACE, false);
    let opts = LoadOptions {
        catalog: registry.catalog(),
        vars: vars.vars.clone(),
        vars_files: vars.vars_files.clone(),
        allow_sources_outside: vars.allow_sources_outside,
        fetcher: Some(std::sync::Arc::new(pipewright_fetch::HttpFetcher::new(
            run::types_cache_dir(),
        ))),
    };
    let loaded = pipewright_config::load_file(file, &opts)?;
    // Param values a built-in type refuses are load errors too, at the resource's block. An
    // `artifact` needs `dir` only where no blob store is shared (a server or worker with
    // `--blobs` or NATS takes none), so it is checked as over a blob store.
    let mut check = registry;
    check.artifacts_in(std::sync::Arc::new(pipewright_blobs::DirBlobStore::new(
        run::default_cache_root().join("blobs"),
    )));
    let refused = check.check_resources(&loaded.pipeline);
    if refused.is_empty() {
        return Ok(loaded);
    }
    let mut diagnostics = loaded.warnings;
    diagnostics.extend(refused);
    Err(LoadError {
        diagnostics,
        sources: loaded.sources,
    })
}

/// Loads the pipeline, or prints its diagnostics and gives the exit code (1).
fn load_or_report(
    file: &std::path::Path,
    vars: &VarArgs,
    color: &ColorArg,
) -> Result<Loaded, ExitCode> {
    load(file, vars).map_err(|err| {
        report_failure(&err, color.enabled());
        ExitCode::from(1)
    })
}

/// The `--param` values for `jobs`, or the problems printed and the exit code (2, a usage error).
fn job_inputs_or_report(
    loaded: &Loaded,
    jobs: &[String],
    given: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, ExitCode> {
    params::job_inputs(&loaded.pipeline, jobs, given).map_err(|e| {
        for line in e.lines() {
            eprintln!("error: {line}");
        }
        ExitCode::from(2)
    })
}

fn report_failure(err: &LoadError, color: bool) {
    eprint!("{}", err.render(color));
    let n = err.error_count();
    let w = err.diagnostics.len() - n;
    let warn = if w > 0 {
        format!(", {w} warning{}", if w == 1 { "" } else { "s" })
    } else {
        String::new()
    };
    eprintln!(
        "pipeline is invalid: {n} error{}{warn}",
        if n == 1 { "" } else { "s" }
    );
}

fn diagnostics_json(
    diags: &[pipewright_config::Diagnostic],
    sources: &pipewright_config::Sources,
) -> serde_json::Value {
    serde_json::Value::Array(
        diags
            .iter()
            .map(|d| {
                serde_json::json!({
                    "severity": if d.severity == Severity::Error { "error" } else { "warning" },
                    "message": d.message,
                    "position": d.position(sources),
                    "help": d.help,
                })
            })
            .collect(),
    )
}

/// Writes to stdout, ignoring a closed pipe (`pipewright … | head -1` ends quietly instead of
/// panicking as `println!` does).
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_fmt(args).and_then(|()| stdout.flush());
}

fn output_mode(output: Output) -> run::Mode {
    match output {
        Output::Json => run::Mode::Json,
        Output::Text if std::io::stdout().is_terminal() => run::Mode::Live,
        Output::Text => run::Mode::Plain,
    }
}

/// A pipeline's name: its file's stem.
pub(crate) fn pipeline_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into())
}

fn main() -> ExitCode {
    // First: in a process started to supervise a task, this is all that runs.
    pipewright_runners::enable_task_supervisor();
    let cli = Cli::parse();
    // A server or worker says what it does (reloads, failed checks, lost workers); a local
    // run stays quiet unless asked. `PIPEWRIGHT_LOG` overrides both.
    let default = match cli.command {
        Command::Server(_) | Command::Worker(_) => {
            "warn,pipewright_server=info,pipewright_queue=info"
        }
        _ => "error",
    };
    let filter = std::env::var("PIPEWRIGHT_LOG").unwrap_or_else(|_| default.to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Plan(c) => plan_cmd(c),
        Command::Run(c) if c.plan.is_some() => run_plan_cmd(c),
        Command::Run(c) => run_cmd(c),
        Command::Validate(c) => validate_cmd(c),
        Command::Graph(c) => graph_cmd(c),
        Command::Server(c) => server::server_cmd(c),
        Command::Worker(c) => worker::worker_cmd(c),
        Command::Blobs(c) => blobs::blobs_cmd(c),
        Command::Client(c) => client::client_cmd(c, &cli.conn),
    }
}

fn plan_cmd(c: PlanCmd) -> ExitCode {
    let PlanCmd {
        file,
        pipeline,
        job,
        vars,
        inputs,
        params,
        output,
        color,
        ..
    } = c;
    let Some(path) = file.or(pipeline) else {
        eprintln!("error: name the pipeline file: pipewright plan FILE --job NAME");
        return ExitCode::from(2);
    };
    let loaded = match load_or_report(&path, &vars, &color) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let job_inputs = match job_inputs_or_report(&loaded, std::slice::from_ref(&job), &params) {
        Ok(v) => v,
        Err(code) => return code,
    };
    ExitCode::from(plan::show(
        &loaded.pipeline,
        plan::PlanArgs {
            pipeline_name: pipeline_name(&path),
            job,
            inputs: inputs.into_iter().collect(),
            job_inputs,
            json: matches!(output, Output::Json),
            history: run::cache_home().map(|c| history::dir_for(&c, &path)),
        },
    ))
}

fn run_plan_cmd(c: RunCmd) -> ExitCode {
    let RunCmd {
        inputs,
        keep,
        parallel,
        kill_grace,
        allow_privileged,
        workspace_root,
        output,
        color,
        plan,
        ..
    } = c;
    let Some(plan_file) = plan else {
        eprintln!("error: name the plan: pipewright run --plan PLAN.json");
        return ExitCode::from(2);
    };
    let plan = match plan::read(&plan_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let args = run::RunArgs {
        pipeline_name: plan.pipeline.clone(),
        jobs: vec![],
        inputs: inputs.into_iter().collect(),
        job_inputs: plan.job_inputs.clone(),
        keep,
        parallel,
        grace: kill_grace,
        allow_privileged,
        workspace_root,
        mode: output_mode(output),
        color: color.enabled_for_stdout(),
        plan: None,
        history: None,
    };
    let definition = plan.definition.clone();
    ExitCode::from(run::run(
        &definition,
        run::RunArgs {
            plan: Some(plan),
            ..args
        },
    ))
}

fn run_cmd(c: RunCmd) -> ExitCode {
    let RunCmd {
        file,
        pipeline,
        job,
        vars,
        inputs,
        params,
        keep,
        no_history,
        parallel,
        kill_grace,
        allow_privileged,
        workspace_root,
        output,
        color,
        ..
    } = c;
    let Some(pipeline) = file.or(pipeline) else {
        eprintln!("error: name the pipeline file: pipewright run FILE");
        return ExitCode::from(2);
    };
    let loaded = match load_or_report(&pipeline, &vars, &color) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if loaded.pipeline.jobs.is_empty() {
        eprintln!(
            "error: no jobs in {}: there is nothing to run",
            pipeline.display()
        );
        return ExitCode::from(1);
    }
    let job_inputs = match job_inputs_or_report(&loaded, &job, &params) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if output != Output::Json
        && let Some(note) = params::server_only_notice(&loaded.pipeline, &job)
    {
        eprintln!("{note}");
    }
    if !loaded.warnings.is_empty() {
        eprint!(
            "{}",
            pipewright_config::render(&loaded.warnings, &loaded.sources, color.enabled())
        );
    }
    let mode = output_mode(output);
    let name = pipeline_name(&pipeline);
    let args = run::RunArgs {
        pipeline_name: name,
        jobs: job,
        inputs: inputs.into_iter().collect(),
        job_inputs,
        keep,
        parallel,
        grace: kill_grace,
        allow_privileged,
        workspace_root,
        mode,
        color: color.enabled_for_stdout(),
        plan: None,
        history: run::cache_home()
            .filter(|_| !no_history)
            .map(|c| history::dir_for(&c, &pipeline)),
    };
    ExitCode::from(run::run(&loaded.pipeline, args))
}

fn validate_cmd(c: ValidateCmd) -> ExitCode {
    let ValidateCmd {
        file,
        vars,
        output,
        color,
        ..
    } = c;
    match (load(&file, &vars), output) {
        (Ok(loaded), Output::Text) => {
            if !loaded.warnings.is_empty() {
                eprint!(
                    "{}",
                    pipewright_config::render(&loaded.warnings, &loaded.sources, color.enabled())
                );
            }
            let p = &loaded.pipeline;
            write_out(format_args!(
                "{} is valid: {} job{}, {} resource{}, {} variable{}\n",
                file.display(),
                p.jobs.len(),
                if p.jobs.len() == 1 { "" } else { "s" },
                p.resources.len(),
                if p.resources.len() == 1 { "" } else { "s" },
                p.variables.len(),
                if p.variables.len() == 1 { "" } else { "s" },
            ));
            ExitCode::SUCCESS
        }
        (Ok(loaded), Output::Json) => {
            let out = serde_json::json!({
                "valid": true,
                "pipeline": loaded.pipeline,
                "diagnostics": diagnostics_json(&loaded.warnings, &loaded.sources),
            });
            write_out(format_args!(
                "{}\n",
                serde_json::to_string_pretty(&out).unwrap_or_default()
            ));
            ExitCode::SUCCESS
        }
        (Err(err), Output::Text) => {
            report_failure(&err, color.enabled());
            ExitCode::from(1)
        }
        (Err(err), Output::Json) => {
            let out = serde_json::json!({
                "valid": false,
                "diagnostics": diagnostics_json(&err.diagnostics, &err.sources),
            });
            write_out(format_args!(
                "{}\n",
                serde_json::to_string_pretty(&out).unwrap_or_default()
            ));
            ExitCode::from(1)
        }
    }
}

fn graph_cmd(c: GraphCmd) -> ExitCode {
    let GraphCmd {
        file,
        format,
        vars,
        color,
        ..
    } = c;
    match load(&file, &vars) {
        Ok(loaded) => {
            let text = match format {
                GraphFormat::Mermaid => pipewright_config::to_mermaid(&loaded.pipeline),
                GraphFormat::Dot => pipewright_config::to_dot(&loaded.pipeline),
            };
            write_out(format_args!("{text}"));
            ExitCode::SUCCESS
        }
        Err(err) => {
            report_failure(&err, color.enabled());
            ExitCode::from(1)
        }
    }
}
