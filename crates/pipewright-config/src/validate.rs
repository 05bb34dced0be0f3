//! Cross-reference checks run once every declaration is known: undeclared types, resources,
//! runners, notifications and jobs; `passed` constraints that can never hold; `passed` cycles;
//! secret chains.

use crate::catalog::TypeKind;
use crate::diag::{Diagnostic, suggest};
use crate::load::{Loader, Ref};
use crate::model::{Pipeline, StepKind, secret_placeholders};
use std::collections::BTreeMap;

fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    suggest(name, candidates).map(|s| format!("did you mean `{s}`?"))
}

pub(crate) fn did_you_mean_of<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    did_you_mean(name, candidates)
}

pub(crate) fn resolve(l: &mut Loader<'_>, p: &mut Pipeline) {
    let refs = std::mem::take(&mut l.refs);
    let catalog = l.opts.catalog.clone();
    for (r, loc) in refs {
        match r {
            Ref::Type(kind, name) => {
                let declared: Vec<&str> = match kind {
                    TypeKind::Resource => p.resource_types.keys().map(String::as_str).collect(),
                    TypeKind::Runner => p.runner_types.keys().map(String::as_str).collect(),
                    TypeKind::Service => p.service_types.keys().map(String::as_str).collect(),
                    TypeKind::Secret => p.secret_types.keys().map(String::as_str).collect(),
                    TypeKind::Notification => {
                        p.notification_types.keys().map(String::as_str).collect()
                    }
                };
                if declared.contains(&name.as_str()) || catalog.has(kind, &name) {
                    continue;
                }
                let builtins = catalog.names(kind);
                let help = did_you_mean(
                    &name,
                    declared.iter().copied().chain(builtins.iter().copied()),
                )
                .unwrap_or_else(|| format!("declare it: `{} \"{name}\" {{ … }}`", kind.keyword()));
                l.error(
                    Diagnostic::error(format!("unknown {} `{name}`", kind.noun()), Some(loc))
                        .label(format!("no {} named `{name}`", kind.noun()))
                        .help(help),
                );
            }
            Ref::Resource { id, op } => {
                let Some(res) = p.resources.get(&id) else {
                    let help = did_you_mean(&id, p.resources.keys().map(String::as_str))
                        .unwrap_or_else(|| {
                            let (t, n) = id.split_once('.').unwrap_or((&id, ""));
                            format!("declare it: `resource \"{t}\" \"{n}\" {{ … }}`")
                        });
                    l.error(
                        Diagnostic::error(
                            format!("`{op}` of undeclared resource `{id}`"),
                            Some(loc),
                        )
                        .label("no such resource")
                        .help(help),
                    );
                    continue;
                };
                let needs = if op == "get" { "pull" } else { "push" };
                let can = match p.resource_types.get(&res.type_name) {
                    Some(t) if matches!(t.source, crate::model::TypeSource::Builtin { .. }) => {
                        builtin_can(&catalog, &t.name, op)
                    }
                    Some(t)
                        if matches!(
                            t.source,
                            crate::model::TypeSource::Inline
                                | crate::model::TypeSource::File { .. }
                                | crate::model::TypeSource::Url { .. }
                        ) =>
                    {
                        t.commands.contains_key(needs)
                    }
                    Some(_) => true,
                    None => builtin_can(&catalog, &res.type_name, op),
                };
                if !can {
                    l.error(
                        Diagnostic::error(
                            format!(
                                "resource type `{}` cannot {op}: it has no `{needs}` command",
                                res.type_name
                            ),
                            Some(loc),
                        )
                        .label(format!("`{op}` needs `{needs}`"))
                        .related(res.loc, "resource declared here")
                        .help(format!(
                            "add `{needs} \"exec\" {{ … }}` to resource_type `{}`",
                            res.type_name
                        )),
                    );
                }
            }
            Ref::Runner { name, params } => {
                if p.runner_types.get(&name).is_some_and(|r| r.run.is_some()) {
                    continue;
                }
                let declared_builtin = p.runner_types.get(&name).and_then(|r| match &r.source {
                    crate::model::TypeSource::Builtin { name } => Some(name.clone()),
                    _ => None,
                });
                let builtin = declared_builtin.as_deref().unwrap_or(&name);
                let Some(rule) = catalog.runners.get(builtin) else {
                    if p.runner_types.contains_key(&name) {
                        continue;
                    }
                    let names: Vec<&str> = p
                        .runner_types
                        .keys()
                        .map(String::as_str)
                        .chain(catalog.runners.keys().map(String::as_str))
                        .collect();
                    let help = did_you_mean(&name, names.iter().copied()).unwrap_or_else(|| {
                        format!(
                            "built-in runners: {}; or declare `runner_type \"{name}\" {{ run {{ … }} }}`",
                            catalog.runners.keys().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                        )
                    });
                    l.error(
                        Diagnostic::error(format!("unknown runner `{name}`"), Some(loc))
                            .label("no such runner")
                            .help(help),
                    );
                    continue;
                };
                if let Some(known) = &rule.known {
                    for (given, at) in &params {
                        if known.contains(&given.as_str()) {
                            continue;
                        }
                        let help = if given == "env" {
                            "did you mean the task's `env`? Write `env = { … }` in the task block, beside `run`, and every runner passes it on".to_owned()
                        } else {
                            did_you_mean(given, known.iter().copied()).unwrap_or_else(|| {
                                format!(
                                    "the `{builtin}` runner reads {}",
                                    known
                                        .iter()
                                        .map(|k| format!("`{k}`"))
                                        .chain(std::iter::once("`args`".to_owned()))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            })
                        };
                        l.error(
                            Diagnostic::error(
                                format!("the `{name}` runner has no parameter `{given}`"),
                                Some(*at),
                            )
                            .label("not read by this runner")
                            .help(help),
                        );
                    }
                }
                for req in &rule.required {
                    if !params.iter().any(|(p, _)| p == req) {
                        l.error(
                            Diagnostic::error(
                                format!("the `{name}` runner needs `{req}`"),
                                Some(loc),
                            )
                            .label(format!("missing `{req}`"))
                            .help(format!("add `{req} = \"…\"` to this block")),
                        );
                    }
                }
                if !rule.exactly_one_of.is_empty() {
                    let given: Vec<&String> = rule
                        .exactly_one_of
                        .iter()
                        .filter(|o| params.iter().any(|(p, _)| p == *o))
                        .map(|_| &name)
                        .collect();
                    if given.len() != 1 {
                        let opts = rule
                            .exactly_one_of
                            .iter()
                            .map(|o| format!("`{o}`"))
                            .collect::<Vec<_>>()
                            .join(" or ");
                        l.error(
                            Diagnostic::error(
                                format!("the `{name}` runner needs exactly one of {opts}"),
                                Some(loc),
                            )
                            .label(if given.is_empty() {
                                "neither given"
                            } else {
                                "both given"
                            })
                            .help(format!("set exactly one of {opts}")),
                        );
                    }
                }
            }
            Ref::Arguments {
                resource,
                what,
                values,
            } => option_like_arguments(l, p, &catalog, &resource, &what, &values),
            Ref::ResourceParams {
                resource,
                put,
                params,
            } => unknown_resource_params(l, p, &catalog, &resource, put, &params),
            Ref::Service {
                name,
                params,
                image,
            } => crate::services::check_step(l, p, &catalog, &name, &params, image, loc),
            Ref::Notification(id) => {
                if p.notifications.contains_key(&id) {
                    continue;
                }
                let help = did_you_mean(&id, p.notifications.keys().map(String::as_str))
                    .unwrap_or_else(|| {
                        let (t, n) = id.split_once('.').unwrap_or((&id, ""));
                        format!("declare it: `notification \"{t}\" \"{n}\" {{ … }}`")
                    });
                l.error(
                    Diagnostic::error(format!("unknown notification `{id}`"), Some(loc))
                        .label("no such notification")
                        .help(help),
                );
            }
            Ref::NotificationParams {
                type_name,
                what,
                params,
                complete,
            } => notification_params(l, p, &catalog, &type_name, &what, &params, complete, loc),
            Ref::Job { name, what } => {
                if p.jobs.contains_key(&name) || p.groups.contains_key(&name) {
                    continue;
                }
                let help = did_you_mean(
                    &name,
                    p.jobs.keys().chain(p.groups.keys()).map(String::as_str),
                )
                .unwrap_or_else(|| "name a job declared in this pipeline".into());
                l.error(
                    Diagnostic::error(format!("`{what}` names unknown job `{name}`"), Some(loc))
                        .label("no such job")
                        .help(help),
                );
            }
            Ref::Passed {
                job,
                upstream,
                resource,
            } => {
                let ups: Vec<String> = match p.groups.get(&upstream) {
                    Some(members) => members.clone(),
                    None => vec![upstream.clone()],
                };
                for up in ups {
                    let Some(u) = p.jobs.get(&up) else { continue };
                    let touches = u.all_steps().iter().any(|s| match &s.kind {
                        StepKind::Get(g) => g.resource == resource,
                        StepKind::Put(pt) => pt.resource == resource,
                        _ => false,
                    });
                    if !touches {
                        let d = Diagnostic::error(
                            format!("job `{job}` gets `{resource}` passed `{up}`, but `{up}` never gets or puts `{resource}`"),
                            Some(loc),
                        )
                        .label("this constraint can never be met")
                        .related(u.loc, format!("`{up}` declared here"))
                        .help(format!("add `get \"{}\" \"{}\" {{}}` to job `{up}`, or remove it from `passed`", resource.split_once('.').map_or("", |x| x.0), resource.split_once('.').map_or("", |x| x.1)));
                        l.error(d);
                    }
                }
            }
        }
    }
    expand_groups(p);
    passed_cycles(l, p);
}

/// The built-in type behind resource `id` (used directly, or declared with
/// `source = "pipewright://NAME"`); `None` for a command-defined or undeclared type.
fn builtin_of<'p>(p: &'p Pipeline, id: &str) -> Option<&'p str> {
    let res = p.resources.get(id)?;
    match p.resource_types.get(&res.type_name).map(|t| &t.source) {
        Some(crate::model::TypeSource::Builtin { name }) => Some(name.as_str()),
        Some(_) => None,
        None => Some(res.type_name.as_str()),
    }
}

