//! Choosing and fetching a build's inputs: the planner (the one place versions are chosen)
//! and the `get` step, which fetches exactly what the plan says.

use super::{Build, copy_dir};
use crate::plan::PlannedInput;
use pipewright_config::{StepKind, VersionPolicy};
use pipewright_core::{Ctx, Error, ErrorKind, LogSink, Stream, Version};
use pipewright_versions::{Choice, InputFacts, VersionId, choose_input};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Log chunks, in order, with their stream.
pub(super) type Chunks = Vec<(Stream, Vec<u8>)>;

/// Output of a check made while planning, kept for the `get` step's log (at most 1 MiB).
#[derive(Default)]
pub(super) struct Captured(Mutex<Chunks>);

impl LogSink for Captured {
    fn write(&self, stream: Stream, chunk: &[u8]) {
        if let Ok(mut c) = self.0.lock() {
            let held: usize = c.iter().map(|(_, b)| b.len()).sum();
            if held < 1 << 20 {
                c.push((stream, chunk.to_vec()));
            }
        }
    }
}

impl Build<'_> {
    /// Chooses the inputs without running anything else, then removes the workspace: what
    /// `Engine::plan` shows. Secrets are resolved (a resource's credentials may need them)
    /// but stay in this process.
    pub(crate) async fn choose_inputs_only(self) -> Result<BTreeMap<String, PlannedInput>, Error> {
        let mut ctx = Ctx::new();
        ctx.cancel = self.opts.cancel.child_token();
        ctx.build = self.meta.clone();
        let chosen = match self.preload_secrets(&ctx).await {
            Ok(_) => self.plan_inputs(&ctx).await,
            Err(e) => Err(e),
        };
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the planning workspace");
        }
        chosen
    }

    /// Checks `decl` once (secrets resolved first) and returns the check's log text; the
    /// planning workspace is removed.
    pub(crate) async fn check_only(
        self,
        decl: &pipewright_config::Resource,
    ) -> Result<String, Error> {
        let mut ctx = Ctx::new();
        ctx.cancel = self.opts.cancel.child_token();
        ctx.build = self.meta.clone();
        let get = self.job.steps.iter().find_map(|s| match &s.kind {
            pipewright_config::StepKind::Get(g) => Some(g),
            _ => None,
        });
        let checked = match (get, self.preload_secrets(&ctx).await) {
            (Some(g), Ok(_)) => self.discover(g, decl, &ctx).await,
            (None, _) => Err(Error::new(ErrorKind::Other, "a check job has no get")),
            (_, Err(e)) => Err(e),
        };
        if let Err(e) = std::fs::remove_dir_all(&self.workdir) {
            tracing::warn!(error = %e, dir = %self.workdir.display(), "could not remove the check workspace");
        }
        let log = self
            .check_logs
            .lock()
            .ok()
            .and_then(|mut l| l.remove(decl.id.as_str()))
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(_, chunk)| chunk)
            .collect::<Vec<u8>>();
        let log = self.emitter.mask(&String::from_utf8_lossy(&log));
        checked
            .map(|()| log)
            .map_err(|e| Error::new(e.kind(), self.emitter.mask(&e.to_string())))
    }

    /// Chooses the inputs unless a plan was given.
    pub(super) async fn ensure_plan(&self, ctx: &Ctx) -> Result<(), Error> {
        if self.plan.lock().map(|p| p.is_some()).unwrap_or(false) {
            return Ok(());
        }
        let chosen = self.plan_inputs(ctx).await?;
        if let Ok(mut p) = self.plan.lock() {
            *p = Some(chosen);
        }
        Ok(())
    }

    /// The input of every `get` of the job: a local directory when one replaces the resource,
    /// otherwise the version the versions crate's rule picks ([`resolve_input`]: pinned in
    /// the pipeline → `passed` → pinned on the resource → newest), checking the resource first
    /// where the rule needs its newest versions. A check's output is kept for the `get`
    /// step's log; an input that cannot be chosen is marked `unresolved`, so its `get` fails
    /// with the reason.
    pub(crate) async fn plan_inputs(
        &self,
        ctx: &Ctx,
    ) -> Result<BTreeMap<String, PlannedInput>, Error> {
        let mut out = BTreeMap::new();
        for step in self.job.all_steps() {
            let StepKind::Get(g) = &step.kind else {
                continue;
            };
            let decl = self.pipeline.resources.get(&g.resource).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("no resource `{}`", g.resource),
                )
            })?;
            let rid = decl.id.as_str();
            if out.contains_key(rid) {
                continue;
            }
            let mut input = PlannedInput {
                resource: rid.to_owned(),
                version: None,
                local_dir: None,
                why: String::new(),
                unresolved: None,
            };
            let local = self
                .opts
                .inputs
                .get(&decl.name)
                .or_else(|| self.opts.inputs.get(&decl.id));
            if let Some(dir) = local {
                input.why = format!("the local directory {} (--input)", dir.display());
                input.local_dir = Some(dir.clone());
                out.insert(rid.to_owned(), input);
                continue;
            }
            let discovered =
                if self.opts.no_checks && !matches!(g.version, VersionPolicy::Pinned(_)) {
                    Ok(())
                } else {
                    self.discover(g, decl, ctx).await
                };
            if let Err(e) = discovered {
                if e.kind() == ErrorKind::Cancelled {
                    return Err(e);
                }
                input.unresolved = Some(e.to_string());
                out.insert(rid.to_owned(), input);
                continue;
            }
            let facts = InputFacts::gather(self.store.as_ref(), g).await?;
            match choose_input(g, &facts, None) {
                Ok((id, choice)) => {
                    input.version = self.store.version(rid, id).await?;
                    input.why = why(g, choice);
                }
                Err(e) => input.unresolved = Some(e.reason),
            }
            out.insert(rid.to_owned(), input);
        }
        Ok(out)
    }

    /// Brings the versions a `get` may choose from into the store: its pinned version, or
    /// what a check finds (not needed for `passed`, which chooses among recorded versions).
    async fn discover(
        &self,
        g: &pipewright_config::GetStep,
        decl: &pipewright_config::Resource,
        ctx: &Ctx,
    ) -> Result<(), Error> {
        let rid = decl.id.as_str();
        match &g.version {
            VersionPolicy::Pinned(v) => {
                self.store
                    .save_versions(rid, std::slice::from_ref(v))
                    .await?;
            }
            _ if !g.passed.is_empty() => {}
            _ => {
                let log = Arc::new(Captured::default());
                let ctx = ctx.clone().with_log(log.clone());
                let resource = self.resource(decl, &ctx).await;
                let checked = match resource {
                    Ok(resource) => {
                        let last = self.store.latest_version(rid).await?.map(|(_, v)| v);
                        resource.check(&ctx, last.as_ref()).await
                    }
                    Err(e) => Err(e),
                };
                if let (Ok(mut logs), Ok(chunks)) = (self.check_logs.lock(), log.0.lock()) {
                    logs.insert(rid.to_owned(), chunks.clone());
                }
                self.store.save_versions(rid, &checked?).await?;
            }
        }
        Ok(())
    }

    /// The planned input of resource `rid`.
    fn planned(&self, rid: &str) -> Result<PlannedInput, Error> {
        self.plan
            .lock()
            .ok()
            .and_then(|p| p.as_ref().and_then(|p| p.get(rid).cloned()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("the build's plan has no input for `{rid}`"),
                )
            })
    }

    /// A `get`: fetches the planned input into `$WORKDIR/<name>` and returns the version and
    /// its id in this engine's store.
    pub(super) async fn fetch_input(
        &self,
        decl: &pipewright_config::Resource,
        ctx: &Ctx,
    ) -> Result<(Version, Option<VersionId>), Error> {
        let dest = self.workdir.join(checkout_dir(decl));
        let rid = decl.id.as_str();
        let input = self.planned(rid)?;
        let replay = self
            .check_logs
            .lock()
            .ok()
            .and_then(|mut l| l.remove(rid))
            .unwrap_or_default();
        for (stream, chunk) in replay {
            ctx.log.write(stream, &chunk);
        }
        if let Some(why) = &input.unresolved {
            return Err(Error::new(ErrorKind::NotFound, why.clone()));
        }
        if let Some(dir) = &input.local_dir {
            ctx.log_system(&format!(
                "using the local directory {} for `{}`",
                dir.display(),
                decl.name
            ));
            let (src, dst) = (dir.clone(), dest.clone());
            tokio::task::spawn_blocking(move || copy_dir(&src, &dst))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Other, format!("copying the input failed: {e}"))
                })?
                .map_err(|e| Error::from(e).with_context("input", dir.display().to_string()))?;
            let v = Version::from_pairs([("path", dir.display().to_string())]);
            let ids = self
                .store
                .save_versions(rid, std::slice::from_ref(&v))
                .await;
            return Ok((v, ids?.first().copied()));
        }
        let version = input.version.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the plan names no version of `{}`", decl.name),
            )
        })?;
        ctx.log_system(&format!("using {version}: {}", input.why));
        // A plan made elsewhere carries versions, not this store's ids.
        let ids = self
            .store
            .save_versions(rid, std::slice::from_ref(&version))
            .await?;
        let resource = self.resource(decl, ctx).await?;
        std::fs::create_dir_all(&dest)?;
        let meta = resource.get(ctx, &version, &dest).await?;
        ctx.log_system(&format!("fetched `{}` at {version}", decl.name));
        for f in &meta.0 {
            ctx.log_system(&format!("  {}: {}", f.name, f.value));
        }
        Ok((version, ids.first().copied()))
    }
}

/// Why the planner chose an input, in the rule's words.
fn why(get: &pipewright_config::GetStep, choice: Choice) -> String {
    match choice {
        Choice::PinnedInPipeline => "pinned in the pipeline (`version = {…}`)".to_owned(),
        Choice::Passed => format!("the newest version that passed {}", get.passed.join(", ")),
        Choice::PinnedOnResource => "pinned on the resource".to_owned(),
        Choice::Trigger => "the version that triggered the build".to_owned(),
        Choice::Newest => "the newest version".to_owned(),
    }
}

/// Where a `get` puts its resource in the workspace: the resource's name, or for `git` the
/// `name` param when set (the PikoCI seed writes `name = "app"` and its task does `cd app`).
/// A `name` that is not a plain directory name is ignored with the resource's name used.
pub(crate) fn checkout_dir(decl: &pipewright_config::Resource) -> String {
    let plain =
        |n: &str| !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.starts_with('.');
    match decl.params.get_str("name") {
        Some(n) if decl.type_name == "git" && plain(&n) => n,
        _ => decl.name.clone(),
    }
}
