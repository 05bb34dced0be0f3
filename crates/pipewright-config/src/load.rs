//! The loader: HCL text to a typed [`Pipeline`], collecting every problem on the way.

use crate::catalog::{Catalog, TypeKind};
use crate::diag::{Diagnostic, FileId, LoadError, Loc, Severity, Sources, suggest};
use crate::files::{MAX_DEFINITION_BYTES, MAX_PIPELINE_BYTES, read_capped};
use crate::funcs;
use crate::model::*;
use hcl::eval::{Context, Evaluate};
use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use indexmap::IndexMap;
use pipewright_core::Params;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod resources;
mod types;
mod values;
mod vars;

/// Fetches `https://` type definitions. The loader caches nothing itself: an implementation
/// decides how to cache and verify transport. The loader checks the returned text against the
/// pin; `sha256` is passed so an implementation can serve a verified copy without the network.
pub trait TypeFetcher: Send + Sync {
    /// Returns the HCL text at `url` (pinned to `sha256`, lower-case hex, when given), or a
    /// message saying why it could not.
    fn fetch(&self, url: &str, sha256: Option<&str>) -> Result<String, String>;
}

/// How to load a pipeline.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// `--var name=value` pairs, in command-line order (later wins).
    pub vars: Vec<(String, String)>,
    /// Vars files (`.json`, otherwise HCL), in order (later wins; `--var` beats all).
    pub vars_files: Vec<PathBuf>,
    /// Built-in plug-in names.
    pub catalog: Catalog,
    /// Fetches `https://` type definitions; without one such sources are an error.
    pub fetcher: Option<Arc<dyn TypeFetcher>>,
    /// Let a relative `source` path leave the pipeline's directory (`../shared/types.hcl`).
    /// Off by default, so a pipeline cannot read arbitrary files of the host that loads it.
    pub allow_sources_outside: bool,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field(
                "vars",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("vars_files", &self.vars_files)
            .field("catalog", &self.catalog)
            .field("fetcher", &self.fetcher.is_some())
            .field("allow_sources_outside", &self.allow_sources_outside)
            .finish()
    }
}

/// A loaded pipeline with the warnings found and the sources they point into.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Problems that do not stop the pipeline from being used.
    pub warnings: Vec<Diagnostic>,
    /// Every file read.
    pub sources: Sources,
}

/// Loads a pipeline file.
///
/// The file must be a regular file of at most [`MAX_PIPELINE_BYTES`].
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    match read_capped(path, MAX_PIPELINE_BYTES) {
        Ok(text) => load_str_at(&path.display().to_string(), &text, path.parent(), opts),
        Err(e) => Err(LoadError {
            diagnostics: vec![
                Diagnostic::error(format!("cannot read `{}`: {e}", path.display()), None)
                    .help("check the path of the pipeline file"),
            ],
            sources: Sources::new(),
        }),
    }
}

/// Loads a pipeline from text; `name` is used in diagnostics and relative `source` paths
/// resolve against the current directory.
pub fn load_str(name: &str, text: &str, opts: &LoadOptions) -> Result<Loaded, LoadError> {
    load_str_at(name, text, None, opts)
}