/// The params `resource`'s type reads (in its block, or in a put with `put`) and the type's
/// name; `None` when the type accepts any: a plug-in that declares none, a command-defined
/// type without a `params` list, or any put of a command-defined type (its attributes become
/// `$put_*`).
fn known_params<'p>(
    p: &'p Pipeline,
    catalog: &crate::Catalog,
    resource: &str,
    put: bool,
) -> Option<(Vec<&'p str>, &'p str)> {
    if let Some(builtin) = builtin_of(p, resource) {
        let ops = catalog.resource_types.get(builtin)?;
        let known = if put { ops.put_params } else { ops.params }?;
        return Some((known.to_vec(), builtin));
    }
    let res = p.resources.get(resource)?;
    let decl = p.resource_types.get(&res.type_name)?;
    if put || decl.params.is_empty() {
        return None;
    }
    // `name` is read by the engine for every type: the directory a get fills.
    let mut known: Vec<&str> = decl.params.iter().map(String::as_str).collect();
    known.push("name");
    Some((known, decl.name.as_str()))
}

/// Params a resource's type does not read: a typo (`ignore_path`) would otherwise be dropped
/// silently and the resource behave as if it were not written.
fn unknown_resource_params(
    l: &mut Loader<'_>,
    p: &Pipeline,
    catalog: &crate::Catalog,
    resource: &str,
    put: bool,
    params: &[(String, crate::diag::Loc)],
) {
    let Some((known, builtin)) = known_params(p, catalog, resource, put) else {
        return;
    };
    let what = if put {
        format!("a put to `{resource}`")
    } else {
        format!("resource `{resource}`")
    };
    for (given, at) in params {
        if known.contains(&given.as_str()) {
            continue;
        }
        // A put's own attributes are candidates too: `timout` is a typo of `timeout`.
        let step_attrs: &[&str] = if put { &["timeout", "attempts"] } else { &[] };
        let candidates = known.iter().chain(step_attrs).copied();
        let help = did_you_mean(given, candidates).unwrap_or_else(|| {
            if known.is_empty() {
                format!(
                    "a `{builtin}` {} takes no params",
                    if put { "put" } else { "resource" }
                )
            } else {
                format!(
                    "the `{builtin}` type reads {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        });
        l.error(
            Diagnostic::error(format!("{what} has no parameter `{given}`"), Some(*at))
                .label(format!("not read by the `{builtin}` type"))
                .help(help),
        );
    }
}

/// Values a built-in resource type passes to a command, refused when they start with `-`.
fn option_like_arguments(
    l: &mut Loader<'_>,
    p: &Pipeline,
    catalog: &crate::Catalog,
    resource: &str,
    what: &str,
    values: &[(String, crate::diag::Loc)],
) {
    // An undeclared resource is reported on its own.
    let Some(res) = p.resources.get(resource) else {
        return;
    };
    let builtin = match p.resource_types.get(&res.type_name).map(|t| &t.source) {
        Some(crate::model::TypeSource::Builtin { name }) => name.as_str(),
        Some(_) => return,
        None => res.type_name.as_str(),
    };
    let Some(ops) = catalog.resource_types.get(builtin) else {
        return;
    };
    for (key, loc) in values {
        if !ops.arguments.contains(&key.as_str()) {
            continue;
        }
        l.error(
            Diagnostic::error(format!("`{key}` of {what} starts with `-`"), Some(*loc))
                .label(format!("`{builtin}` would read this as an option"))
                .help(format!(
                    "the `{builtin}` resource passes `{key}` to a command, which would take it for an option (`--upload-pack=…` runs a program); remove the leading `-`"
                )),
        );
    }
}

fn builtin_can(catalog: &crate::Catalog, ty: &str, op: &str) -> bool {
    catalog
        .resource_types
        .get(ty)
        .is_none_or(|ops| if op == "get" { ops.get } else { ops.put })
}

/// Replaces group names in `passed` and notification filters with the group's instances.
fn expand_groups(p: &mut Pipeline) {
    let groups = p.groups.clone();
    let expand = |names: &mut Vec<String>| {
        let mut out = Vec::new();
        for n in names.drain(..) {
            match groups.get(&n) {
                Some(members) if !members.contains(&n) => out.extend(members.iter().cloned()),
                _ => out.push(n),
            }
        }
        out.dedup();
        *names = out;
    };
    for job in p.jobs.values_mut() {
        fn walk(steps: &mut [crate::model::Step], f: &dyn Fn(&mut Vec<String>)) {
            for s in steps {
                match &mut s.kind {
                    StepKind::Get(g) => f(&mut g.passed),
                    StepKind::InParallel(par) => walk(&mut par.steps, f),
                    StepKind::If(c) => {
                        for b in &mut c.branches {
                            walk(&mut b.steps, f);
                        }
                        if let Some(e) = &mut c.else_steps {
                            walk(e, f);
                        }
                    }
                    _ => {}
                }
            }
        }
        walk(&mut job.steps, &expand);
    }
    for n in p.notifications.values_mut() {
        expand(&mut n.jobs);
        expand(&mut n.exclude);
    }
}

/// The job DAG induced by `passed`: an edge upstream → downstream for every constraint.
pub(crate) fn passed_edges(p: &Pipeline) -> Vec<(String, String, String)> {
    let mut edges = Vec::new();
    for job in p.jobs.values() {
        for g in job.gets() {
            for up in &g.passed {
                if p.jobs.contains_key(up) {
                    edges.push((up.clone(), job.name.clone(), g.resource.clone()));
                }
            }
        }
    }
    edges
}

fn passed_cycles(l: &mut Loader<'_>, p: &Pipeline) {
    let mut g = petgraph::graphmap::DiGraphMap::<usize, ()>::new();
    let names: Vec<&String> = p.jobs.keys().collect();
    let index: BTreeMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    for i in 0..names.len() {
        g.add_node(i);
    }
    for (up, down, _) in passed_edges(p) {
        if let (Some(&a), Some(&b)) = (index.get(up.as_str()), index.get(down.as_str())) {
            g.add_edge(a, b, ());
        }
    }
    let mut sccs = petgraph::algo::tarjan_scc(&g);
    sccs.iter_mut().for_each(|c| c.sort_unstable());
    sccs.sort();
    for scc in sccs {
        let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
        if !cyclic {
            continue;
        }
        // Walk one cycle through every member in declaration order where edges allow, so the
        // message reads as a path.
        let path = cycle_path(&g, &scc);
        let chain = path
            .iter()
            .map(|&i| format!("`{}`", names[i]))
            .collect::<Vec<_>>()
            .join(" → ");
        let first = scc[0];
        let job = &p.jobs[names[first]];
        let mut d = Diagnostic::error(format!("`passed` constraints form a cycle: {chain}"), Some(job.loc))
            .label("this job is on the cycle")
            .help("a job cannot (even indirectly) require a version to have passed itself; remove one `passed` entry on the cycle");
        for &i in scc.iter().skip(1) {
            d = d.related(p.jobs[names[i]].loc, "also on the cycle");
        }
        l.error(d);
    }
}

fn cycle_path(g: &petgraph::graphmap::DiGraphMap<usize, ()>, scc: &[usize]) -> Vec<usize> {
    let start = scc[0];
    // Breadth-first search inside the component for the shortest way back to `start`.
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for m in g.neighbors(n) {
            if !scc.contains(&m) {
                continue;
            }
            if m == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev[&cur];
                }
                path.push(start);
                let len = path.len();
                path[1..len - 1].reverse();
                return path;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    scc.to_vec()
}

/// Secret-backed variables whose `path`/`key` use other secret-backed variables: reject cycles
/// and chains deeper than 10.
pub(crate) fn secret_chains(l: &mut Loader<'_>, p: &Pipeline) {
    const MAX_DEPTH: usize = 10;
    let deps = |name: &str| -> Vec<String> {
        p.variables
            .get(name)
            .and_then(|v| {
                v.secret
                    .as_ref()
                    .filter(|_| v.origin == crate::model::VarOrigin::Secret)
            })
            .map(|s| {
                secret_placeholders(&s.path)
                    .into_iter()
                    .chain(secret_placeholders(&s.key))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    for v in p.variables.values() {
        // Depth-first from each variable; report a cycle only from its first member.
        let mut stack = vec![(v.name.clone(), vec![v.name.clone()])];
        while let Some((cur, path)) = stack.pop() {
            for d in deps(&cur) {
                if d == v.name {
                    let mut cycle = path.clone();
                    cycle.push(d);
                    if cycle.iter().min() == Some(&v.name) {
                        l.error(
                            Diagnostic::error(
                                format!("secret variables depend on each other: {}", cycle.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" → ")),
                                Some(v.loc),
                            )
                            .label("on the cycle")
                            .help("a secret's `path` or `key` cannot (even indirectly) use its own value"),
                        );
                    }
                    continue;
                }
                if path.contains(&d) {
                    continue;
                }
                if path.len() >= MAX_DEPTH {
                    l.error(
                        Diagnostic::error(
                            format!("secret chain from `{}` is deeper than {MAX_DEPTH}", v.name),
                            Some(v.loc),
                        )
                        .label("chain too deep"),
                    );
                    return;
                }
                let mut np = path.clone();
                np.push(d.clone());
                stack.push((d, np));
            }
        }
    }
}

/// A built-in notification type's params: unknown ones are errors with a "did you mean", and a
/// notification must set the required ones. A type the pipeline defines itself is left alone.
#[allow(clippy::too_many_arguments)]
fn notification_params(
    l: &mut Loader<'_>,
    p: &Pipeline,
    catalog: &crate::catalog::Catalog,
    type_name: &str,
    what: &str,
    params: &[(String, crate::Loc)],
    complete: bool,
    loc: crate::Loc,
) {
    // `notification_type "chat" { source = "pipewright://slack" }` is the built-in `slack`.
    let builtin = match p.notification_types.get(type_name).map(|t| &t.source) {
        None => type_name,
        Some(crate::model::TypeSource::Builtin { name }) => name.as_str(),
        Some(_) => return,
    };
    let Some(rule) = catalog.notification_types.get(builtin) else {
        return;
    };
    if let Some(known) = &rule.known {
        for (given, at) in params {
            if known.contains(&given.as_str()) {
                continue;
            }
            let help = did_you_mean(given, known.iter().copied()).unwrap_or_else(|| {
                format!(
                    "the `{type_name}` notification type reads {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            l.error(
                Diagnostic::error(
                    format!("the `{type_name}` notification type has no parameter `{given}`"),
                    Some(*at),
                )
                .label(format!("not read by `{type_name}`"))
                .help(help),
            );
        }
    }
    if complete && !rule.exactly_one_of.is_empty() {
        let given: Vec<&str> = rule
            .exactly_one_of
            .iter()
            .copied()
            .filter(|o| params.iter().any(|(n, _)| n == o))
            .collect();
        if given.len() != 1 {
            let opts = rule
                .exactly_one_of
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(" or ");
            l.error(
                Diagnostic::error(format!("{what} needs exactly one of {opts}"), Some(loc))
                    .label(if given.is_empty() {
                        "neither given"
                    } else {
                        "both given"
                    })
                    .help(format!("set exactly one of {opts} in its `params` block")),
            );
        }
    }
    if complete {
        for req in &rule.required {
            if !params.iter().any(|(n, _)| n == req) {
                l.error(
                    Diagnostic::error(format!("{what} needs `{req}`"), Some(loc))
                        .label(format!("missing `{req}`"))
                        .help(format!("add `{req} = \"…\"` to its `params` block")),
                );
            }
        }
    }
}
