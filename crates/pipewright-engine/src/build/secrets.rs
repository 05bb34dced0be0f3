//! Secrets in a build: resolved before the first step, fetched once per (type, path), chained
//! paths in dependency order, and every value registered with the build's masker.

use super::{BoxFut, Build};
use crate::step_log::StepLog;
use pipewright_config::{TypeSource, secret_placeholder, secret_placeholders};
use pipewright_core::{
    Ctx, Error, ErrorKind, LogSink, Result, SecretMap, SecretRef, SecretSource, SecretValue,
    StepId, Stream, TaskSpec, Workspace,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// How deep secret paths may chain (a path naming a secret whose path names a secret…).
const MAX_CHAIN: usize = 10;

/// The step name of build-level secret warnings in the event stream.
/// The path of the step that carries warnings about the job's secrets (shown `job:secrets`).
const SECRETS_STEP: &str = "secrets";

/// What a build has fetched: values by variable, whole maps by (type, path), sources by type,
/// and the variables already warned about.
#[derive(Default)]
pub(crate) struct SecretCache {
    values: BTreeMap<String, String>,
    maps: BTreeMap<(String, String), SecretMap>,
    sources: BTreeMap<String, Arc<dyn SecretSource>>,
    warned: BTreeSet<String>,
}

impl SecretCache {
    /// How much is known: a change means the masker must be rebuilt.
    fn known(&self) -> (usize, usize) {
        (self.values.len(), self.sources.len())
    }
}

impl Build<'_> {
    /// Resolves every secret variable the job refers to (its steps, the resources and
    /// notifications they use) and registers all secret values with the masker, before the
    /// first step runs. Values supplied with `--var` for secret-backed variables are masked too.
    pub(crate) async fn preload_secrets(&self, ctx: &Ctx) -> Result<usize> {
        let mut texts = vec![serde_json::to_string(self.job).unwrap_or_default()];
        let mut refs = BTreeSet::new();
        collect_refs(
            &serde_json::to_value(self.job).unwrap_or_default(),
            &mut refs,
        );
        for r in &refs {
            if let Some(res) = self.pipeline.resources.get(r) {
                texts.push(serde_json::to_string(&res.params).unwrap_or_default());
            }
            if let Some(n) = self.pipeline.notifications.get(r) {
                texts.push(serde_json::to_string(n).unwrap_or_default());
            }
        }
        let mut names = BTreeSet::new();
        for t in &texts {
            names.extend(secret_placeholders(t).into_iter().map(str::to_owned));
        }
        // Secret-backed variables given a value on the command line or in a vars file.
        for v in self.pipeline.variables.values() {
            if v.secret.is_some()
                && let serde_json::Value::String(s) = &v.value
                && secret_placeholders(s).is_empty()
            {
                self.warn_if_short(&v.name, s).await;
            }
        }
        let mut result = Ok(names.len());
        for name in &names {
            if let Err(e) = self.secret_value(name, ctx, 0).await {
                result = Err(e);
                break;
            }
        }
        // One masker for everything fetched, before the first step writes a byte.
        self.register_masks().await;
        result
    }

    /// Rebuilds the masker from every value known so far and the credentials of every source.
    async fn register_masks(&self) {
        let cache = self.secrets.lock().await;
        let credentials: Vec<SecretValue> = cache
            .sources
            .values()
            .flat_map(|s| s.credentials())
            .collect();
        let mut values: Vec<&str> = cache.values.values().map(String::as_str).collect();
        for m in cache.maps.values() {
            values.extend(m.values().map(|v| v.expose()));
        }
        values.extend(credentials.iter().map(SecretValue::expose));
        // Secret-backed variables given a value on the command line or in a vars file.
        for v in self.pipeline.variables.values() {
            if v.secret.is_some()
                && let serde_json::Value::String(s) = &v.value
                && secret_placeholders(s).is_empty()
            {
                values.push(s);
            }
        }
        self.emitter
            .set_masker(pipewright_secrets::Masker::new(values));
    }

    /// Replaces `((secret:VAR))` placeholders with the secret's value, fetched once per build.
    pub(crate) async fn resolve_secrets(&self, value: &str, ctx: &Ctx) -> Result<String> {
        let known = self.known_values().await;
        let out = self.resolve_at(value, ctx, 0).await;
        self.register_if_new(known).await;
        out
    }

    /// [`Self::resolve_secrets`] outside a build, for the host; the workspace is removed.
    pub(crate) async fn resolve_only(self, text: &str) -> Result<String> {
        let mut ctx = Ctx::new();
        ctx.cancel = self.opts.cancel.child_token();
        ctx.build = self.meta.clone();
        let out = self.resolve_at(text, &ctx, 0).await;
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the secrets workspace");
        }
        out.map_err(|e| Error::new(e.kind(), self.emitter.mask(&e.to_string())))
    }

    async fn known_values(&self) -> (usize, usize) {
        self.secrets.lock().await.known()
    }

    /// A secret (or a source) the preload did not see was fetched: mask it from now on.
    async fn register_if_new(&self, known: (usize, usize)) {
        if self.known_values().await != known {
            self.register_masks().await;
        }
    }

    /// Warns, once per build and by name only, about a value too short to be masked.
    async fn warn_if_short(&self, var: &str, value: &str) {
        if !pipewright_secrets::too_short(value)
            || !self.secrets.lock().await.warned.insert(var.to_owned())
        {
            return;
        }
        tracing::warn!(build = %self.meta.build_id, variable = var, "secret too short to mask");
        // A step of its own (`job:secrets`), started and finished like any, so the event
        // stream keeps its order rules.
        let id = StepId::new([SECRETS_STEP], pipewright_core::StepRole::Hook);
        self.emitter
            .emit(pipewright_core::EventKind::StepStarted {
                step: id.clone(),
                attempt: 1,
                attempts: 1,
            })
            .await;
        let log = StepLog::new(self.emitter.clone(), id.clone(), 1);
        LogSink::write(
            &log,
            Stream::System,
            format!(
                "warning: the secret variable `{var}` is shorter than {} characters, so it is \
                 not masked in the output; use a longer value\n",
                pipewright_secrets::MIN_SECRET_CHARS
            )
            .as_bytes(),
        );
        log.flush().await;
        self.finished(
            &id,
            1,
            true,
            pipewright_core::StepStatus::Succeeded,
            None,
            std::time::Duration::ZERO,
            None,
        )
        .await;
    }

    fn resolve_at<'s>(
        &'s self,
        value: &'s str,
        ctx: &'s Ctx,
        depth: usize,
    ) -> BoxFut<'s, Result<String>> {
        Box::pin(async move {
            let names = secret_placeholders(value);
            if names.is_empty() {
                return Ok(value.to_owned());
            }
            let mut out = value.to_owned();
            for name in names {
                let v = self.secret_value(name, ctx, depth).await?;
                out = out.replace(&secret_placeholder(name), &v);
            }
            Ok(out)
        })
    }

    /// [`Self::resolve_secrets`] on every string inside a parameter value.
    pub(crate) async fn resolve_json_secrets(
        &self,
        value: &mut serde_json::Value,
        ctx: &Ctx,
    ) -> Result<()> {
        let known = self.known_values().await;
        let out = self.resolve_json_at(value, ctx, 0).await;
        self.register_if_new(known).await;
        out
    }

    async fn resolve_json_at(
        &self,
        value: &mut serde_json::Value,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<()> {
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::String(s) => *s = self.resolve_at(s, ctx, depth).await?,
                serde_json::Value::Array(a) => stack.extend(a.iter_mut()),
                serde_json::Value::Object(o) => stack.extend(o.values_mut()),
                _ => {}
            }
        }
        Ok(())
    }

    /// The value of secret variable `var`: its path and key first (they may name other
    /// secrets), then one fetch per (type, path).
    fn secret_value<'s>(
        &'s self,
        var: &'s str,
        ctx: &'s Ctx,
        depth: usize,
    ) -> BoxFut<'s, Result<String>> {
        Box::pin(async move {
            if let Some(v) = self.secrets.lock().await.values.get(var) {
                return Ok(v.clone());
            }
            if depth >= MAX_CHAIN {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "secret `{var}` is chained more than {MAX_CHAIN} deep (is there a cycle?)"
                    ),
                ));
            }
            let binding = self
                .pipeline
                .variables
                .get(var)
                .and_then(|v| v.secret.as_ref())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        format!("`{var}` is not a secret variable"),
                    )
                })?;
            let path = self.resolve_at(&binding.path, ctx, depth + 1).await?;
            let key = self.resolve_at(&binding.key, ctx, depth + 1).await?;
            let cache_key = (binding.secret_type.clone(), path.clone());
            let cached = self.secrets.lock().await.maps.get(&cache_key).cloned();
            let map = match cached {
                Some(m) if m.contains_key(&key) => m,
                // Not fetched yet, or fetched by a source that returns only the key it is asked
                // for (`env`, a `get` command printing one key): ask, and add to what is known.
                _ => {
                    let source = self
                        .secret_source(&binding.secret_type, ctx, depth + 1)
                        .await?;
                    let fetched = source
                        .get(
                            ctx,
                            &SecretRef {
                                path: path.clone(),
                                key: key.clone(),
                            },
                        )
                        .await
                        .map_err(|e| e.with_context("variable", var))?;
                    let mut cache = self.secrets.lock().await;
                    let m = cache.maps.entry(cache_key).or_default();
                    m.extend(fetched);
                    m.clone()
                }
            };
            let value = map
                .get(&key)
                .map(|v| v.expose().to_owned())
                .ok_or_else(|| {
                    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    keys.truncate(20);
                    Error::new(
                        ErrorKind::NotFound,
                        format!(
                            "secret `{}` of type `{}` has no key `{key}` (keys: {})",
                            path,
                            binding.secret_type,
                            keys.join(", ")
                        ),
                    )
                    .with_context("variable", var)
                })?;
            self.secrets
                .lock()
                .await
                .values
                .insert(var.to_owned(), value.clone());
            self.warn_if_short(var, &value).await;
            Ok(value)
        })
    }

    /// The source for secret type `name`: the pipeline's command-defined type, a source
    /// registered under that name, or a built-in made from the declaration's config.
    async fn secret_source(
        &self,
        name: &str,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<Arc<dyn SecretSource>> {
        if let Some(s) = self.secrets.lock().await.sources.get(name) {
            return Ok(s.clone());
        }
        let decl = self.pipeline.secret_types.get(name);
        let source: Arc<dyn SecretSource> = match decl {
            Some(t) if !t.commands.is_empty() => {
                let cmd = t.commands.get("get").ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        format!("secret type `{name}` has no `get` command"),
                    )
                })?;
                let mut config = t.config.clone();
                for v in config.0.values_mut() {
                    self.resolve_json_at(v, ctx, depth).await?;
                }
                Arc::new(CommandSecret {
                    name: name.to_owned(),
                    config,
                    cmd: cmd.clone(),
                    runner: self.runner(&cmd.runner)?,
                    workdir: self.workdir.clone(),
                })
            }
            _ => {
                if let Some(fixed) = self.engine.registry.fixed_secret_source(name) {
                    fixed
                } else {
                    let (builtin, mut config) = match decl {
                        Some(t) => match &t.source {
                            TypeSource::Builtin { name: b } => (b.clone(), t.config.clone()),
                            _ => (name.to_owned(), t.config.clone()),
                        },
                        None => (name.to_owned(), Default::default()),
                    };
                    for v in config.0.values_mut() {
                        self.resolve_json_at(v, ctx, depth).await?;
                    }
                    self.engine
                        .registry
                        .secret_from_factory(&builtin, &config)?
                }
            }
        };
        self.secrets
            .lock()
            .await
            .sources
            .insert(name.to_owned(), source.clone());
        Ok(source)
    }
}

