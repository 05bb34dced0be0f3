//! Steps and hooks: the step kinds, `in_parallel`, `if` branches and the hook blocks of steps
//! and jobs.

use crate::condition::Condition;
use crate::diag::{Diagnostic, FileId, Loc, suggest};
use crate::jobs::{HOOKS, STEP_KEYWORDS, Scope};
use crate::load::{Loader, Reader, Ref, header_loc, is_ident, loc_of, to_json};
use crate::model::*;
use hcl::eval::Context;
use hcl_edit::Span;
use hcl_edit::structure::Block;
use indexmap::IndexMap;
use pipewright_core::Version;

impl Loader<'_> {
    /// Parses a list of step blocks in order, joining `if`/`else_if`/`else` chains.
    pub(crate) fn steps(
        &mut self,
        file: FileId,
        blocks: &[&Block],
        ctx: &Context<'_>,
        scope: Scope,
    ) -> Vec<Step> {
        let mut out: Vec<Step> = Vec::new();
        // Whether the previous block was part of an open if-chain (and not yet closed by `else`).
        let mut chain_open = false;
        for b in blocks {
            let kw = b.ident.as_str();
            match kw {
                "else_if" | "else" => {
                    let last_if = out.last_mut().filter(|_| chain_open);
                    let Some(Step {
                        kind: StepKind::If(chain),
                        ..
                    }) = last_if
                    else {
                        self.error(
                            Diagnostic::error(
                                format!("`{kw}` must directly follow an `if` or `else_if` block"),
                                Some(header_loc(file, b)),
                            )
                            .label("no `if` before this")
                            .help("start the chain with `if \"label\" { condition = \"…\" … }`"),
                        );
                        continue;
                    };
                    let mut chain = chain.clone();
                    if kw == "else" {
                        self.labels(file, b, &[], "else { task \"…\" { … } }");
                        let mut r = Reader::new(&b.body, "an `else` block", file);
                        let inner = r.blocks_of(&STEP_KEYWORDS);
                        let steps = self.steps(file, &inner, ctx, Scope::Branch);
                        self.finish_reader(r);
                        chain.else_steps = Some(steps);
                        chain_open = false;
                    } else if let Some(br) = self.branch(file, b, ctx) {
                        chain.branches.push(br);
                    }
                    if let Some(Step {
                        kind: StepKind::If(c),
                        ..
                    }) = out.last_mut()
                    {
                        *c = chain;
                    }
                }
                _ => {
                    if kw == "in_parallel" && scope == Scope::Parallel {
                        self.error(
                            Diagnostic::error(
                                "`in_parallel` cannot be nested",
                                Some(header_loc(file, b)),
                            )
                            .label("nested in_parallel")
                            .help("move these steps into the outer `in_parallel`"),
                        );
                        continue;
                    }
                    if kw == "service" && scope != Scope::Job && scope != Scope::Branch {
                        self.error(
                            Diagnostic::error(
                                "a `service` step must be at the top of a job (or in an if branch)",
                                Some(header_loc(file, b)),
                            )
                            .label("service not allowed here")
                            .help(
                                "start the service before the `in_parallel` or hook that needs it",
                            ),
                        );
                        continue;
                    }
                    if (kw == "in_parallel" || kw == "if") && scope == Scope::Hook {
                        self.error(
                            Diagnostic::error(
                                format!("`{kw}` is not allowed inside a hook"),
                                Some(header_loc(file, b)),
                            )
                            .label("not allowed in hooks")
                            .help("hooks hold `get`, `task`, `put` and `notify` steps"),
                        );
                        continue;
                    }
                    chain_open = kw == "if";
                    if let Some(s) = self.step(file, b, ctx, scope) {
                        out.push(s);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn branch(&mut self, file: FileId, b: &Block, ctx: &Context<'_>) -> Option<Branch> {
        let kw = b.ident.as_str();
        let l = self.labels(
            file,
            b,
            &["label"],
            &format!("{kw} \"main-branch\" {{ condition = \"$BRANCH == 'main'\" … }}"),
        )?;
        let label = l[0].to_owned();
        let mut r = Reader::new(&b.body, format!("`{kw} \"{label}\"`"), file);
        let cond_attr = r.attr("condition");
        let inner = r.blocks_of(&STEP_KEYWORDS);
        let steps = self.steps(file, &inner, ctx, Scope::Branch);
        self.finish_reader(r);
        let Some(a) = cond_attr else {
            self.error(
                Diagnostic::error(
                    format!("`{kw} \"{label}\"` has no `condition`"),
                    Some(header_loc(file, b)),
                )
                .label("missing `condition`")
                .help("add `condition = \"$TASK_TEST_RESULT == 'ok'\"`"),
            );
            return None;
        };
        let text = self.string(file, a, ctx)?;
        match Condition::parse(&text) {
            Ok(condition) => Some(Branch {
                label,
                condition_text: text,
                condition,
                steps,
            }),
            Err(e) => {
                // Point into the string literal when the offsets line up with the source.
                let span = a.value.span().unwrap_or(0..0);
                let exact = self
                    .sources
                    .text(file)
                    .get(span.clone())
                    .is_some_and(|s| s == format!("\"{text}\""));
                let loc = if exact {
                    let at = span.start + 1 + e.offset;
                    Loc::new(file, at..(at + 1).min(span.end - 1).max(at))
                } else {
                    loc_of(file, Some(span))
                };
                self.error(
                    Diagnostic::error(format!("invalid condition: {}", e.message), Some(loc))
                        .label("here")
                        .help("conditions compare values with ==, !=, >, <, contains, !contains, joined by && and ||; quote strings with '…'"),
                );
                None
            }
        }
    }

    pub(crate) fn step(
        &mut self,
        file: FileId,
        b: &Block,
        ctx: &Context<'_>,
        scope: Scope,
    ) -> Option<Step> {
        let kw = b.ident.as_str();
        let loc = header_loc(file, b);
        let (name, kind_labels) = match kw {
            "get" | "put" | "notify" => {
                let example = match kw {
                    "notify" => "notify \"slack\" \"team\" { message = \"…\" }".to_owned(),
                    _ => format!("{kw} \"git\" \"app\" {{ … }}"),
                };
                let l = self.labels(file, b, &["type", "name"], &example)?;
                (l[1].to_owned(), vec![l[0].to_owned(), l[1].to_owned()])
            }
            "task" => {
                let l = self.labels(
                    file,
                    b,
                    &["name"],
                    "task \"unit-tests\" { run \"shell\" { cmd = \"make test\" } }",
                )?;
                (l[0].to_owned(), vec![])
            }
            "service" => {
                let l = self.labels(
                    file,
                    b,
                    &["service type"],
                    "service \"postgres\" { port = \"5432\" }",
                )?;
                (l[0].to_owned(), vec![l[0].to_owned()])
            }
            "if" => {
                let br = self.branch(file, b, ctx)?;
                return Some(Step {
                    name: br.label.clone(),
                    kind: StepKind::If(IfChain {
                        branches: vec![br],
                        else_steps: None,
                    }),
                    timeout: None,
                    attempts: 1,
                    hooks: Hooks::default(),
                    loc,
                });
            }
            _ => {
                self.labels(file, b, &[], "in_parallel { limit = 2 … }")?;
                ("in_parallel".to_owned(), vec![])
            }
        };
        let mut r = Reader::new(&b.body, format!("{kw} step `{name}`"), file);
        let timeout = r.attr("timeout").and_then(|a| self.duration(file, a, ctx));
        let attempts = r
            .attr("attempts")
            .and_then(|a| self.uint(file, a, ctx, 1))
            .unwrap_or(1);
        let hooks = if scope == Scope::Hook {
            Hooks::default()
        } else {
            self.hooks(file, &mut r, ctx)
        };
        let kind = match kw {
            "get" => {
                let id = format!("{}.{}", kind_labels[0], kind_labels[1]);
                self.refs.push((
                    Ref::Resource {
                        id: id.clone(),
                        op: "get",
                    },
                    loc,
                ));
                let trigger = r
                    .attr("trigger")
                    .and_then(|a| self.boolean(file, a, ctx))
                    .unwrap_or(false);
                let passed_attr = r.attr("passed");
                let passed = passed_attr
                    .and_then(|a| self.string_list(file, a, ctx))
                    .unwrap_or_default();
                if let Some(a) = passed_attr {
                    for j in &passed {
                        self.refs.push((
                            Ref::Job {
                                name: j.clone(),
                                what: "passed",
                            },
                            loc_of(file, a.value.span()),
                        ));
                    }
                }
                let version_attr = r.attr("version");
                let version = match version_attr {
                    Some(a) => match self.eval(file, &a.value, ctx) {
                        Some(hcl::Value::String(s)) if s == "latest" => VersionPolicy::Latest,
                        Some(hcl::Value::String(s)) if s == "every" => VersionPolicy::Every,
                        Some(hcl::Value::Object(m)) => {
                            VersionPolicy::Pinned(Version::from_pairs(m.iter().map(|(k, v)| {
                                (k.clone(), crate::funcs::to_str(v).unwrap_or_default())
                            })))
                        }
                        Some(_) => {
                            self.error(
                                Diagnostic::error("`version` must be \"latest\", \"every\" or a map of version fields", Some(loc_of(file, a.value.span())))
                                    .label("invalid version")
                                    .help("e.g. `version = { ref = \"abc123\" }`"),
                            );
                            VersionPolicy::Latest
                        }
                        None => VersionPolicy::Latest,
                    },
                    None => VersionPolicy::Latest,
                };
                if let (VersionPolicy::Pinned(v), Some(a)) = (&version, version_attr) {
                    let loc = loc_of(file, a.value.span());
                    let values: Vec<_> = v
                        .iter()
                        .map(|(k, v)| (k.to_owned(), Some(v.to_owned()), loc))
                        .collect();
                    self.note_option_like(&id, format!("the pinned version of `{id}`"), values);
                }
                let params = self.params_block(file, &mut r, ctx);
                StepKind::Get(GetStep {
                    resource: id,
                    trigger,
                    passed,
                    version,
                    params,
                })
            }
            "put" => {
                let id = format!("{}.{}", kind_labels[0], kind_labels[1]);
                self.refs.push((
                    Ref::Resource {
                        id: id.clone(),
                        op: "put",
                    },
                    loc,
                ));
                let (mut params, mut locs) = self.params_block_located(file, &mut r, ctx);
                let rest = r.rest_attrs();
                self.warn_typos(file, &rest, &["timeout", "attempts", "params"]);
                let (more, more_locs) = self.params_of_located(file, &rest, ctx);
                params.0.extend(more.0);
                locs.extend(more_locs);
                self.note_option_like_params(&id, format!("the put to `{id}`"), &params, &locs);
                self.note_resource_params(&id, true, &locs, loc);
                StepKind::Put(PutStep {
                    resource: id,
                    params,
                })
            }
            "notify" => {
                let id = format!("{}.{}", kind_labels[0], kind_labels[1]);
                self.refs.push((Ref::Notification(id.clone()), loc));
                let message = r.attr("message").and_then(|a| self.string(file, a, ctx));
                let rest = r.rest_attrs();
                self.warn_typos(file, &rest, &["timeout", "attempts", "message"]);
                let (params, locs) = self.params_of_located(file, &rest, ctx);
                self.refs.push((
                    Ref::NotificationParams {
                        type_name: kind_labels[0].to_owned(),
                        what: format!("the notify step of `{id}`"),
                        params: locs,
                        complete: false,
                    },
                    loc,
                ));
                StepKind::Notify(NotifyStep {
                    notification: id,
                    message,
                    params,
                })
            }
            "service" => {
                let rest = r.rest_attrs();
                let image = rest
                    .iter()
                    .find(|a| a.key.as_str() == "image")
                    .map(|a| loc_of(file, a.key.span()));
                let (params, locs) = self.params_of_located(file, &rest, ctx);
                self.refs.push((
                    Ref::Service {
                        name: name.clone(),
                        params: locs,
                        image,
                    },
                    loc,
                ));
                StepKind::Service(ServiceStep {
                    service_type: name.clone(),
                    params,
                })
            }
            "task" => {
                let runs = r.blocks("run");
                let inputs = r
                    .attr("inputs")
                    .and_then(|a| self.string_list(file, a, ctx))
                    .unwrap_or_default();
                let outputs = r
                    .attr("outputs")
                    .and_then(|a| {
                        let list = self.string_list(file, a, ctx)?;
                        self.check_output_globs(file, a, &list);
                        Some(list)
                    })
                    .unwrap_or_default();
                let caches = r
                    .attr("caches")
                    .and_then(|a| self.string_list(file, a, ctx))
                    .unwrap_or_default();
                let env = match r.attr("env") {
                    Some(a) => match self.eval(file, &a.value, ctx) {
                        Some(hcl::Value::Object(m)) => {
                            let mut env = IndexMap::new();
                            for (k, v) in m {
                                if !is_ident(&k) {
                                    self.error(
                                        Diagnostic::error(
                                            format!(
                                                "`{k}` is not a valid environment variable name"
                                            ),
                                            Some(loc_of(file, a.value.span())),
                                        )
                                        .label("invalid name")
                                        .help(format!("try `{}`", pipewright_core::env_key(&k))),
                                    );
                                }
                                match crate::funcs::to_str(&v) {
                                    Ok(s) => {
                                        env.insert(k, s);
                                    }
                                    Err(_) => self.error(
                                        Diagnostic::error(
                                            format!("env value `{k}` must be a string"),
                                            Some(loc_of(file, a.value.span())),
                                        )
                                        .label("not a string"),
                                    ),
                                }
                            }
                            env
                        }
                        Some(v) => {
                            self.error(
                                Diagnostic::error(
                                    format!(
                                        "`env` must be a map, found {}",
                                        serde_json::to_string(&to_json(&v)).unwrap_or_default()
                                    ),
                                    Some(loc_of(file, a.value.span())),
                                )
                                .label("not a map")
                                .help("write `env = { NAME = \"value\" }`"),
                            );
                            IndexMap::new()
                        }
                        None => IndexMap::new(),
                    },
                    None => IndexMap::new(),
                };
                let run = match runs.as_slice() {
                    [one] => self.command(file, one, ctx, &[]).map(|c| c.0),
                    [] => {
                        self.error(
                            Diagnostic::error(format!("task `{name}` has no `run` block"), Some(loc))
                                .label("nothing to run")
                                .help("add `run \"shell\" { cmd = \"make test\" }` (or `run \"exec\" { path = … }`)"),
                        );
                        None
                    }
                    [_, second, ..] => {
                        self.error(
                            Diagnostic::error(
                                format!("task `{name}` has more than one `run` block"),
                                Some(header_loc(file, second)),
                            )
                            .label("second `run`")
                            .help("split it into two tasks"),
                        );
                        None
                    }
                };
                let run = run?;
                StepKind::Task(TaskStep {
                    run,
                    inputs,
                    outputs,
                    env,
                    caches,
                })
            }
            _ => {
                let limit = r
                    .attr("limit")
                    .and_then(|a| self.uint(file, a, ctx, 0))
                    .unwrap_or(0);
                let fail_fast = r
                    .attr("fail_fast")
                    .and_then(|a| self.boolean(file, a, ctx))
                    .unwrap_or(false);
                let inner = r.blocks_of(&STEP_KEYWORDS);
                let steps = self.steps(file, &inner, ctx, Scope::Parallel);
                StepKind::InParallel(InParallel {
                    limit,
                    fail_fast,
                    steps,
                })
            }
        };
        self.finish_reader(r);
        Some(Step {
            name,
            kind,
            timeout,
            attempts,
            hooks,
            loc,
        })
    }

    /// In blocks whose extra attributes are params, a name one typo away from a real attribute is
    /// almost always that attribute.
    pub(crate) fn warn_typos(
        &mut self,
        file: FileId,
        attrs: &[&hcl_edit::structure::Attribute],
        known: &[&str],
    ) {
        for a in attrs {
            let n = a.key.as_str();
            if let Some(s) = suggest(n, known.iter().copied()) {
                self.error(
                    Diagnostic::warning(
                        format!("`{n}` is passed as a parameter; did you mean `{s}`?"),
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("passed as a param")
                    .help(format!("rename it to `{s}` if that is what you meant")),
                );
            }
        }
    }

    pub(crate) fn hooks(&mut self, file: FileId, r: &mut Reader<'_>, ctx: &Context<'_>) -> Hooks {
        let mut h = Hooks::default();
        for b in r.blocks_of(&HOOKS) {
            let kw = b.ident.as_str();
            let actions = match b.labels.len() {
                1 => self
                    .command(file, b, ctx, &[])
                    .map(|c| vec![HookAction::Command(c.0)])
                    .unwrap_or_default(),
                0 => {
                    let mut hr = Reader::new(&b.body, format!("an `{kw}` hook"), file);
                    let inner = hr.blocks_of(&STEP_KEYWORDS);
                    self.finish_reader(hr);
                    let steps = self.steps(file, &inner, ctx, Scope::Hook);
                    if steps.is_empty() && inner.is_empty() {
                        self.error(
                            Diagnostic::warning(
                                format!("the `{kw}` hook is empty"),
                                Some(header_loc(file, b)),
                            )
                            .label("does nothing")
                            .help(format!(
                                "add steps, or use the command form `{kw} \"exec\" {{ path = … }}`"
                            )),
                        );
                    }
                    steps
                        .into_iter()
                        .map(|s| HookAction::Step(Box::new(s)))
                        .collect()
                }
                _ => {
                    self.labels(
                        file,
                        b,
                        &["runner"],
                        &format!("{kw} \"exec\" {{ path = \"…\" }}"),
                    );
                    vec![]
                }
            };
            let slot = match kw {
                "on_success" => &mut h.on_success,
                "on_failure" => &mut h.on_failure,
                "on_cancel" => &mut h.on_cancel,
                _ => &mut h.ensure,
            };
            slot.extend(actions);
        }
        h
    }
}
