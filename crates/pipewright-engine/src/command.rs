//! Command-defined resource types: `check` / `pull` / `push` blocks run through any runner.
//!
//! Inputs arrive as environment variables (`param_*`, flattened `version_*`, `put_*`, `BUILD_*`,
//! `CACHE_DIR`); `check` prints a JSON array of versions on its last stdout line (earlier lines
//! are free-form log), `push` may do the same for the versions it produced.

use async_trait::async_trait;
use pipewright_config::{Resource as ResourceDecl, TypeDecl};
use pipewright_core::{
    Ctx, Error, ErrorKind, LogSink, Metadata, Params, Resource, ResourceCapabilities, Result,
    Runner, Stream, TaskSpec, Version, Workspace,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The longest line kept as a candidate for the result; longer output lines are log only.
const MAX_RESULT_LINE: usize = 1024 * 1024;

pub(crate) struct CommandResource {
    ty: TypeDecl,
    decl: ResourceDecl,
    runners: BTreeMap<String, Arc<dyn Runner>>,
    cache: Option<PathBuf>,
}

impl CommandResource {
    pub(crate) fn new(
        ty: TypeDecl,
        decl: ResourceDecl,
        runners: BTreeMap<String, Arc<dyn Runner>>,
        cache: Option<PathBuf>,
    ) -> Self {
        Self {
            ty,
            decl,
            runners,
            cache,
        }
    }

    /// Runs the type's `op` command in `dir` and returns the last non-empty stdout line.
    async fn invoke(
        &self,
        ctx: &Ctx,
        op: &str,
        dir: &Path,
        extra: BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let cmd =
            self.ty.commands.get(op).ok_or_else(|| {
                Error::unsupported(op, &format!("resource type `{}`", self.ty.name))
            })?;
        let runner = self.runners.get(&cmd.runner).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!("runner `{}` is not available", cmd.runner),
            )
        })?;
        let mut env = self.decl.params.to_env("param_");
        env.extend(extra);
        if let Some(cache) = &self.cache {
            std::fs::create_dir_all(cache)
                .map_err(|e| Error::from(e).with_context("cache", cache.display().to_string()))?;
            env.insert("CACHE_DIR".into(), cache.display().to_string());
        }
        let tail = Arc::new(LastLine::new(ctx.log.clone()));
        let mut run_ctx = ctx.clone();
        run_ctx.log = tail.clone();
        let spec = TaskSpec {
            name: format!("{}:{op}", self.decl.name),
            params: cmd.params.clone(),
            args: cmd.args.clone(),
            env,
        };
        let ws = Workspace {
            dir: dir.to_path_buf(),
            output_file: dir.join(".pipewright").join(format!(
                "{}.{op}.out",
                pipewright_core::env_key(&self.decl.name)
            )),
        };
        let exit = runner.run(&run_ctx, &spec, &ws).await?;
        if !exit.success() {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("`{op}` of resource `{}` failed: {exit}", self.decl.name),
            ));
        }
        Ok(tail.last())
    }
}

/// Parses a result line: a JSON array of objects whose values become strings.
pub(crate) fn parse_versions(line: &str) -> std::result::Result<Vec<Version>, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let serde_json::Value::Array(items) = value else {
        return Err("not a JSON array".into());
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Object(map) => {
                Ok(Version::from_pairs(map.into_iter().map(|(k, v)| {
                    let s = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, s)
                })))
            }
            other => Err(format!("an element is not an object: {other}")),
        })
        .collect()
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[async_trait]
impl Resource for CommandResource {
    fn capabilities(&self) -> ResourceCapabilities {
        let mut c = ResourceCapabilities::ALL;
        c.check = self.ty.commands.contains_key("check");
        c.get = self.ty.commands.contains_key("pull");
        c.put = self.ty.commands.contains_key("push");
        c
    }

    async fn check(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let extra = last.map(|v| v.to_env("version_")).unwrap_or_default();
        // Inside a build the check runs in its workspace; a scheduler's check gets a scratch dir.
        let (dir, scratch) = match ctx.env.get("WORKDIR") {
            Some(w) => (PathBuf::from(w), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "pipewright-check-{}-{}",
                    std::process::id(),
                    pipewright_core::env_key(&self.decl.id)
                ));
                std::fs::create_dir_all(&d)?;
                (d.clone(), Some(d))
            }
        };
        let line = self.invoke(ctx, "check", &dir, extra).await;
        if let Some(d) = scratch {
            let _ = std::fs::remove_dir_all(d);
        }
        let line = line?.ok_or_else(|| {
            Error::new(
                ErrorKind::Failed,
                format!(
                    "`check` of resource `{}` printed nothing; its last stdout line must be a JSON array of versions",
                    self.decl.name
                ),
            )
        })?;
        parse_versions(&line).map_err(|why| {
            Error::new(
                ErrorKind::Failed,
                format!(
                    "the last stdout line of `check` of resource `{}` must be a JSON array of versions, like [{{\"ref\":\"abc\"}}]; it is {why}: `{}`",
                    self.decl.name,
                    shorten(&line)
                ),
            )
        })
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let dir = dest.parent().unwrap_or(dest);
        self.invoke(ctx, "pull", dir, version.to_env("version_"))
            .await?;
        Ok(Metadata::new())
    }

    async fn put(&self, ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let line = self.invoke(ctx, "push", src, params.to_env("put_")).await?;
        // A push may report what it produced; anything else on the last line is just log.
        Ok(line
            .and_then(|l| parse_versions(&l).ok())
            .unwrap_or_default())
    }
}

/// Forwards output and remembers the last non-empty stdout line.
struct LastLine {
    inner: Arc<dyn LogSink>,
    state: Mutex<(String, Option<String>)>,
}

impl LastLine {
    fn new(inner: Arc<dyn LogSink>) -> Self {
        Self {
            inner,
            state: Mutex::new((String::new(), None)),
        }
    }

    fn last(&self) -> Option<String> {
        let st = self.state.lock().ok()?;
        let (partial, last) = &*st;
        if partial.trim().is_empty() {
            last.clone()
        } else {
            Some(partial.trim().to_owned())
        }
    }
}

impl LogSink for LastLine {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        self.inner.write(stream, chunk);
        if stream != Stream::Stdout {
            return;
        }
        if let Ok(mut st) = self.state.lock() {
            let (partial, last) = &mut *st;
            partial.push_str(&String::from_utf8_lossy(chunk));
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let line = line.trim();
                if !line.is_empty() {
                    *last = Some(line.to_owned());
                }
            }
            if partial.len() > MAX_RESULT_LINE {
                partial.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_or_explain() {
        let v = parse_versions(r#"[{"ref":"abc","n":3},{"ref":"def"}]"#).unwrap();
        assert_eq!(v[0].get("n"), Some("3"));
        assert_eq!(v.len(), 2);
        assert_eq!(parse_versions("{}").unwrap_err(), "not a JSON array");
        assert!(parse_versions("[1]").unwrap_err().contains("not an object"));
        assert!(parse_versions("done").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn the_last_non_empty_stdout_line_wins() {
        let t = LastLine::new(Arc::new(pipewright_core::NullSink));
        t.write(Stream::Stdout, b"log line\n[{\"r");
        t.write(Stream::Stderr, b"noise\n");
        t.write(Stream::Stdout, b"ef\":\"1\"}]\n\n");
        assert_eq!(t.last().as_deref(), Some("[{\"ref\":\"1\"}]"));
    }
}
