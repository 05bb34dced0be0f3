//! User-defined runners: a `runner_type` with a `run { path args }` template.

use crate::process::{DEFAULT_GRACE, ProcessSpec, run_process};
use crate::{program_path, task_env};
use async_trait::async_trait;
use pipewright_core::{Ctx, ExitStatus, Result, Runner, TaskSpec, Workspace};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where `"$env"` assumes the workspace is mounted inside a container (as the docker template
/// does with `-v $WORKDIR:/workdir`).
const CONTAINER_WORKDIR: &str = "/workdir";

/// A runner defined by a command template, e.g. the seed's docker runner:
///
/// ```hcl
/// runner_type "docker" {
///   run {
///     path = "docker"
///     args = ["run", "--rm", "-v", "$WORKDIR:/workdir", "-w", "/workdir", "$env", "$args", "$image", "/bin/sh", "-ec", "$cmd"]
///   }
/// }
/// ```
///
/// Each argument is expanded before the process starts: `$NAME` / `${NAME}` become `WORKDIR`,
/// the calling block's params, or the environment (task, build, then this process), in that
/// order; unknown names become empty. Two whole-argument tokens splice lists: `"$args"` inserts
/// the calling block's `args` verbatim (no expansion), and `"$env"` inserts `-e NAME` for every
/// variable of the task's environment. Values travel in the environment of the started process,
/// never on its command line, so a secret passed as `env` stays out of `ps`; `WORKDIR` and
/// `PIPEWRIGHT_OUTPUT` are remapped under `/workdir`. A template whose path expands to the
/// empty string does nothing and succeeds.
#[derive(Debug, Clone)]
pub struct TemplateRunner {
    name: String,
    path: String,
    args: Vec<String>,
    grace: Duration,
}

impl TemplateRunner {
    /// A template runner named `name` (used in messages).
    pub fn new(name: impl Into<String>, path: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            args,
            grace: DEFAULT_GRACE,
        }
    }

    /// Sets how long a task may take to exit after `SIGTERM` before it is killed.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The command line the template produces for `task` (program, then arguments), and the
    /// environment it runs with.
    pub fn command(
        &self,
        ctx: &Ctx,
        task: &TaskSpec,
        ws: &Workspace,
    ) -> (String, Vec<String>, BTreeMap<String, String>) {
        let env = task_env(ctx, task, ws);
        let lookup = |name: &str| -> String {
            env.get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
                .unwrap_or_default()
        };
        let program = expand(&self.path, &lookup);
        let mut args = Vec::with_capacity(self.args.len() + task.args.len());
        for a in &self.args {
            match a.as_str() {
                "$args" | "${args}" => args.extend(task.args.iter().cloned()),
                "$env" | "${env}" => {
                    for name in env.keys() {
                        args.push("-e".to_owned());
                        args.push(container_env(name, &env, ws));
                    }
                }
                _ => args.push(expand(a, &lookup)),
            }
        }
        (program, args, env)
    }
}

/// `-e` value for a variable: the name alone (docker then reads the value from its own
/// environment), except for the paths that must point inside the container.
fn container_env(name: &str, env: &BTreeMap<String, String>, ws: &Workspace) -> String {
    match name {
        "WORKDIR" => format!("WORKDIR={CONTAINER_WORKDIR}"),
        "PIPEWRIGHT_OUTPUT" | "PIPEWRIGHT_ENV" => {
            let file = if name == "PIPEWRIGHT_ENV" {
                ws.env_file()
            } else {
                ws.output_file.clone()
            };
            match file.strip_prefix(&ws.dir) {
                Ok(rel) => format!("{name}={CONTAINER_WORKDIR}/{}", rel.display()),
                Err(_) => env
                    .get(name)
                    .map(|v| format!("{name}={v}"))
                    .unwrap_or_else(|| name.to_owned()),
            }
        }
        _ => name.to_owned(),
    }
}

/// Expands `$NAME` and `${NAME}` through `lookup`; a `$` not followed by a name (`$1`, `$ `,
/// an unclosed `${`) stays as it is.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
            && is_name(&inner[..end])
        {
            out.push_str(&lookup(&inner[..end]));
            rest = &inner[end + 1..];
            continue;
        }
        let len = if after.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic()) {
            after
                .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                .unwrap_or(after.len())
        } else {
            0
        };
        if len == 0 {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(&after[..len]));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[async_trait]
impl Runner for TemplateRunner {
    async fn run(&self, ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let (program, args, env) = self.command(ctx, task, ws);
        if program.is_empty() {
            tracing::debug!(runner = %self.name, "template path expanded to nothing; no-op");
            return Ok(ExitStatus::SUCCESS);
        }
        let spec = ProcessSpec {
            program: program_path(&program, ws),
            args,
            env,
            cwd: ws.dir.clone(),
        };
        run_process(ctx, &spec, self.grace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipewright_core::Params;
    use std::path::PathBuf;

    fn lookup(name: &str) -> String {
        match name {
            "A" => "1".into(),
            "cmd" => "echo hi".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn expands_names_and_braces_and_keeps_lone_dollars() {
        assert_eq!(expand("x$A-${A}y", &lookup), "x1-1y");
        assert_eq!(expand("$ and $1 and $", &lookup), "$ and $1 and $");
        assert_eq!(expand("${cmd}", &lookup), "echo hi");
        assert_eq!(expand("$UNKNOWN.", &lookup), ".");
        assert_eq!(expand("${not closed", &lookup), "${not closed");
    }

    #[test]
    fn splices_args_verbatim_and_env_as_names_only() {
        let t = TemplateRunner::new(
            "docker",
            "docker",
            vec![
                "run".into(),
                "-v".into(),
                "$WORKDIR:/workdir".into(),
                "$env".into(),
                "$args".into(),
                "$image".into(),
                "$cmd".into(),
            ],
        );
        let mut params = Params::new();
        params.insert("image", "alpine");
        params.insert("cmd", "make test");
        let task = TaskSpec {
            name: "t".into(),
            params,
            args: vec!["--network=none".into(), "$param_x".into()],
            env: BTreeMap::from([("TOKEN".to_owned(), "s3cret".to_owned())]),
        };
        let ws = Workspace {
            dir: PathBuf::from("/w"),
            output_file: PathBuf::from("/w/.pipewright/out/t.1"),
        };
        let (program, args, env) = t.command(&Ctx::new(), &task, &ws);
        assert_eq!(program, "docker");
        assert_eq!(&args[..3], ["run", "-v", "/w:/workdir"]);
        assert!(args.contains(&"TOKEN".to_owned()), "{args:?}");
        assert!(
            args.contains(&"PIPEWRIGHT_OUTPUT=/workdir/.pipewright/out/t.1".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"PIPEWRIGHT_ENV=/workdir/.pipewright/out/t.1.env".to_owned()),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.contains("s3cret")),
            "secret on argv: {args:?}"
        );
        assert_eq!(env.get("TOKEN").map(String::as_str), Some("s3cret"));
        assert_eq!(
            &args[args.len() - 4..],
            ["--network=none", "$param_x", "alpine", "make test"]
        );
    }
}
