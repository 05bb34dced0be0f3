//! The job graph of a pipeline, rendered as Mermaid or Graphviz DOT.
//!
//! Resources are drawn as rounded nodes feeding the jobs that get them without `passed`
//! (dashed when `trigger = false`); a `passed` constraint is an edge from the upstream job to the
//! downstream one, labelled with the resource; a `put` is an edge from the job to the resource.

use crate::model::{Pipeline, StepKind};
use std::collections::BTreeSet;
use std::fmt::Write as _;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Edge {
    Feeds {
        resource: String,
        job: String,
        trigger: bool,
    },
    Passed {
        from: String,
        to: String,
        resource: String,
    },
    Puts {
        job: String,
        resource: String,
    },
}

fn edges(p: &Pipeline) -> BTreeSet<Edge> {
    let mut out = BTreeSet::new();
    for job in p.jobs.values() {
        for s in job.all_steps() {
            match &s.kind {
                StepKind::Get(g) if g.passed.is_empty() => {
                    out.insert(Edge::Feeds {
                        resource: g.resource.clone(),
                        job: job.name.clone(),
                        trigger: g.trigger,
                    });
                }
                StepKind::Get(g) => {
                    for up in &g.passed {
                        out.insert(Edge::Passed {
                            from: up.clone(),
                            to: job.name.clone(),
                            resource: g.resource.clone(),
                        });
                    }
                }
                StepKind::Put(pt) => {
                    out.insert(Edge::Puts {
                        job: job.name.clone(),
                        resource: pt.resource.clone(),
                    });
                }
                _ => {}
            }
        }
    }
    out
}

/// Resources that appear on some edge (declared but unused resources are left out of the graph).
fn used_resources(edges: &BTreeSet<Edge>) -> BTreeSet<String> {
    edges
        .iter()
        .filter_map(|e| match e {
            Edge::Feeds { resource, .. } | Edge::Puts { resource, .. } => Some(resource.clone()),
            Edge::Passed { .. } => None,
        })
        .collect()
}

fn id(prefix: &str, name: &str) -> String {
    let mut s = String::from(prefix);
    s.extend(
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    s
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Mermaid flowchart (`graph LR`).
pub fn to_mermaid(p: &Pipeline) -> String {
    let mut out = String::from("graph LR\n");
    let edges = edges(p);
    let used = used_resources(&edges);
    for r in p.resources.keys().filter(|r| used.contains(*r)) {
        let _ = writeln!(
            out,
            "  {}([\"{}\"])",
            id("r_", r),
            quote(r).replace('"', "#quot;")
        );
    }
    for j in p.jobs.keys() {
        let _ = writeln!(
            out,
            "  {}[\"{}\"]",
            id("j_", j),
            quote(j).replace('"', "#quot;")
        );
    }
    for e in edges {
        let _ = match e {
            Edge::Feeds {
                resource,
                job,
                trigger,
            } => writeln!(
                out,
                "  {} {} {}",
                id("r_", &resource),
                if trigger { "-->" } else { "-.->" },
                id("j_", &job)
            ),
            Edge::Passed { from, to, resource } => writeln!(
                out,
                "  {} -->|{}| {}",
                id("j_", &from),
                resource.replace('|', "/"),
                id("j_", &to)
            ),
            Edge::Puts { job, resource } => {
                writeln!(out, "  {} ==> {}", id("j_", &job), id("r_", &resource))
            }
        };
    }
    out
}

/// Graphviz DOT (`digraph pipeline`).
pub fn to_dot(p: &Pipeline) -> String {
    let mut out =
        String::from("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    let edges = edges(p);
    let used = used_resources(&edges);
    for r in p.resources.keys().filter(|r| used.contains(*r)) {
        let _ = writeln!(
            out,
            "  \"r:{}\" [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#eef\"];",
            quote(r),
            quote(r)
        );
    }
    for j in p.jobs.keys() {
        let _ = writeln!(
            out,
            "  \"j:{}\" [label=\"{}\", shape=box];",
            quote(j),
            quote(j)
        );
    }
    for e in edges {
        let _ = match e {
            Edge::Feeds {
                resource,
                job,
                trigger,
            } => writeln!(
                out,
                "  \"r:{}\" -> \"j:{}\"{};",
                quote(&resource),
                quote(&job),
                if trigger { "" } else { " [style=dashed]" }
            ),
            Edge::Passed { from, to, resource } => writeln!(
                out,
                "  \"j:{}\" -> \"j:{}\" [label=\"{}\"];",
                quote(&from),
                quote(&to),
                quote(&resource)
            ),
            Edge::Puts { job, resource } => writeln!(
                out,
                "  \"j:{}\" -> \"r:{}\" [style=bold];",
                quote(&job),
                quote(&resource)
            ),
        };
    }
    out.push_str("}\n");
    out
}
