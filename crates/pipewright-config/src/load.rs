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
    Notification(String),
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
fn alias_hint(name: &str) -> Option<&'static str> {
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
fn unsupported_hint(name: &str) -> Option<&'static str> {
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

    // ---- expressions ----

    /// Evaluates an expression; on error reports it at the expression and returns `None`.
    pub(crate) fn eval(
        &mut self,
        file: FileId,
        expr: &Expression,
        ctx: &Context<'_>,
    ) -> Option<hcl::Value> {
        let loc = loc_of(file, expr.span());
        let e: hcl::Expression = expr.clone().into();
        match e.evaluate(ctx) {
            Ok(v) => Some(v),
            Err(err) => {
                let d = self.eval_diag(err, loc);
                self.error(d);
                None
            }
        }
    }

    fn eval_diag(&self, err: hcl::eval::Error, loc: Loc) -> Diagnostic {
        use hcl::eval::ErrorKind as K;
        let expr_text = err.expr().map(|e| e.to_string());
        match err.kind() {
            K::NoSuchKey(key)
                if expr_text
                    .as_deref()
                    .is_some_and(|t| t.contains(&format!("var.{key}"))) =>
            {
                let help = match suggest(key, self.declared_vars.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `var.{s}`?"),
                    None => format!("declare it: `variable \"{key}\" {{ type = string }}`"),
                };
                Diagnostic::error(format!("unknown variable `var.{key}`"), Some(loc))
                    .label("no such variable")
                    .help(help)
            }
            K::UndefinedVar(name) if name.as_str() == "each" => Diagnostic::error(
                "`each` is only available inside a job with `for_each` or `matrix`",
                Some(loc),
            )
            .label("not in a for_each job"),
            K::UndefinedVar(name) => {
                let help = if suggest(name.as_str(), ["var"]).is_some() || name.as_str() == "vars" {
                    "variables are written `var.<name>`".to_owned()
                } else {
                    format!(
                        "only `var.<name>` (and `each` in for_each jobs) can be referenced; for a literal string write \"{name}\""
                    )
                };
                Diagnostic::error(format!("unknown name `{name}`"), Some(loc))
                    .label("not defined")
                    .help(help)
            }
            K::UndefinedFunc(name) => {
                let names = funcs::function_names();
                let help = match suggest(name.to_string().as_str(), names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "see docs/pipeline-language.md for the function library".to_owned(),
                };
                Diagnostic::error(format!("unknown function `{name}`"), Some(loc))
                    .label("no such function")
                    .help(help)
            }
            K::FuncCall(name, msg) => {
                Diagnostic::error(format!("call to `{name}` failed: {msg}"), Some(loc))
                    .label("this call")
            }
            _ => Diagnostic::error(format!("cannot evaluate expression: {err}"), Some(loc))
                .label("here"),
        }
    }

    fn type_error(&mut self, file: FileId, a: &Attribute, want: &str, got: &hcl::Value) {
        let d = Diagnostic::error(
            format!(
                "`{}` must be {want}, found {}",
                a.key.as_str(),
                describe(got)
            ),
            Some(loc_of(file, a.value.span())),
        )
        .label(format!("expected {want}"));
        self.error(d);
    }

    pub(crate) fn string(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<String> {
        let v = self.eval(file, &a.value, ctx)?;
        match funcs::to_str(&v) {
            Ok(s) if !v.is_null() => Some(s),
            _ => {
                self.type_error(file, a, "a string", &v);
                None
            }
        }
    }

    pub(crate) fn boolean(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<bool> {
        let v = self.eval(file, &a.value, ctx)?;
        match &v {
            hcl::Value::Bool(b) => Some(*b),
            hcl::Value::String(s) if s == "true" => Some(true),
            hcl::Value::String(s) if s == "false" => Some(false),
            _ => {
                self.type_error(file, a, "`true` or `false`", &v);
                None
            }
        }
    }

    pub(crate) fn uint(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
        min: u32,
    ) -> Option<u32> {
        let v = self.eval(file, &a.value, ctx)?;
        let n = match &v {
            hcl::Value::Number(n) => n.as_f64(),
            hcl::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.fract() == 0.0 && n >= f64::from(min) && n <= f64::from(u32::MAX) => {
                Some(n as u32)
            }
            Some(n) => {
                let d = Diagnostic::error(
                    format!(
                        "`{}` must be a whole number ≥ {min}, found {n}",
                        a.key.as_str()
                    ),
                    Some(loc_of(file, a.value.span())),
                )
                .label("out of range");
                self.error(d);
                None
            }
            None => {
                self.type_error(file, a, "a number", &v);
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<std::time::Duration> {
        let s = self.string(file, a, ctx)?;
        match crate::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = Diagnostic::error(
                    format!("invalid duration `{s}` for `{}`: {e}", a.key.as_str()),
                    Some(loc_of(file, a.value.span())),
                )
                .label("not a duration")
                .help("write a number and a unit, e.g. `30s`, `5m`, `1h30m` (units: ms, s, m, h)");
                self.error(d);
                None
            }
        }
    }

    pub(crate) fn string_list(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<Vec<String>> {
        let v = self.eval(file, &a.value, ctx)?;
        let Some(items) = v.as_array() else {
            self.type_error(file, a, "a list of strings", &v);
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match funcs::to_str(item) {
                Ok(s) => out.push(s),
                Err(_) => {
                    self.type_error(file, a, "a list of strings", &v);
                    return None;
                }
            }
        }
        Some(out)
    }

    pub(crate) fn json(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<serde_json::Value> {
        let v = self.eval(file, &a.value, ctx)?;
        Some(to_json(&v))
    }

    /// Reads `name = [slug, …]` tags: lowercase slugs, at most 10.
    pub(crate) fn slugs(&mut self, file: FileId, a: &Attribute, ctx: &Context<'_>) -> Vec<String> {
        let Some(list) = self.string_list(file, a, ctx) else {
            return vec![];
        };
        let loc = loc_of(file, a.value.span());
        if list.len() > 10 {
            self.error(
                Diagnostic::error(
                    format!(
                        "`{}` has {} entries; at most 10 are allowed",
                        a.key.as_str(),
                        list.len()
                    ),
                    Some(loc),
                )
                .label("too many"),
            );
        }
        for s in &list {
            if !is_slug(s) {
                self.error(
                    Diagnostic::error(format!("`{s}` is not a valid slug"), Some(loc))
                        .label("invalid entry")
                        .help(format!(
                            "use lowercase letters, digits and `-`, e.g. `{}`",
                            slugify(s)
                        )),
                );
            }
        }
        list
    }

    /// `params { k = v }` or the rest of a body's attributes, evaluated to JSON.
    pub(crate) fn params_of(
        &mut self,
        file: FileId,
        attrs: &[&Attribute],
        ctx: &Context<'_>,
    ) -> Params {
        self.params_of_located(file, attrs, ctx).0
    }

    /// [`Self::params_of`], and where each value was written.
    pub(crate) fn params_of_located(
        &mut self,
        file: FileId,
        attrs: &[&Attribute],
        ctx: &Context<'_>,
    ) -> (Params, ParamLocs) {
        let mut p = Params::new();
        let mut locs = ParamLocs::new();
        for a in attrs {
            // A value that failed to evaluate was reported; keep the key so later checks
            // ("runner needs `cmd`") do not pile a second, wrong error on top.
            let v = self.json(file, a, ctx).unwrap_or(serde_json::Value::Null);
            p.insert(a.key.as_str(), v);
            locs.push((a.key.to_string(), loc_of(file, a.value.span())));
        }
        (p, locs)
    }

    /// Reads a `params { … }` block (attributes only).
    pub(crate) fn params_block(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> Params {
        self.params_block_located(file, r, ctx).0
    }

    /// [`Self::params_block`], and where each value was written.
    pub(crate) fn params_block_located(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> (Params, ParamLocs) {
        let mut p = Params::new();
        let mut locs = ParamLocs::new();
        let blocks = r.blocks("params");
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                self.error(
                    Diagnostic::error(
                        format!("`params` is given twice in {}", r.what),
                        Some(header_loc(file, b)),
                    )
                    .label("second block")
                    .help("merge the two blocks"),
                );
            }
            self.labels(file, b, &[], "params { key = \"value\" }");
            let mut inner = Reader::new(&b.body, "a `params` block", file);
            let attrs = inner.rest_attrs();
            let (params, at) = self.params_of_located(file, &attrs, ctx);
            p.0.extend(params.0);
            locs.extend(at);
            self.finish_reader(inner);
        }
        (p, locs)
    }

    /// Notes the values among `params` that start with `-`, so the check of built-in resource
    /// types (run once every type is known) can refuse those the type passes to a command.
    pub(crate) fn note_option_like(
        &mut self,
        resource: &str,
        what: String,
        values: impl IntoIterator<Item = (String, Option<String>, Loc)>,
    ) {
        let found: Vec<(String, Loc)> = values
            .into_iter()
            .filter(|(_, v, _)| v.as_deref().is_some_and(|v| v.starts_with('-')))
            .map(|(k, _, loc)| (k, loc))
            .collect();
        if let Some((_, loc)) = found.first() {
            let loc = *loc;
            self.refs.push((
                Ref::Arguments {
                    resource: resource.to_owned(),
                    what,
                    values: found,
                },
                loc,
            ));
        }
    }

    /// [`Self::note_option_like`] for a params map and where its values were written.
    pub(crate) fn note_option_like_params(
        &mut self,
        resource: &str,
        what: String,
        params: &Params,
        locs: &ParamLocs,
    ) {
        let values = locs.iter().map(|(k, loc)| {
            let v = params.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            (k.clone(), v, *loc)
        });
        let values: Vec<_> = values.collect();
        self.note_option_like(resource, what, values);
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

    // ---- variables ----

    fn variables(&mut self, file: FileId, blocks: &[&Block], p: &mut Pipeline) {
        struct Decl {
            name: String,
            ty: VarType,
            default: Option<serde_json::Value>,
            secret: Option<(String, Block, Loc)>,
            loc: Loc,
            reported: bool,
        }
        let mut decls: Vec<Decl> = Vec::new();
        for b in blocks {
            let Some(labels) =
                self.labels(file, b, &["name"], "variable \"region\" { type = string }")
            else {
                continue;
            };
            let name = labels[0].to_owned();
            let loc = header_loc(file, b);
            if !is_ident(&name) {
                self.error(
                    Diagnostic::error(format!("`{name}` is not a valid variable name"), Some(loc))
                        .label("invalid name")
                        .help("use letters, digits and `_`, starting with a letter"),
                );
            }
            if let Some(first) = decls.iter().find(|d| d.name == name) {
                self.declared_twice(
                    format!("variable `{name}`"),
                    loc,
                    first.loc,
                    "rename or remove one of them",
                );
                continue;
            }
            let mut r = Reader::new(&b.body, format!("variable `{name}`"), file);
            let ty_attr = r.attr("type");
            r.attr("description");
            let default_attr = r.attr("default");
            let ty = match ty_attr {
                Some(a) => self.var_type(file, a),
                // As in Terraform, `type` may be left out: the default's literal type, else
                // a string.
                None => Some(match default_attr.map(|a| &a.value) {
                    Some(Expression::Number(_)) => VarType::Number,
                    Some(Expression::Bool(_)) => VarType::Bool,
                    _ => VarType::String,
                }),
            };
            let secret_blocks = r.blocks("secret");
            self.finish_reader(r);
            let type_ok = ty.is_some();
            let ty = ty.unwrap_or(VarType::String);
            let mut default = None;
            let mut default_reported = !type_ok;
            if let Some(a) = default_attr {
                let ctx = self.base.clone();
                if let Some(v) = self.eval(file, &a.value, &ctx) {
                    match coerce(&to_json(&v), ty) {
                        Ok(v) => default = Some(v),
                        Err(()) if !type_ok => {}
                        Err(()) => {
                            default_reported = true;
                            let d = Diagnostic::error(
                                format!(
                                    "the default of variable `{name}` is {}, but its type is {}",
                                    describe(&v),
                                    ty.as_str()
                                ),
                                Some(loc_of(file, a.value.span())),
                            )
                            .label(format!("not a {}", ty.as_str()))
                            .help(format!(
                                "change the default or the type (`type = {}`)",
                                json_type(&to_json(&v))
                            ));
                            self.error(d);
                        }
                    }
                }
            }
            let mut secret = None;
            for (i, sb) in secret_blocks.iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error(format!("variable `{name}` has more than one `secret` block"), Some(header_loc(file, sb)))
                            .label("second secret")
                            .help("a variable comes from one secret; declare another variable for the other"),
                    );
                    continue;
                }
                if let Some(l) = self.labels(
                    file,
                    sb,
                    &["secret type"],
                    "secret \"vault\" { path = \"secret/data/db\" key = \"password\" }",
                ) {
                    let sloc = header_loc(file, sb);
                    self.refs
                        .push((Ref::Type(TypeKind::Secret, l[0].to_owned()), sloc));
                    secret = Some((l[0].to_owned(), (*sb).clone(), sloc));
                }
            }
            self.declared_vars.push(name.clone());
            decls.push(Decl {
                name,
                ty,
                default,
                secret,
                loc,
                reported: default_reported,
            });
        }

        // Values from vars files then --var (later wins).
        let mut supplied: IndexMap<String, (serde_json::Value, VarOrigin, Option<Loc>)> =
            IndexMap::new();
        for path in self.opts.vars_files.clone() {
            for (k, v, loc) in self.read_vars_file(&path) {
                if !decls.iter().any(|d| d.name == k) {
                    let help = suggest(&k, decls.iter().map(|d| d.name.as_str()))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "remove it or declare the variable".into());
                    self.error(
                        Diagnostic::warning(
                            format!("vars file sets `{k}`, which the pipeline does not declare"),
                            loc,
                        )
                        .label("unused value")
                        .help(help),
                    );
                    continue;
                }
                supplied.insert(k, (v, VarOrigin::VarsFile(path.display().to_string()), loc));
            }
        }
        for (k, v) in &self.opts.vars {
            if !decls.iter().any(|d| &d.name == k) {
                let help = suggest(k, decls.iter().map(|d| d.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        let names: Vec<String> =
                            decls.iter().map(|d| format!("`{}`", d.name)).collect();
                        if names.is_empty() {
                            "the pipeline declares no variables".into()
                        } else {
                            format!("declared variables: {}", names.join(", "))
                        }
                    });
                self.error(
                    Diagnostic::error(format!("--var `{k}`: no variable `{k}` is declared"), None)
                        .help(help),
                );
                continue;
            }
            supplied.insert(
                k.clone(),
                (serde_json::Value::String(v.clone()), VarOrigin::Cli, None),
            );
        }

        for d in &decls {
            let (value, origin) = if let Some((v, origin, loc)) = supplied.get(&d.name) {
                match coerce(v, d.ty) {
                    Ok(v) => (v, origin.clone()),
                    Err(()) => {
                        let from = match origin {
                            VarOrigin::Cli => "--var".to_owned(),
                            VarOrigin::VarsFile(f) => format!("vars file `{f}`"),
                            _ => "input".to_owned(),
                        };
                        self.error(
                            Diagnostic::error(
                                format!(
                                    "variable `{}` is a {}, but {from} gives {}",
                                    d.name,
                                    d.ty.as_str(),
                                    v
                                ),
                                *loc,
                            )
                            .label(format!("not a {}", d.ty.as_str()))
                            .help(match d.ty {
                                VarType::Number => "give a number, e.g. `3` or `2.5`",
                                VarType::Bool => "give `true` or `false`",
                                VarType::String => "give a string",
                            }),
                        );
                        continue;
                    }
                }
            } else if d.secret.is_some() {
                (
                    serde_json::Value::String(secret_placeholder(&d.name)),
                    VarOrigin::Secret,
                )
            } else if let Some(v) = &d.default {
                (v.clone(), VarOrigin::Default)
            } else if d.reported {
                continue;
            } else {
                self.error(
                    Diagnostic::error(format!("variable `{}` has no value", d.name), Some(d.loc))
                        .label("no default, no secret, not set")
                        .help(format!(
                            "pass `--var {}=…`, set it in a vars file, or add a `default`",
                            d.name
                        )),
                );
                continue;
            };
            p.variables.insert(
                d.name.clone(),
                Variable {
                    name: d.name.clone(),
                    ty: d.ty,
                    value,
                    origin,
                    secret: None,
                    loc: d.loc,
                },
            );
        }

        // `var` is visible everywhere after this point.
        let mut obj = hcl::Map::new();
        for d in &decls {
            // Variables already reported as broken evaluate to "" so their uses do not pile up
            // follow-on errors.
            let v = p
                .variables
                .get(&d.name)
                .map_or(hcl::Value::String(String::new()), |v| {
                    hcl::to_value(&v.value).unwrap_or(hcl::Value::Null)
                });
            obj.insert(d.name.clone(), v);
        }
        Arc::make_mut(&mut self.base).declare_var("var", hcl::Value::Object(obj));

        // Secret bindings may reference other variables (chained secrets).
        let ctx = self.base.clone();
        for d in &decls {
            let Some((ty, block, _)) = &d.secret else {
                continue;
            };
            let mut r = Reader::new(
                &block.body,
                format!("the secret of variable `{}`", d.name),
                file,
            );
            let path = r
                .attr("path")
                .and_then(|a| self.string(file, a, &ctx))
                .unwrap_or_default();
            let key = match r.attr("key") {
                Some(a) => self.string(file, a, &ctx),
                None => {
                    self.error(
                        Diagnostic::error(
                            format!("the secret of variable `{}` has no `key`", d.name),
                            Some(header_loc(file, block)),
                        )
                        .label("missing `key`")
                        .help("add `key = \"…\"`: the entry to read at `path`"),
                    );
                    None
                }
            };
            self.finish_reader(r);
            if let (Some(key), Some(var)) = (key, p.variables.get_mut(&d.name)) {
                var.secret = Some(SecretBinding {
                    secret_type: ty.clone(),
                    path,
                    key,
                });
            }
        }
        crate::validate::secret_chains(self, p);
    }

    fn var_type(&mut self, file: FileId, a: &Attribute) -> Option<VarType> {
        let raw = match &a.value {
            Expression::Variable(v) => v.as_str().to_owned(),
            Expression::String(s) => s.as_str().to_owned(),
            _ => String::new(),
        };
        match raw.as_str() {
            "string" => Some(VarType::String),
            "number" => Some(VarType::Number),
            "bool" => Some(VarType::Bool),
            _ => {
                let alias = match raw.as_str() {
                    "int" | "integer" | "float" | "double" => Some("number"),
                    "boolean" => Some("bool"),
                    "str" | "text" => Some("string"),
                    _ => None,
                };
                let help = match alias.or_else(|| suggest(&raw, ["string", "number", "bool"])) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use `string`, `number` or `bool`".to_owned(),
                };
                self.error(
                    Diagnostic::error(
                        "unsupported variable type",
                        Some(loc_of(file, a.value.span())),
                    )
                    .label("not a type")
                    .help(help),
                );
                None
            }
        }
    }

    fn read_vars_file(&mut self, path: &Path) -> Vec<(String, serde_json::Value, Option<Loc>)> {
        let text = match read_capped(path, MAX_PIPELINE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    Diagnostic::error(
                        format!("cannot read vars file `{}`: {e}", path.display()),
                        None,
                    )
                    .help("check the path given to --vars-file"),
                );
                return vec![];
            }
        };
        let file = self.sources.add(path.display().to_string(), text.clone());
        let is_json = path.extension().is_some_and(|e| e == "json");
        if is_json {
            let parsed: Result<serde_json::Map<String, serde_json::Value>, _> =
                serde_json::from_str(&text);
            match parsed {
                Ok(map) => map
                    .into_iter()
                    .map(|(k, v)| {
                        let loc = text
                            .find(&format!("\"{k}\""))
                            .map(|i| Loc::new(file, i..i + k.len() + 2));
                        (k, v, loc)
                    })
                    .collect(),
                Err(e) => {
                    let off = line_col_offset(&text, e.line(), e.column());
                    self.error(
                        Diagnostic::error(
                            format!("invalid JSON vars file: {e}"),
                            Some(Loc::new(file, off..off)),
                        )
                        .label("here")
                        .help("a JSON vars file is one object: {\"name\": \"value\", …}"),
                    );
                    vec![]
                }
            }
        } else {
            let body = match hcl_edit::parser::parse_body(&text) {
                Ok(b) => b,
                Err(e) => {
                    self.parse_error(file, &e);
                    return vec![];
                }
            };
            let ctx = self.base.clone();
            let mut out = Vec::new();
            for s in body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        if let Some(v) = self.eval(file, &a.value, &ctx) {
                            out.push((
                                a.key.as_str().to_owned(),
                                to_json(&v),
                                Some(loc_of(file, a.key.span())),
                            ));
                        }
                    }
                    Structure::Block(b) => self.error(
                        Diagnostic::error(
                            "a vars file holds only `name = value` lines",
                            Some(header_loc(file, b)),
                        )
                        .label("block not allowed"),
                    ),
                }
            }
            out
        }
    }

    // ---- types ----

    fn type_block(&mut self, file: FileId, b: &Block, kind: TypeKind, p: &mut Pipeline) {
        let kw = kind.keyword();
        let Some(labels) = self.labels(file, b, &["name"], &format!("{kw} \"name\" {{ … }}"))
        else {
            return;
        };
        let name = labels[0].to_owned();
        let loc = header_loc(file, b);
        let first = match kind {
            TypeKind::Resource => p.resource_types.get(&name).map(|t| t.loc),
            TypeKind::Runner => p.runner_types.get(&name).map(|t| t.loc),
            TypeKind::Service => p.service_types.get(&name).map(|t| t.loc),
            TypeKind::Secret => p.secret_types.get(&name).map(|t| t.loc),
            TypeKind::Notification => p.notification_types.get(&name).map(|t| t.loc),
        };
        if let Some(first) = first {
            self.declared_twice(format!("{kw} `{name}`"), loc, first, "remove one of them");
            return;
        }
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("{kw} `{name}`"), file);
        let source_attr = r.attr("source");
        let sha_attr = r.attr("sha256");
        let sha = sha_attr.and_then(|a| self.string(file, a, &ctx));
        let source_text = source_attr.and_then(|a| self.string(file, a, &ctx));

        let mut def_file = file;
        let mut loaded_body: Option<Body> = None;
        let mut source = TypeSource::Inline;
        let mut builtin_config = Params::new();
        if let (Some(src), Some(sa)) = (&source_text, source_attr) {
            let sloc = loc_of(file, sa.value.span());
            let resolved = self.resolve_source(src, sha.as_deref(), kind, sloc);
            // A built-in secret type takes its configuration (`address`, `token`, `format`…)
            // beside `source`; anything else would be silently ignored: refuse it.
            let config_allowed =
                kind == TypeKind::Secret && matches!(resolved, Some(Resolved::Builtin(_)));
            for s in b.body.iter() {
                let (n, l) = match s {
                    Structure::Attribute(_) if config_allowed => continue,
                    Structure::Attribute(a) => {
                        (a.key.as_str().to_owned(), loc_of(file, a.key.span()))
                    }
                    Structure::Block(bl) => (bl.ident.as_str().to_owned(), header_loc(file, bl)),
                };
                if n != "source" && n != "sha256" {
                    self.error(
                        Diagnostic::error(format!("{kw} `{name}` has both `source` and `{n}`"), Some(l))
                            .label("not allowed with `source`")
                            .related(sloc, "the definition comes from here")
                            .help("remove `source` to define the type inline, or remove the inline definition"),
                    );
                }
            }
            match resolved {
                Some(Resolved::Builtin(n)) => source = TypeSource::Builtin { name: n },
                Some(Resolved::Def {
                    source: s,
                    file: f,
                    body,
                }) => {
                    source = s;
                    def_file = f;
                    loaded_body = Some(body);
                }
                // Already reported; an empty built-in name keeps later checks quiet (the load
                // fails, so this placeholder never reaches a caller).
                None => {
                    source = TypeSource::Builtin {
                        name: String::new(),
                    }
                }
            }
            let rest = r.rest_attrs();
            if config_allowed {
                builtin_config = self.params_of(file, &rest, &ctx);
            }
            r.blocks_of(&[
                "check",
                "pull",
                "push",
                "runner",
                "start",
                "stop",
                "ready_check",
                "get",
                "notify",
                "run",
            ]);
            self.finish_reader(r);
        } else {
            if let Some(a) = sha_attr {
                self.error(
                    Diagnostic::error(
                        "`sha256` pins a `source`, but there is none",
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("nothing to pin")
                    .help("remove `sha256` or add `source = \"…\"`"),
                );
            }
            self.finish_type_body(file, &name, kind, loc, source, r, &ctx, p);
            return;
        }
        if let Some(body) = loaded_body {
            // The fetched file holds one block of the same keyword; its label may differ.
            let mut outer = Reader::new(
                &body,
                format!("`{}`", self.sources.name(def_file)),
                def_file,
            );
            let defs = outer.blocks(kw);
            outer.rest_attrs();
            self.finish_reader(outer);
            match defs.as_slice() {
                [one] => {
                    let r = Reader::new(&one.body, format!("{kw} `{name}`"), def_file);
                    self.finish_type_body(def_file, &name, kind, loc, source, r, &ctx, p);
                }
                _ => self.error(
                    Diagnostic::error(
                        format!(
                            "`{}` must define exactly one `{kw}` block, found {}",
                            self.sources.name(def_file),
                            defs.len()
                        ),
                        source_attr.map(|a| loc_of(file, a.value.span())),
                    )
                    .label("loaded from here"),
                ),
            }
            return;
        }
        // Built-in (or unresolvable) source: record the declaration as is.
        let empty = Body::new();
        let r = Reader::new(&empty, String::new(), file);
        self.finish_type_body(file, &name, kind, loc, source, r, &ctx, p);
        if kind == TypeKind::Secret
            && let Some(t) = p.secret_types.get_mut(&name)
        {
            t.config = builtin_config;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_type_body(
        &mut self,
        file: FileId,
        name: &str,
        kind: TypeKind,
        loc: Loc,
        source: TypeSource,
        mut r: Reader<'_>,
        ctx: &Context<'_>,
        p: &mut Pipeline,
    ) {
        let inline = source == TypeSource::Inline
            || matches!(source, TypeSource::File { .. } | TypeSource::Url { .. });
        if kind == TypeKind::Runner {
            let mut run = None;
            for (i, b) in r.blocks("run").into_iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error("`run` is given twice", Some(header_loc(file, b)))
                            .label("second `run`"),
                    );
                    continue;
                }
                self.labels(
                    file,
                    b,
                    &[],
                    "run { path = \"docker\" args = [\"run\", \"$image\"] }",
                );
                let mut rr = Reader::new(
                    &b.body,
                    format!("the `run` block of runner_type `{name}`"),
                    file,
                );
                let path = rr.attr("path").and_then(|a| self.string(file, a, ctx));
                let args = rr
                    .attr("args")
                    .and_then(|a| self.string_list(file, a, ctx))
                    .unwrap_or_default();
                self.finish_reader(rr);
                run = Some(RunTemplate {
                    path: path.unwrap_or_default(),
                    args,
                });
            }
            self.finish_reader(r);
            if inline && run.is_none() {
                self.error(
                    Diagnostic::error(format!("runner_type `{name}` has no `run` block"), Some(loc))
                        .label("missing `run`")
                        .help("add `run { path = \"…\" args = [\"$args\"] }`, or `source = \"pipewright://exec\"`"),
                );
            }
            p.runner_types.insert(
                name.to_owned(),
                RunnerType {
                    name: name.to_owned(),
                    source,
                    run,
                    loc,
                },
            );
            return;
        }
        let params = r
            .attr("params")
            .and_then(|a| self.string_list(file, a, ctx))
            .unwrap_or_default();
        let cache = if kind == TypeKind::Resource {
            r.attr("cache")
                .and_then(|a| self.boolean(file, a, ctx))
                .unwrap_or(false)
        } else {
            false
        };
        let (ops, required): (&[&'static str], &[&'static str]) = match kind {
            TypeKind::Resource => (&["check", "pull", "push"], &[]),
            TypeKind::Service => (&["start", "stop"], &["start", "stop"]),
            TypeKind::Secret => (&["get"], &["get"]),
            TypeKind::Notification => (&["notify"], &["notify"]),
            TypeKind::Runner => (&[], &[]),
        };
        let mut commands = IndexMap::new();
        for op in ops {
            for (i, b) in r.blocks(op).into_iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error(
                            format!("`{op}` is given twice"),
                            Some(header_loc(file, b)),
                        )
                        .label("second definition"),
                    );
                    continue;
                }
                if let Some((c, _)) = self.command(file, b, ctx, &[]) {
                    commands.insert((*op).to_owned(), c);
                }
            }
        }
        let mut ready_check = None;
        if kind == TypeKind::Service {
            for b in r.blocks("ready_check") {
                if let Some((c, extras)) = self.command(file, b, ctx, &["interval", "timeout"]) {
                    let mut rc = ReadyCheck {
                        command: c,
                        interval: std::time::Duration::from_secs(1),
                        timeout: std::time::Duration::from_secs(60),
                    };
                    for (n, a) in extras {
                        if let Some(d) = self.duration(file, &a, ctx) {
                            if n == "interval" {
                                rc.interval = d;
                            } else {
                                rc.timeout = d;
                            }
                        }
                    }
                    ready_check = Some(rc);
                }
            }
        }
        let runner = r
            .blocks("runner")
            .first()
            .and_then(|b| self.command(file, b, ctx, &[]).map(|c| c.0));
        let config = if kind == TypeKind::Secret {
            let rest = r.rest_attrs();
            self.params_of(file, &rest, ctx)
        } else {
            Params::new()
        };
        self.finish_reader(r);
        if inline {
            for op in required {
                if !commands.contains_key(*op) {
                    self.error(
                        Diagnostic::error(
                            format!("{} `{name}` has no `{op}` command", kind.keyword()),
                            Some(loc),
                        )
                        .label(format!("missing `{op}`"))
                        .help(format!(
                            "add `{op} \"exec\" {{ path = \"…\" args = [...] }}`"
                        )),
                    );
                }
            }
        }
        let decl = TypeDecl {
            name: name.to_owned(),
            source,
            params,
            cache,
            commands,
            ready_check,
            runner,
            config,
            loc,
        };
        let map = match kind {
            TypeKind::Resource => &mut p.resource_types,
            TypeKind::Service => &mut p.service_types,
            TypeKind::Secret => &mut p.secret_types,
            _ => &mut p.notification_types,
        };
        map.insert(name.to_owned(), decl);
    }

    fn resolve_source(
        &mut self,
        src: &str,
        sha: Option<&str>,
        kind: TypeKind,
        loc: Loc,
    ) -> Option<Resolved> {
        let builtin = src
            .strip_prefix("pipewright://")
            .or_else(|| src.strip_prefix("pikoci://"));
        if let Some(n) = builtin {
            if self.opts.catalog.has(kind, n) {
                return Some(Resolved::Builtin(n.to_owned()));
            }
            let names = self.opts.catalog.names(kind);
            let help = match suggest(n, names.iter().copied()) {
                Some(s) => format!("did you mean `pipewright://{s}`?"),
                None if names.is_empty() => format!(
                    "this build has no built-in {}s; define the type inline",
                    kind.noun()
                ),
                None => format!(
                    "built-in {}s: {}",
                    kind.noun(),
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(
                Diagnostic::error(
                    format!("there is no built-in {} `{n}`", kind.noun()),
                    Some(loc),
                )
                .label("unknown built-in")
                .help(help),
            );
            return None;
        }
        let (text, source, name) = if src.starts_with("https://") || src.starts_with("http://") {
            let Some(fetcher) = self.opts.fetcher.clone() else {
                self.error(
                    Diagnostic::error(format!("cannot load `{src}`: this loader has no URL fetcher"), Some(loc))
                        .label("URL source")
                        .help("download the file and set `source` to its path, or use a loader built with a fetcher"),
                );
                return None;
            };
            let key = (src.to_owned(), sha.map(str::to_owned));
            let fetched = match self.prefetched.remove(&key) {
                Some(r) => r,
                None => fetcher.fetch(src, sha),
            };
            match fetched {
                Ok(t) => (
                    t,
                    TypeSource::Url {
                        url: src.to_owned(),
                        sha256: sha.map(str::to_owned),
                    },
                    src.to_owned(),
                ),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("cannot fetch `{src}`: {e}"), Some(loc))
                            .label("fetch failed"),
                    );
                    return None;
                }
            }
        } else {
            let path = match crate::files::definition_path(
                src,
                &self.dir,
                self.opts.allow_sources_outside,
            ) {
                Ok(p) => p,
                Err(why) => {
                    self.error(
                        Diagnostic::error(format!("cannot read type definition: {why}"), Some(loc))
                            .label("source")
                            .help("keep type definitions in the pipeline's directory (or below it), give an absolute path, or allow other paths explicitly (`--allow-sources-outside`)"),
                    );
                    return None;
                }
            };
            match read_capped(&path, MAX_DEFINITION_BYTES) {
                Ok(t) => (
                    t,
                    TypeSource::File {
                        path: path.clone(),
                        sha256: sha.map(str::to_owned),
                    },
                    path.display().to_string(),
                ),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("cannot read type definition `{}`: {e}", path.display()), Some(loc))
                            .label("source")
                            .help("a `source` is `pipewright://NAME`, `https://…`, or a path relative to the pipeline file"),
                    );
                    return None;
                }
            }
        };
        if let Some(want) = sha {
            let got = hex(&sha2::Sha256::digest(text.as_bytes()));
            if !want.eq_ignore_ascii_case(&got) {
                self.error(
                    Diagnostic::error(
                        format!("`{name}` does not match its pinned sha256"),
                        Some(loc),
                    )
                    .label("hash mismatch")
                    .help(format!(
                        "expected {want}, got {got}; update `sha256` if the change is intended"
                    )),
                );
                return None;
            }
        }
        match hcl_edit::parser::parse_body(&text) {
            Ok(body) => {
                let file = self.sources.add(name, text);
                Some(Resolved::Def { source, file, body })
            }
            Err(e) => {
                // The text may be anything the path or URL pointed at (`/proc/self/environ`,
                // a key file): name the position, never show the content.
                let (line, col) = crate::files::line_col(&text, e.location().offset());
                self.error(
                    Diagnostic::error(
                        format!("`{name}` is not a valid type definition: HCL syntax error at {line}:{col}"),
                        Some(loc),
                    )
                    .label("source")
                    .help("a type definition is an HCL file with the body of the type block; its content is not shown here"),
                );
                None
            }
        }
    }

    // ---- resources and notifications ----

    fn resource(&mut self, file: FileId, b: &Block, p: &mut Pipeline) {
        let Some(labels) = self.labels(
            file,
            b,
            &["type", "name"],
            "resource \"git\" \"app\" { params { url = \"…\" } }",
        ) else {
            return;
        };
        let (ty, name) = (labels[0].to_owned(), labels[1].to_owned());
        let id = format!("{ty}.{name}");
        let loc = header_loc(file, b);
        if let Some(first) = p.resources.get(&id) {
            self.declared_twice(
                format!("resource `{id}`"),
                loc,
                first.loc,
                "rename or remove one of them",
            );
            return;
        }
        self.refs
            .push((Ref::Type(TypeKind::Resource, ty.clone()), loc));
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("resource `{id}`"), file);
        let (params, locs) = self.params_block_located(file, &mut r, &ctx);
        self.note_option_like_params(&id, format!("resource `{id}`"), &params, &locs);
        let check_interval = r.attr("check_interval").and_then(|a| {
            let s = self.string(file, a, &ctx)?;
            match crate::duration::Schedule::parse(&s) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("invalid check_interval `{s}`: {e}"), Some(loc_of(file, a.value.span())))
                            .label("invalid schedule")
                            .help("use `@every <duration>` (at least 10s) or a cron expression such as `*/5 * * * *`"),
                    );
                    None
                }
            }
        });
        let cache = r.attr("cache").and_then(|a| self.boolean(file, a, &ctx));
        let tags = r
            .attr("tags")
            .map(|a| self.slugs(file, a, &ctx))
            .unwrap_or_default();
        self.finish_reader(r);
        p.resources.insert(
            id.clone(),
            Resource {
                id,
                type_name: ty,
                name,
                params,
                check_interval,
                cache,
                tags,
                loc,
            },
        );
    }

    fn notification(&mut self, file: FileId, b: &Block, p: &mut Pipeline) {
        let Some(labels) = self.labels(
            file,
            b,
            &["type", "name"],
            "notification \"slack\" \"team\" { on = [\"failure\"] }",
        ) else {
            return;
        };
        let (ty, name) = (labels[0].to_owned(), labels[1].to_owned());
        let id = format!("{ty}.{name}");
        let loc = header_loc(file, b);
        if let Some(first) = p.notifications.get(&id) {
            self.declared_twice(
                format!("notification `{id}`"),
                loc,
                first.loc,
                "rename or remove one of them",
            );
            return;
        }
        self.refs
            .push((Ref::Type(TypeKind::Notification, ty.clone()), loc));
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("notification `{id}`"), file);
        let params = self.params_block(file, &mut r, &ctx);
        let message = r.attr("message").and_then(|a| self.string(file, a, &ctx));
        let on_attr = r.attr("on");
        let on = on_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        let jobs_attr = r.attr("jobs");
        let exclude_attr = r.attr("exclude");
        let jobs = jobs_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        let exclude = exclude_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        self.finish_reader(r);
        if let Some(a) = on_attr {
            let l = loc_of(file, a.value.span());
            for o in &on {
                if !["success", "failure", "cancel", "all"].contains(&o.as_str()) {
                    let help = suggest(o, ["success", "failure", "cancel", "all"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "use `success`, `failure`, `cancel` or `all`".into());
                    self.error(
                        Diagnostic::error(format!("unknown outcome `{o}` in `on`"), Some(l))
                            .label("unknown outcome")
                            .help(help),
                    );
                }
            }
            if on.len() > 1 && on.iter().any(|o| o == "all") {
                self.error(
                    Diagnostic::error("`all` cannot be combined with other outcomes", Some(l))
                        .label("`all` plus more")
                        .help("write `on = [\"all\"]` alone"),
                );
            }
        }
        if let (Some(_), Some(e)) = (jobs_attr, exclude_attr) {
            self.error(
                Diagnostic::error(
                    "`jobs` and `exclude` cannot both be set",
                    Some(loc_of(file, e.key.span())),
                )
                .label("second filter")
                .help("keep one: `jobs` lists the jobs to notify for, `exclude` the ones to skip"),
            );
        }
        for (attr, names) in [(jobs_attr, &jobs), (exclude_attr, &exclude)] {
            if let Some(a) = attr {
                let l = loc_of(file, a.value.span());
                if on.is_empty() {
                    self.error(
                        Diagnostic::error(
                            format!("`{}` needs `on`", a.key.as_str()),
                            Some(loc_of(file, a.key.span())),
                        )
                        .label("filter without dispatch")
                        .help("add `on = [\"failure\"]` (or success, cancel, all)"),
                    );
                }
                for n in names {
                    self.refs.push((
                        Ref::Job {
                            name: n.clone(),
                            what: "notification filter",
                        },
                        l,
                    ));
                }
            }
        }
        p.notifications.insert(
            id.clone(),
            Notification {
                id,
                type_name: ty,
                name,
                params,
                message,
                on,
                jobs,
                exclude,
                loc,
            },
        );
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

fn describe(v: &hcl::Value) -> String {
    match v {
        hcl::Value::Null => "null".into(),
        hcl::Value::Bool(b) => format!("the bool `{b}`"),
        hcl::Value::Number(n) => format!("the number `{n}`"),
        hcl::Value::String(s) => format!("the string \"{s}\""),
        hcl::Value::Array(_) => "a list".into(),
        hcl::Value::Object(_) => "a map".into(),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
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

fn line_col_offset(text: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (off + col.saturating_sub(1)).min(text.len());
        }
        off += l.len();
    }
    text.len()
}

fn hex(bytes: &[u8]) -> String {
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