/// The last non-blank line of a command's output, trimmed.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// Every `resource` and `notification` name mentioned in a job.
fn collect_refs(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                if let ("resource" | "notification", serde_json::Value::String(s)) = (k.as_str(), v)
                {
                    out.insert(s.clone());
                }
                collect_refs(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A `secret_type` with a `get` command: run through its runner with `param_*` (the type's
/// config, `path`, `key`) and the Vault / OpenBao token variables other processes do not get;
/// the last stdout line is a JSON object of values. Its output is never logged or quoted — it
/// is the secret.
struct CommandSecret {
    name: String,
    config: pipewright_core::Params,
    cmd: pipewright_config::RunnerCommand,
    runner: Arc<dyn pipewright_core::Runner>,
    workdir: std::path::PathBuf,
}

/// Keeps stdout (bounded); forwards nothing.
#[derive(Default)]
struct Capture(Mutex<Vec<u8>>);

impl LogSink for Capture {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        if stream == Stream::Stdout
            && let Ok(mut buf) = self.0.lock()
            && buf.len() < 1 << 20
        {
            buf.extend_from_slice(chunk);
        }
    }
}

/// The withheld token variables set in pipewright's environment, for a `get` command.
fn withheld_env() -> Vec<(String, String)> {
    pipewright_runners::WITHHELD_ENV
        .iter()
        .filter_map(|n| {
            std::env::var(n)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| ((*n).to_owned(), v))
        })
        .collect()
}

#[async_trait::async_trait]
impl SecretSource for CommandSecret {
    fn credentials(&self) -> Vec<SecretValue> {
        withheld_env().into_iter().map(|(_, v)| v.into()).collect()
    }

    async fn get(&self, ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap> {
        let capture = Arc::new(Capture::default());
        let mut run_ctx = ctx.clone();
        run_ctx.log = capture.clone();
        let mut env: std::collections::BTreeMap<String, String> =
            withheld_env().into_iter().collect();
        env.extend(self.config.to_env("param_"));
        env.insert("param_path".into(), secret.path.clone());
        env.insert("param_key".into(), secret.key.clone());
        let spec = TaskSpec {
            name: format!("secret:{}", self.name),
            params: self.cmd.params.clone(),
            args: self.cmd.args.clone(),
            env,
        };
        let ws = Workspace {
            dir: self.workdir.clone(),
            output_file: self.workdir.join(".pipewright").join(format!(
                "secret-{}.out",
                pipewright_core::env_key(&self.name)
            )),
        };
        let exit = self.runner.run(&run_ctx, &spec, &ws).await?;
        let out = capture.0.lock().map(|c| c.clone()).unwrap_or_default();
        if !exit.success() {
            // Its stderr may hold the secret (a shell's `set -x`, a tool echoing its input).
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "`get` of secret type `{}` failed: {exit} (its output is not shown: it may \
                     hold secrets; run the command by hand to see it)",
                    self.name
                ),
            ));
        }
        let out = String::from_utf8_lossy(&out);
        let line = last_line(&out);
        let bad = || {
            Error::new(
                ErrorKind::Failed,
                format!(
                    "`get` of secret type `{}` must print a JSON object of strings on its last \
                     stdout line (the line is not shown: it may hold secrets)",
                    self.name
                ),
            )
        };
        let serde_json::Value::Object(map) = serde_json::from_str(line).map_err(|_| bad())? else {
            return Err(bad());
        };
        Ok(map
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s.into())
            })
            .collect())
    }
}