fn load_str_at(
    name: &str,
    text: &str,
    dir: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Loaded, LoadError> {
    let mut l = Loader::new(opts, dir);
    let file = l.sources.add(name, text);
    let pipeline = l.load_pipeline(file);
    let result = l.finish(pipeline);
    match &result {
        Ok(loaded) => tracing::debug!(
            file = name,
            jobs = loaded.pipeline.jobs.len(),
            resources = loaded.pipeline.resources.len(),
            warnings = loaded.warnings.len(),
            "pipeline loaded"
        ),
        Err(err) => tracing::debug!(file = name, errors = err.error_count(), "pipeline rejected"),
    }
    result
}

const TOP_LEVEL: [&str; 9] = [
    "variable",
    "resource_type",
    "resource",
    "runner_type",
    "service_type",
    "secret_type",
    "notification_type",
    "notification",
    "job",
];

/// Each param's name and where its value was written.
pub(crate) type ParamLocs = Vec<(String, Loc)>;

/// A reference found while parsing, checked once every declaration is known.
#[derive(Debug, Clone)]
pub(crate) enum Ref {
    Type(TypeKind, String),
    Resource {
        id: String,
        op: &'static str,
    },
    Runner {
        name: String,
        /// The params given, with where each was written.
        params: Vec<(String, Loc)>,
    },
    /// Values starting with `-` in the params of `resource` (or its puts, or a pinned
    /// version of it): an error when its type is a built-in that passes them to a command.
    Arguments {
        resource: String,
        /// What the values belong to, for the message (`resource \`git.app\``).
        what: String,
        values: Vec<(String, Loc)>,
    },
    /// The params given to `resource` (or to a put of it), checked against what its type
    /// reads once every type is known.
    ResourceParams {
        resource: String,
        put: bool,
        params: Vec<(String, Loc)>,
    },
    /// A `service` step: its label, the params it sets and where `image` was written, if it was.
    Service {
        name: String,
        params: Vec<(String, Loc)>,
        image: Option<Loc>,
    },
    Notification(String),
    /// The params of a notification (or the overrides of a `notify` step) of type
    /// `type_name`: checked against a built-in type's params.
    NotificationParams {
        type_name: String,
        /// What they belong to, for the message (`notification \`slack.team\``).
        what: String,
        params: ParamLocs,
        /// Whether the type's required params must be among them (not for overrides).
        complete: bool,
    },
    Job {
        name: String,
        what: &'static str,
    },
    Passed {
        job: String,
        upstream: String,
        resource: String,
    },
}

pub(crate) struct Loader<'o> {
    pub(crate) opts: &'o LoadOptions,
    pub(crate) sources: Sources,
    pub(crate) diags: Vec<Diagnostic>,
    /// Functions and `var`; shared, because every block evaluates against it and a deep copy
    /// of the function table per job showed up in the load benchmark.
    pub(crate) base: Arc<Context<'static>>,
    pub(crate) dir: PathBuf,
    pub(crate) refs: Vec<(Ref, Loc)>,
    pub(crate) declared_vars: Vec<String>,
    /// `https://` type definitions fetched up front, all at once, by (URL, pin).
    prefetched: std::collections::HashMap<(String, Option<String>), Result<String, String>>,
}

/// Tracks which attributes and blocks of a body were read, so the rest can be reported as
/// unknown with a "did you mean" drawn from the names that were asked for.
pub(crate) struct Reader<'b> {
    pub(crate) body: &'b Body,
    used: Vec<bool>,
    attrs: Vec<&'static str>,
    blocks: Vec<&'static str>,
    pub(crate) what: String,
    pub(crate) file: FileId,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(body: &'b Body, what: impl Into<String>, file: FileId) -> Self {
        Self {
            body,
            used: vec![false; body.len()],
            attrs: Vec::new(),
            blocks: Vec::new(),
            what: what.into(),
            file,
        }
    }

    pub(crate) fn attr(&mut self, name: &'static str) -> Option<&'b Attribute> {
        self.attrs.push(name);
        let mut found = None;
        for (i, s) in self.body.iter().enumerate() {
            if let Structure::Attribute(a) = s
                && a.key.as_str() == name
            {
                self.used[i] = true;
                found.get_or_insert(a);
            }
        }
        found
    }

    pub(crate) fn blocks(&mut self, name: &'static str) -> Vec<&'b Block> {
        self.blocks_of(&[name])
    }

    /// Blocks with any of `names`, in declaration order.
    pub(crate) fn blocks_of(&mut self, names: &[&'static str]) -> Vec<&'b Block> {
        self.blocks.extend_from_slice(names);
        let mut out = Vec::new();
        for (i, s) in self.body.iter().enumerate() {
            if let Structure::Block(b) = s
                && names.contains(&b.ident.as_str())
            {
                self.used[i] = true;
                out.push(b);
            }
        }
        out
    }

    /// Every attribute not read so far (for blocks whose other attributes are params).
    pub(crate) fn rest_attrs(&mut self) -> Vec<&'b Attribute> {
        let mut out = Vec::new();
        for (i, s) in self.body.iter().enumerate() {
            if let Structure::Attribute(a) = s
                && !self.used[i]
            {
                self.used[i] = true;
                out.push(a);
            }
        }
        out
    }
}

pub(crate) fn loc_of(file: FileId, span: Option<std::ops::Range<usize>>) -> Loc {
    Loc::new(file, span.unwrap_or(0..0))
}

/// The span of a block's header (keyword and labels), which reads better under a caret than
/// the whole block.
pub(crate) fn header_loc(file: FileId, b: &Block) -> Loc {
    let start = b.ident.span().map(|s| s.start).unwrap_or(0);
    let end = b
        .labels
        .last()
        .and_then(|l| l.span())
        .or_else(|| b.ident.span())
        .map(|s| s.end)
        .unwrap_or(start);
    Loc::new(file, start..end)
}

/// Names that people reach for, mapped to the keyword that exists.
pub(crate) fn alias_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "runner" => "runner_type",
        "secret" => "secret_type",
        "service" => "service_type",
        "steps" | "plan" | "stage" | "step" => "job",
        "var" | "vars" | "variables" => "variable",
        "resources" => "resource",
        "jobs" => "job",
        "on_error" | "on_abort" => "on_failure` or `on_cancel",
        "finally" | "always" => "ensure",
        "parallel" | "in_parallels" => "in_parallel",
        "elif" | "elseif" | "else_if_" => "else_if",
        "retries" | "retry" => "attempts",
        _ => return None,
    })
}

