//! Property tests of the executor's invariants on random DAGs with random outcomes.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use pipewright_dag::{Dag, Event, Executor, NodeId, NodeState, Outcome};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Spec {
    n: usize,
    edges: Vec<(usize, usize)>,
    fails: Vec<bool>,
    always: Vec<bool>,
    yields: Vec<u8>,
    limit: usize,
    fail_fast: bool,
    cancel_after: Option<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..24).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec((0..n, 0..n), 0..n * 2),
            proptest::collection::vec(proptest::bool::weighted(0.15), n),
            proptest::collection::vec(proptest::bool::weighted(0.1), n),
            proptest::collection::vec(0u8..5, n),
            0usize..4,
            any::<bool>(),
            proptest::option::weighted(0.2, 0..n),
        )
            .prop_map(
                |(n, raw, fails, always, yields, limit, fail_fast, cancel_after)| Spec {
                    n,
                    // Only forward edges: always acyclic.
                    edges: raw.into_iter().filter(|(a, b)| a < b).collect(),
                    fails,
                    always,
                    yields,
                    limit,
                    fail_fast,
                    cancel_after,
                },
            )
    })
}

fn run(spec: &Spec) -> (Dag<usize>, pipewright_dag::Report, Vec<Event>, usize) {
    let mut dag = Dag::new();
    for i in 0..spec.n {
        if spec.always[i] {
            dag.add_always(i);
        } else {
            dag.add_node(i);
        }
    }
    for (a, b) in &spec.edges {
        dag.add_edge(NodeId(*a), NodeId(*b)).unwrap();
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let token = CancellationToken::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = {
        let ev = events.clone();
        let exec = Executor::new(&dag)
            .limit(spec.limit)
            .fail_fast(spec.fail_fast)
            .cancel_token(token.clone())
            .on_event(move |e| ev.lock().unwrap().push(e.clone()));
        let spec = spec.clone();
        let (running, max_running, started, token) = (
            running.clone(),
            max_running.clone(),
            started.clone(),
            token.clone(),
        );
        rt.block_on(exec.run(move |id, _node, cancel| {
            let (running, max_running, started, token) = (
                running.clone(),
                max_running.clone(),
                started.clone(),
                token.clone(),
            );
            let fails = spec.fails[id.0];
            let yields = spec.yields[id.0];
            let cancel_after = spec.cancel_after;
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_running.fetch_max(now, Ordering::SeqCst);
                let k = started.fetch_add(1, Ordering::SeqCst);
                if cancel_after == Some(k) {
                    token.cancel();
                }
                for _ in 0..yields {
                    if cancel.is_cancelled() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
                if cancel.is_cancelled() || fails {
                    Outcome::Failed("boom".into())
                } else {
                    Outcome::Succeeded
                }
            }
        }))
    };
    let events = events.lock().unwrap().clone();
    (dag, report, events, max_running.load(Ordering::SeqCst))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants(spec in spec()) {
        let (dag, report, events, max_running) = run(&spec);

        // The limit is never exceeded.
        if spec.limit > 0 {
            prop_assert!(max_running <= spec.limit, "{max_running} > {}", spec.limit);
        }

        // Every node ends in exactly one terminal state, reported by exactly one Finished event.
        for i in 0..spec.n {
            let finished = events.iter().filter(|e| matches!(e, Event::Finished { node, .. } if node.0 == i)).count();
            prop_assert_eq!(finished, 1, "node {} finished {} times", i, finished);
        }

        // No node starts before its dependencies finish.
        let pos = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred);
        for i in 0..spec.n {
            if let Some(s) = pos(&|e| matches!(e, Event::Started { node, .. } if node.0 == i)) {
                for d in dag.dependencies(NodeId(i)) {
                    let f = pos(&|e| matches!(e, Event::Finished { node, .. } if *node == d));
                    prop_assert!(f.is_some_and(|f| f < s), "node {} started before dependency {} finished", i, d.0);
                }
            }
        }

        // A node that ran non-always had only succeeded dependencies; a skipped one has a reason.
        for i in 0..spec.n {
            let id = NodeId(i);
            match report.state(id) {
                NodeState::Succeeded | NodeState::Failed { .. } if !dag.is_always(id) => {
                    for d in dag.dependencies(id) {
                        prop_assert!(report.state(d).is_success(), "node {} ran after dependency {} ended {:?}", i, d.0, report.state(d));
                    }
                }
                NodeState::Skipped { reason } => prop_assert!(!reason.is_empty()),
                _ => {}
            }
            // Always-run nodes always run.
            if dag.is_always(id) {
                prop_assert!(!matches!(report.state(id), NodeState::Skipped { .. }), "always node {} skipped", i);
            }
        }

        // Run-what-can without cancellation: a node is skipped only when some dependency did not succeed.
        if !spec.fail_fast && spec.cancel_after.is_none() {
            for i in 0..spec.n {
                if let NodeState::Skipped { .. } = report.state(NodeId(i)) {
                    prop_assert!(dag.dependencies(NodeId(i)).iter().any(|d| !report.state(*d).is_success()));
                }
            }
        }
    }
}

