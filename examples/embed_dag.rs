//! The DAG executor used alone, as another tool would embed it: a small build graph with a
//! concurrency limit, one failing node, a `finally` node, and the event stream printed.
//!
//! Run: `cargo run --example embed_dag`

use pipewright::dag::{Dag, Event, Executor, NodeState, Outcome};
use std::time::Duration;

fn main() {
    let mut dag = Dag::new();
    let fetch = dag.add_node("fetch sources");
    let lint = dag.add_node("lint");
    let unit = dag.add_node("unit tests");
    let docs = dag.add_node("docs");
    let package = dag.add_node("package");
    let cleanup = dag.add_always("cleanup");
    for (from, to) in [
        (fetch, lint),
        (fetch, unit),
        (fetch, docs),
        (lint, package),
        (unit, package),
        (package, cleanup),
        (docs, cleanup),
    ] {
        if let Err(e) = dag.add_edge(from, to) {
            eprintln!("bad graph: {e}");
            std::process::exit(2);
        }
    }

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(2);
        }
    };
    let names: Vec<&str> = (0..dag.len())
        .map(|i| *dag.node(pipewright::dag::NodeId(i)).unwrap_or(&"?"))
        .collect();
    let report = rt.block_on(
        Executor::new(&dag)
            .limit(2)
            .on_event(|e| match e {
                Event::Started { node, at } => println!("{:>6.1?}  start   {}", at, names[node.0]),
                Event::Finished {
                    node, state, at, ..
                } => println!("{:>6.1?}  {:<7} {}", at, label(state), names[node.0]),
                Event::Ready { .. } => {}
            })
            .run(|_, name, cancel| async move {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = cancel.cancelled() => return Outcome::Failed("cancelled".into()),
                }
                if *name == "unit tests" {
                    Outcome::Failed("2 tests failed".into())
                } else {
                    Outcome::Succeeded
                }
            }),
    );

    println!();
    for (i, state) in report.states().iter().enumerate() {
        let why = match state {
            NodeState::Failed { reason } | NodeState::Skipped { reason } => format!(" ({reason})"),
            _ => String::new(),
        };
        println!("{:<14} {}{why}", names[i], label(state));
    }
    // The example checks itself, so CI notices if the executor's behaviour changes.
    assert!(matches!(report.state(package), NodeState::Skipped { .. }));
    assert_eq!(report.state(cleanup), &NodeState::Succeeded);
    assert_eq!(report.state(docs), &NodeState::Succeeded);
}

fn label(s: &NodeState) -> &'static str {
    match s {
        NodeState::Succeeded => "ok",
        NodeState::Failed { .. } => "failed",
        NodeState::Skipped { .. } => "skipped",
        NodeState::Cancelled => "cancelled",
    }
}
