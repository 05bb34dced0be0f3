//! Jobs: the `job` block, its inputs and approval gate (steps and hooks are in `steps.rs`).

use crate::diag::{Diagnostic, FileId, Loc};
use crate::load::{Loader, Reader, Ref, header_loc, is_ident, loc_of, slugify};
use crate::model::*;
use hcl::eval::Context;
use hcl_edit::Span;
use hcl_edit::structure::{Block, Structure};

pub(crate) const STEP_KEYWORDS: [&str; 9] = [
    "get",
    "task",
    "put",
    "notify",
    "service",
    "in_parallel",
    "if",
    "else_if",
    "else",
];
pub(crate) const HOOKS: [&str; 4] = ["on_success", "on_failure", "on_cancel", "ensure"];

/// Where a list of steps sits, which decides what it may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Job,
    Branch,
    Parallel,
    Hook,
}

impl Loader<'_> {
    pub(crate) fn job_block(&mut self, file: FileId, b: &Block, p: &mut Pipeline) {
        let Some(labels) = self.labels(file, b, &["name"], "job \"test\" { task \"unit\" { … } }")
        else {
            return;
        };
        let group = labels[0].to_owned();
        let loc = header_loc(file, b);
        let base = self.base.clone();
        let for_each = b.body.iter().find_map(|s| match s {
            Structure::Attribute(a) if a.key.as_str() == "for_each" => Some(a),
            _ => None,
        });
        let matrix = b.body.iter().find_map(|s| match s {
            Structure::Block(m) if m.ident.as_str() == "matrix" => Some(m),
            _ => None,
        });
        let mut instances: Vec<(String, hcl::Value)> = Vec::new();
        let expanded = for_each.is_some() || matrix.is_some();
        if let (Some(_), Some(m)) = (for_each, matrix) {
            self.error(
                Diagnostic::error(
                    format!("job `{group}` has both `for_each` and `matrix`"),
                    Some(header_loc(file, m)),
                )
                .label("second expansion")
                .help("use one: `matrix` is shorthand for a `for_each` over every combination"),
            );
            return;
        }
        if let Some(a) = for_each {
            let Some(v) = self.eval(file, &a.value, &base) else {
                return;
            };
            match v {
                hcl::Value::Object(m) => instances.extend(m),
                hcl::Value::Array(items) => {
                    for it in items {
                        match crate::funcs::to_str(&it) {
                            Ok(s) if !instances.iter().any(|(k, _)| k == &s) => {
                                instances.push((s.clone(), hcl::Value::String(s)))
                            }
                            Ok(s) => {
                                self.error(
                                    Diagnostic::error(
                                        format!("`for_each` lists `{s}` twice"),
                                        Some(loc_of(file, a.value.span())),
                                    )
                                    .label("duplicate key")
                                    .help("wrap the list in `toset(…)` to drop duplicates"),
                                );
                            }
                            Err(_) => {
                                self.error(
                                    Diagnostic::error("`for_each` must be a set of strings or a map", Some(loc_of(file, a.value.span())))
                                        .label("not strings")
                                        .help("write `for_each = toset([\"a\", \"b\"])` or a map `{ key = value }`"),
                                );
                                return;
                            }
                        }
                    }
                }
                _ => {
                    self.error(
                        Diagnostic::error(
                            "`for_each` must be a set of strings or a map",
                            Some(loc_of(file, a.value.span())),
                        )
                        .label("not a set or map")
                        .help(
                            "write `for_each = toset([\"a\", \"b\"])` or a map `{ key = value }`",
                        ),
                    );
                    return;
                }
            }
        }
        if let Some(m) = matrix {
            let Some(found) = self.matrix_instances(file, m, &base) else {
                return;
            };
            instances.extend(found);
        }
        if !expanded {
            if let Some(job) = self.job_body(file, b, &group, None, &base) {
                self.insert_job(job, p);
            }
            return;
        }
        if instances.is_empty() {
            self.error(
                Diagnostic::warning(format!("job `{group}` expands to no jobs"), Some(loc))
                    .label("empty for_each"),
            );
        }
        let mut names = Vec::new();
        for (key, value) in instances {
            let name = format!("{group}--{}", slugify(&key));
            let mut ctx = Context::clone(&base);
            let mut each = hcl::Map::new();
            each.insert("key".to_owned(), hcl::Value::String(key));
            each.insert("value".to_owned(), value);
            ctx.declare_var("each", hcl::Value::Object(each));
            if let Some(job) = self.job_body(file, b, &name, Some(&group), &ctx) {
                names.push(name);
                self.insert_job(job, p);
            }
        }
        if p.jobs.contains_key(&group) || p.groups.contains_key(&group) {
            self.error(
                Diagnostic::error(
                    format!("job group `{group}` collides with a job or group of the same name"),
                    Some(loc),
                )
                .label("name taken"),
            );
        }
        p.groups.insert(group, names);
    }

    fn insert_job(&mut self, job: Job, p: &mut Pipeline) {
        if let Some(first) = p.jobs.get(&job.name) {
            let first = first.loc;
            self.declared_twice(
                format!("job `{}`", job.name),
                job.loc,
                first,
                "rename one of them (for_each instances are named `<job>--<key>`)",
            );
            return;
        }
        p.jobs.insert(job.name.clone(), job);
    }

    fn job_body(
        &mut self,
        file: FileId,
        b: &Block,
        name: &str,
        group: Option<&str>,
        ctx: &Context<'_>,
    ) -> Option<Job> {
        let loc = header_loc(file, b);
        let mut r = Reader::new(&b.body, format!("job `{}`", group.unwrap_or(name)), file);
        r.attr("for_each");
        r.blocks("matrix");
        let concurrency = r
            .attr("concurrency")
            .and_then(|a| self.uint(file, a, ctx, 0))
            .unwrap_or(1);
        let serial_groups = r
            .attr("serial_groups")
            .map(|a| self.slugs(file, a, ctx))
            .unwrap_or_default();
        let timeout = r.attr("timeout").and_then(|a| self.duration(file, a, ctx));
        let tags = r
            .attr("tags")
            .map(|a| self.slugs(file, a, ctx))
            .unwrap_or_default();
        let allow_failure = r
            .attr("allow_failure")
            .and_then(|a| self.boolean(file, a, ctx))
            .unwrap_or(false);
        let interruptible = r
            .attr("interruptible")
            .and_then(|a| self.boolean(file, a, ctx))
            .unwrap_or(false);
        let disable_retry = r
            .attr("disable_retry")
            .and_then(|a| self.boolean(file, a, ctx))
            .unwrap_or(false);
        let inputs = self.job_inputs(file, &mut r, ctx);
        let approve = self.approval(file, &mut r, ctx);
        let container = self.job_container(file, &mut r, ctx);
        let step_blocks = r.blocks_of(&STEP_KEYWORDS);
        let steps = self.steps(file, &step_blocks, ctx, Scope::Job);
        let hooks = self.hooks(file, &mut r, ctx);
        self.finish_reader(r);
        let job = Job {
            name: name.to_owned(),
            group: group.map(str::to_owned),
            concurrency,
            serial_groups,
            timeout,
            tags,
            allow_failure,
            interruptible,
            disable_retry,
            inputs,
            approve,
            container,
            steps,
            hooks,
            loc,
        };
        self.check_step_names(&job);
        for g in job.gets() {
            for up in &g.passed {
                self.refs.push((
                    Ref::Passed {
                        job: job.name.clone(),
                        upstream: up.clone(),
                        resource: g.resource.clone(),
                    },
                    loc,
                ));
            }
        }
        Some(job)
    }

    fn check_step_names(&mut self, job: &Job) {
        // Steps are compared by the name their exports use: `a-b`, `a_b` and `A_B` would all
        // write `TASK_A_B_*` and silently overwrite each other.
        let mut seen: Vec<(&str, String, &str, Loc)> = Vec::new();
        for s in job.all_steps() {
            if s.name.chars().any(char::is_control) {
                self.error(
                    Diagnostic::error(
                        format!("step name {:?} contains a control character", s.name),
                        Some(s.loc),
                    )
                    .label("not allowed in a name")
                    .help("use letters, digits, `-` and `_`"),
                );
                continue;
            }
            let kw = s.kind.keyword();
            if !matches!(kw, "get" | "task") {
                continue;
            }
            let key = pipewright_core::env_key(&s.name).to_uppercase();
            let export = format!("{}_{key}_*", kw.to_uppercase());
            if let Some((_, _, first_name, first)) =
                seen.iter().find(|(k, n, _, _)| *k == kw && *n == key)
            {
                let message = if *first_name == s.name {
                    format!("job `{}` has two `{kw}` steps named `{}`", job.name, s.name)
                } else {
                    format!(
                        "`{kw}` steps `{first_name}` and `{}` of job `{}` would both export `{export}`",
                        s.name, job.name
                    )
                };
                let d = Diagnostic::error(message, Some(s.loc))
                    .label("second step with this name")
                    .related(*first, "first here")
                    .help(format!(
                        "step names must be unique within a job, also after `-`, `.` and case are folded: their exports are `{export}`"
                    ));
                self.error(d);
                continue;
            }
            seen.push((kw, key, &s.name, s.loc));
        }
    }

    fn job_inputs(&mut self, file: FileId, r: &mut Reader<'_>, ctx: &Context<'_>) -> Vec<JobInput> {
        let mut out: Vec<JobInput> = Vec::new();
        let blocks = r.blocks("input");
        if blocks.len() > 20 {
            self.error(
                Diagnostic::error(
                    "a job takes at most 20 inputs",
                    Some(header_loc(file, blocks[20])),
                )
                .label("21st input"),
            );
        }
        for b in blocks {
            let Some(l) = self.labels(
                file,
                b,
                &["name"],
                "input \"environment\" { type = string default = \"staging\" }",
            ) else {
                continue;
            };
            let name = l[0].to_owned();
            let loc = header_loc(file, b);
            if !is_ident(&name) {
                self.error(
                    Diagnostic::error(
                        format!("input name `{name}` is not usable as an environment variable"),
                        Some(loc),
                    )
                    .label("invalid name")
                    .help(format!(
                        "inputs are exported as `INPUT_<name>`; try `{}`",
                        pipewright_core::env_key(&name)
                    )),
                );
            }
            if out.iter().any(|i| i.name == name) {
                self.error(
                    Diagnostic::error(format!("input `{name}` is declared twice"), Some(loc))
                        .label("duplicate"),
                );
                continue;
            }
            let mut ir = Reader::new(&b.body, format!("input `{name}`"), file);
            let ty = match ir.attr("type") {
                Some(a) => {
                    let raw = match &a.value {
                        hcl_edit::expr::Expression::Variable(v) => v.as_str().to_owned(),
                        hcl_edit::expr::Expression::String(s) => s.as_str().to_owned(),
                        _ => String::new(),
                    };
                    match raw.as_str() {
                        "string" => VarType::String,
                        "number" => VarType::Number,
                        "bool" => VarType::Bool,
                        _ => {
                            self.error(
                                Diagnostic::error(
                                    "unsupported input type",
                                    Some(loc_of(file, a.value.span())),
                                )
                                .label("not a type")
                                .help("use `string`, `number` or `bool`"),
                            );
                            VarType::String
                        }
                    }
                }
                None => VarType::String,
            };
            let description = ir
                .attr("description")
                .and_then(|a| self.string(file, a, ctx));
            let options_attr = ir.attr("options");
            let options = options_attr
                .and_then(|a| self.string_list(file, a, ctx))
                .unwrap_or_default();
            let multiple_attr = ir.attr("multiple");
            let multiple = multiple_attr
                .and_then(|a| self.boolean(file, a, ctx))
                .unwrap_or(false);
            let default_attr = ir.attr("default");
            let default = default_attr.and_then(|a| self.json(file, a, ctx));
            self.finish_reader(ir);
            if let Some(a) = options_attr
                && ty != VarType::String
            {
                self.error(
                    Diagnostic::error(
                        "`options` is only allowed on string inputs",
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("not a string input")
                    .help("remove `options` or make the input `type = string`"),
                );
            }
            if let Some(a) = multiple_attr
                && multiple
                && options.is_empty()
            {
                self.error(
                    Diagnostic::error(
                        "`multiple` needs `options` to choose from",
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("nothing to choose")
                    .help("add `options = [\"a\", \"b\"]`"),
                );
            }
            if let (Some(a), Some(d)) = (default_attr, &default) {
                let ok = match crate::load::coerce(d, ty) {
                    Ok(v) => {
                        options.is_empty()
                            || v.as_str().is_some_and(|s| options.iter().any(|o| o == s))
                            || (multiple && d.as_array().is_some())
                    }
                    Err(()) => {
                        multiple
                            && d.as_array().is_some_and(|l| {
                                l.iter().all(|x| {
                                    x.as_str().is_some_and(|s| options.iter().any(|o| o == s))
                                })
                            })
                    }
                };
                if !ok {
                    self.error(
                        Diagnostic::error(
                            format!(
                                "the default of input `{name}` does not match its type or options"
                            ),
                            Some(loc_of(file, a.value.span())),
                        )
                        .label("invalid default")
                        .help(if options.is_empty() {
                            format!("give a {}", ty.as_str())
                        } else {
                            format!("pick one of {}", options.join(", "))
                        }),
                    );
                }
            }
            out.push(JobInput {
                name,
                ty,
                description,
                default,
                options,
                multiple,
            });
        }
        out
    }

    fn approval(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> Option<Approval> {
        let blocks = r.blocks("approve");
        let mut out = None;
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                self.error(
                    Diagnostic::error(
                        "a job has at most one `approve` gate",
                        Some(header_loc(file, b)),
                    )
                    .label("second gate"),
                );
                continue;
            }
            let Some(l) = self.labels(
                file,
                b,
                &["label"],
                "approve \"production\" { approvals = 2 }",
            ) else {
                continue;
            };
            let mut ar = Reader::new(&b.body, format!("approve `{}`", l[0]), file);
            let approvals = ar
                .attr("approvals")
                .and_then(|a| self.uint(file, a, ctx, 1))
                .unwrap_or(1);
            let timeout = ar.attr("timeout").and_then(|a| self.duration(file, a, ctx));
            let mut notify = Vec::new();
            for nb in ar.blocks("notify") {
                if let Some(s) = self.step(file, nb, ctx, Scope::Hook)
                    && let StepKind::Notify(n) = s.kind
                {
                    notify.push(n);
                }
            }
            self.finish_reader(ar);
            out = Some(Approval {
                label: l[0].to_owned(),
                approvals,
                timeout,
                notify,
            });
        }
        out
    }
}