#[test]
fn ties_break_by_insertion_order() {
    let mut dag = Dag::new();
    for i in 0..6 {
        dag.add_node(i);
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let o = order.clone();
    let report = rt.block_on(Executor::new(&dag).limit(1).run(move |id, _, _| {
        o.lock().unwrap().push(id.0);
        async { Outcome::Succeeded }
    }));
    assert!(report.all_succeeded());
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn fail_fast_cancels_running_and_skips_the_rest() {
    let mut dag = Dag::new();
    let slow = dag.add_node("slow");
    let bad = dag.add_node("bad");
    let later = dag.add_node("later");
    let ensure = dag.add_always("ensure");
    dag.add_edge(bad, later).unwrap();
    dag.add_edge(slow, ensure).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = rt.block_on(Executor::new(&dag).fail_fast(true).run(
        |_, name, cancel| async move {
            match *name {
                "slow" => {
                    cancel.cancelled().await;
                    Outcome::Failed("stopped".into())
                }
                "bad" => Outcome::Failed("exit 1".into()),
                _ => Outcome::Succeeded,
            }
        },
    ));
    assert_eq!(report.state(slow), &NodeState::Cancelled);
    assert_eq!(
        report.state(bad),
        &NodeState::Failed {
            reason: "exit 1".into()
        }
    );
    assert!(
        matches!(report.state(later), NodeState::Skipped { reason } if reason.contains("fail-fast"))
    );
    assert_eq!(report.state(ensure), &NodeState::Succeeded);
}

#[test]
fn outside_cancellation_stops_running_nodes_and_still_runs_always_nodes() {
    let mut dag = Dag::new();
    let a = dag.add_node("a");
    let b = dag.add_node("b");
    let fin = dag.add_always("finally");
    dag.add_edge(a, b).unwrap();
    dag.add_edge(b, fin).unwrap();
    let token = CancellationToken::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let t = token.clone();
    let report = rt.block_on(Executor::new(&dag).cancel_token(token.clone()).run(
        move |_, name, cancel| {
            let t = t.clone();
            async move {
                if *name == "a" {
                    t.cancel();
                    cancel.cancelled().await;
                    return Outcome::Failed("interrupted".into());
                }
                Outcome::Succeeded
            }
        },
    ));
    assert!(report.cancelled);
    assert_eq!(report.state(a), &NodeState::Cancelled);
    assert!(matches!(report.state(b), NodeState::Skipped { .. }));
    assert_eq!(report.state(fin), &NodeState::Succeeded);
}

#[test]
fn cycles_are_refused() {
    let mut dag = Dag::new();
    let a = dag.add_node(());
    let b = dag.add_node(());
    dag.add_edge(a, b).unwrap();
    assert!(dag.add_edge(b, a).is_err());
    assert!(dag.add_edge(a, a).is_err());
    assert!(dag.add_edge(a, NodeId(9)).is_err());
}