/// Names that exist in the seed system or elsewhere but are not built here, with what to do.
pub(crate) fn unsupported_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "on_trigger" => {
            "`on_trigger` hooks are not supported yet; use a `notify` step at the start of the job"
        }
        "module" | "include" => "modules and includes are not supported yet",
        _ => return None,
    })
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions, dir: Option<&Path>) -> Self {
        let mut base = Context::new();
        funcs::declare_all(&mut base);
        Self {
            opts,
            sources: Sources::new(),
            diags: Vec::new(),
            base: Arc::new(base),
            dir: dir.map(Path::to_path_buf).unwrap_or_default(),
            refs: Vec::new(),
            declared_vars: Vec::new(),
            prefetched: std::collections::HashMap::new(),
        }
    }

    pub(crate) fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Reports everything a [`Reader`] did not consume.
    pub(crate) fn finish_reader(&mut self, r: Reader<'_>) {
        let mut seen: Vec<(&str, Loc)> = Vec::new();
        for (i, s) in r.body.iter().enumerate() {
            match s {
                Structure::Attribute(a) => {
                    let name = a.key.as_str();
                    let loc = loc_of(r.file, a.key.span());
                    if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                        let d = Diagnostic::error(
                            format!("attribute `{name}` is set twice in {}", r.what),
                            Some(loc),
                        )
                        .label("set again here")
                        .related(*first, "first set here")
                        .help("remove one of them");
                        self.error(d);
                        continue;
                    }
                    seen.push((name, loc));
                    if r.used[i] {
                        continue;
                    }
                    let help = self.unknown_help(name, &r.attrs, &r.blocks, true);
                    let d = Diagnostic::error(
                        format!("unknown attribute `{name}` in {}", r.what),
                        Some(loc),
                    )
                    .label("not allowed here")
                    .help(help);
                    self.error(d);
                }
                Structure::Block(b) => {
                    if r.used[i] {
                        continue;
                    }
                    let name = b.ident.as_str();
                    let help = self.unknown_help(name, &r.attrs, &r.blocks, false);
                    let d = Diagnostic::error(
                        format!("unknown block `{name}` in {}", r.what),
                        Some(header_loc(r.file, b)),
                    )
                    .label("not allowed here")
                    .help(help);
                    self.error(d);
                }
            }
        }
    }

    fn unknown_help(&self, name: &str, attrs: &[&str], blocks: &[&str], is_attr: bool) -> String {
        if let Some(h) = unsupported_hint(name) {
            return h.to_owned();
        }
        let (same, other) = if is_attr {
            (attrs, blocks)
        } else {
            (blocks, attrs)
        };
        fn uniq<'a>(v: &[&'a str]) -> Vec<&'a str> {
            let mut v: Vec<&str> = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        }
        let (same, other) = (uniq(same), uniq(other));
        if let Some(s) = suggest(name, same.iter().copied()) {
            return format!("did you mean `{s}`?");
        }
        if let Some(a) = alias_hint(name)
            && (same.contains(&a) || other.contains(&a) || a.contains('`'))
        {
            return format!("did you mean `{a}`?");
        }
        if other.contains(&name) {
            return if is_attr {
                format!("`{name}` is a block here: write `{name} {{ … }}`")
            } else {
                format!("`{name}` is an attribute here: write `{name} = …`")
            };
        }
        if let Some(s) = suggest(name, other.iter().copied()) {
            return format!("did you mean `{s}`?");
        }
        let kind = if is_attr { "attributes" } else { "blocks" };
        if same.is_empty() {
            format!("no {kind} are allowed here")
        } else {
            format!(
                "allowed {kind}: {}",
                same.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    /// Reports a second declaration of the same name, pointing at both.
    pub(crate) fn declared_twice(&mut self, what: String, loc: Loc, first: Loc, help: &str) {
        self.error(
            Diagnostic::error(format!("{what} is declared twice"), Some(loc))
                .label("declared again")
                .related(first, "first declared here")
                .help(help),
        );
    }

    /// Checks a block's label count; returns its labels when right.
    pub(crate) fn labels<'b>(
        &mut self,
        file: FileId,
        b: &'b Block,
        names: &[&str],
        example: &str,
    ) -> Option<Vec<&'b str>> {
        if b.labels.len() == names.len() {
            let labels: Vec<&str> = b.labels.iter().map(|l| l.as_str()).collect();
            if let Some((i, _)) = labels.iter().enumerate().find(|(_, l)| l.is_empty()) {
                let d = Diagnostic::error(
                    format!(
                        "the {} of a `{}` block is empty",
                        names[i],
                        b.ident.as_str()
                    ),
                    Some(loc_of(file, b.labels[i].span())),
                )
                .label("empty label")
                .help(format!("write it like `{example}`"));
                self.error(d);
                return None;
            }
            return Some(labels);
        }
        let want = match names.len() {
            0 => "no labels".to_owned(),
            1 => format!("1 label ({})", names[0]),
            n => format!("{n} labels ({})", names.join(", ")),
        };
        let d = Diagnostic::error(
            format!(
                "a `{}` block takes {want}, found {}",
                b.ident.as_str(),
                b.labels.len()
            ),
            Some(header_loc(file, b)),
        )
        .label("wrong number of labels")
        .help(format!("write it like `{example}`"));
        self.error(d);
        None
    }

    /// Reads a runner command block: label = runner, `args`, other attributes = params.
    pub(crate) fn command(
        &mut self,
        file: FileId,
        b: &Block,
        ctx: &Context<'_>,
        extra: &[&'static str],
    ) -> Option<(RunnerCommand, Vec<(&'static str, Attribute)>)> {
        let op = b.ident.as_str().to_owned();
        let labels = self.labels(
            file,
            b,
            &["runner"],
            &format!("{op} \"exec\" {{ path = \"/bin/sh\" args = [\"-ec\", \"echo hi\"] }}"),
        )?;
        let runner = labels[0].to_owned();
        let mut r = Reader::new(&b.body, format!("`{op} \"{runner}\"`"), file);
        let mut extras = Vec::new();
        for name in extra {
            if let Some(a) = r.attr(name) {
                extras.push((*name, a.clone()));
            }
        }
        let args = r
            .attr("args")
            .and_then(|a| self.string_list(file, a, ctx))
            .unwrap_or_default();
        let rest = r.rest_attrs();
        for a in rest.iter().filter(|a| a.key.as_str() == "cmd") {
            self.warn_spliced_vars(file, a);
        }
        let params = self.params_of(file, &rest, ctx);
        let given = rest
            .iter()
            .map(|a| (a.key.as_str().to_owned(), loc_of(file, a.key.span())))
            .collect();
        self.finish_reader(r);
        let loc = header_loc(file, b);
        self.refs.push((
            Ref::Runner {
                name: runner.clone(),
                params: given,
            },
            loc,
        ));
        Some((
            RunnerCommand {
                runner,
                args,
                params,
                loc,
            },
            extras,
        ))
    }

    /// Warns about `${var.x}` spliced into a shell command: a value holding `$(…)` or `;` runs
    /// as shell code. `${shellquote(var.x)}` is left alone.
    fn warn_spliced_vars(&mut self, file: FileId, a: &Attribute) {
        let Some(span) = a.value.span() else { return };
        let Some(text) = self.sources.text(file).get(span.clone()) else {
            return;
        };
        let mut names = Vec::new();
        for inner in crate::files::interpolations(text) {
            if inner.contains("shellquote(") {
                continue;
            }
            for (i, _) in inner.match_indices("var.") {
                let before = inner[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let name: String = inner[i + 4..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                // Unknown names get their own error; warn only about declared variables.
                if self.declared_vars.contains(&name) && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        for name in names {
            let env = pipewright_core::env_key(&name).to_uppercase();
            self.error(
                Diagnostic::warning(
                    format!("variable `{name}` is spliced into a shell command: a value with `$(…)`, `;` or quotes runs as shell code"),
                    Some(loc_of(file, Some(span.clone()))),
                )
                .label("interpolated here")
                .help(format!(
                    "pass it through the environment: `env = {{ {env} = var.{name} }}` in the task and `\"${env}\"` in `cmd` (or quote it: `${{shellquote(var.{name})}}`)"
                )),
            );
        }
    }

    // ---- the pipeline ----

    fn load_pipeline(&mut self, file: FileId) -> Pipeline {
        let text = self.sources.text(file).to_owned();
        let body = match hcl_edit::parser::parse_body(&text) {
            Ok(b) => b,
            Err(e) => {
                self.parse_error(file, &e);
                return Pipeline::default();
            }
        };
        let mut p = Pipeline::default();
        let mut r = Reader::new(&body, "the pipeline file", file);
        for s in body.iter() {
            if let Structure::Attribute(a) = s {
                let d = Diagnostic::error(
                    format!("top-level attribute `{}` is not allowed", a.key.as_str()),
                    Some(loc_of(file, a.key.span())),
                )
                .label("outside any block")
                .help("attributes go inside a block; to name a value, declare a `variable` with a default");
                self.error(d);
            }
        }
        let blocks = r.blocks_of(&TOP_LEVEL);
        // Attributes were reported above; mark them used so the reader stays quiet.
        r.rest_attrs();
        self.finish_reader(r);

        let vars: Vec<&Block> = blocks
            .iter()
            .copied()
            .filter(|b| b.ident.as_str() == "variable")
            .collect();
        self.variables(file, &vars, &mut p);
        self.prefetch_urls(&blocks);

        for b in &blocks {
            match b.ident.as_str() {
                "resource_type" => self.type_block(file, b, TypeKind::Resource, &mut p),
                "runner_type" => self.type_block(file, b, TypeKind::Runner, &mut p),
                "service_type" => self.type_block(file, b, TypeKind::Service, &mut p),
                "secret_type" => self.type_block(file, b, TypeKind::Secret, &mut p),
                "notification_type" => self.type_block(file, b, TypeKind::Notification, &mut p),
                "resource" => self.resource(file, b, &mut p),
                "notification" => self.notification(file, b, &mut p),
                _ => {}
            }
        }
        for b in &blocks {
            if b.ident.as_str() == "job" {
                self.job_block(file, b, &mut p);
            }
        }
        crate::validate::resolve(self, &mut p);
        p
    }

    /// Fetches every type definition given by a literal `https://` source at once, so slow or
    /// hanging servers cost the longest wait, not the sum of them.
    fn prefetch_urls(&mut self, blocks: &[&Block]) {
        let Some(fetcher) = self.opts.fetcher.clone() else {
            return;
        };
        let literal = |b: &Block, name: &str| {
            b.body.iter().find_map(|s| match s {
                Structure::Attribute(a) if a.key.as_str() == name => match &a.value {
                    Expression::String(v) => Some(v.value().to_string()),
                    _ => None,
                },
                _ => None,
            })
        };
        let mut wanted: Vec<(String, Option<String>)> = Vec::new();
        for b in blocks
            .iter()
            .filter(|b| b.ident.as_str().ends_with("_type"))
        {
            if let Some(url) = literal(b, "source")
                && (url.starts_with("https://") || url.starts_with("http://"))
            {
                let key = (url, literal(b, "sha256"));
                if !wanted.contains(&key) {
                    wanted.push(key);
                }
            }
        }
        if wanted.len() < 2 {
            return;
        }
        let fetched: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = wanted
                .iter()
                .map(|(url, sha)| {
                    let fetcher = fetcher.clone();
                    scope.spawn(move || fetcher.fetch(url, sha.as_deref()))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the fetch panicked".to_owned()))
                })
                .collect()
        });
        self.prefetched = wanted.into_iter().zip(fetched).collect();
    }

    fn parse_error(&mut self, file: FileId, e: &hcl_edit::parser::Error) {
        let off = e.location().offset();
        let text = self.sources.text(file);
        let mut end = (off + 1).min(text.len());
        while end < text.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        let mut start = off.min(text.len());
        while start > 0 && !text.is_char_boundary(start) {
            start -= 1;
        }
        let msg = e.message().to_owned();
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let help = if text[line_start..start].contains("${") {
            Some("`${…}` in a string is an HCL interpolation; write `$${` for a literal `${` (e.g. shell `$${VAR:-default}`)".to_owned())
        } else if msg.contains("expected") && msg.contains('=') {
            Some("attributes are written `name = value`; blocks `name \"label\" { … }`".to_owned())
        } else if msg.contains("nesting") {
            Some("the file nests too deeply; flatten the structure".to_owned())
        } else {
            None
        };
        let d = Diagnostic::error(
            format!("HCL syntax error: {msg}"),
            Some(Loc::new(file, start..end)),
        )
        .label("here")
        .maybe_help(help);
        self.error(d);
    }

    fn finish(mut self, pipeline: Pipeline) -> Result<Loaded, LoadError> {
        if pipeline.jobs.is_empty() && !self.diags.iter().any(|d| d.severity == Severity::Error) {
            let name = self.sources.name(0).to_owned();
            self.diags.push(
                Diagnostic::warning(
                    format!("no jobs in `{name}`: there is nothing to run"),
                    None,
                )
                .help("add a `job \"NAME\" { … }` block"),
            );
        }
        let mut seen = std::collections::HashSet::new();
        self.diags.retain(|d| seen.insert(d.clone()));
        self.diags
            .sort_by_key(|d| d.loc.map(|l| (l.file, l.start, l.end)).unwrap_or((0, 0, 0)));
        if self.diags.iter().any(|d| d.severity == Severity::Error) {
            return Err(LoadError {
                diagnostics: self.diags,
                sources: self.sources,
            });
        }
        Ok(Loaded {
            pipeline,
            warnings: self.diags,
            sources: self.sources,
        })
    }
}

pub(crate) enum Resolved {
    Builtin(String),
    Def {
        source: TypeSource,
        file: FileId,
        body: Body,
    },
}

pub(crate) fn to_json(v: &hcl::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn describe(v: &hcl::Value) -> String {
    match v {
        hcl::Value::Null => "null".into(),
        hcl::Value::Bool(b) => format!("the bool `{b}`"),
        hcl::Value::Number(n) => format!("the number `{n}`"),
        hcl::Value::String(s) => format!("the string \"{s}\""),
        hcl::Value::Array(_) => "a list".into(),
        hcl::Value::Object(_) => "a map".into(),
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        _ => "string",
    }
}

/// Converts a supplied value to a variable's type (strings like `"3"` or `"true"` convert).
pub(crate) fn coerce(v: &serde_json::Value, ty: VarType) -> Result<serde_json::Value, ()> {
    use serde_json::Value as J;
    match (ty, v) {
        (VarType::String, J::String(_)) => Ok(v.clone()),
        (VarType::String, J::Number(n)) => Ok(J::String(n.to_string())),
        (VarType::String, J::Bool(b)) => Ok(J::String(b.to_string())),
        (VarType::Number, J::Number(_)) => Ok(v.clone()),
        (VarType::Number, J::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9e15 {
                    Some(J::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(J::Number)
                }
            })
            .ok_or(()),
        (VarType::Bool, J::Bool(_)) => Ok(v.clone()),
        (VarType::Bool, J::String(s)) if s == "true" || s == "false" => Ok(J::Bool(s == "true")),
        _ => Err(()),
    }
}

pub(crate) fn line_col_offset(text: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (off + col.saturating_sub(1)).min(text.len());
        }
        off += l.len();
    }
    text.len()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub(crate) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Lowercase, non-alphanumerics to `-`, runs collapsed, trimmed.
pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}
