#![doc = include_str!("../README.md")]

use futures_util::stream::{FuturesUnordered, StreamExt};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Identifies a node of a [`Dag`]; ids are dense and follow insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// Errors building a [`Dag`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DagError {
    /// The edge would close a cycle.
    #[error("an edge from node {from} to node {to} would create a cycle")]
    Cycle {
        /// Edge start.
        from: usize,
        /// Edge end.
        to: usize,
    },
    /// A node id that this DAG did not hand out.
    #[error("node {0} does not exist")]
    NoSuchNode(usize),
}

/// A directed acyclic graph of user values. Edges point from a dependency to its dependent.
#[derive(Debug, Clone, Default)]
pub struct Dag<N> {
    graph: DiGraph<N, ()>,
    always: Vec<bool>,
}

impl<N> Dag<N> {
    /// An empty DAG.
    pub fn new() -> Self {
        Self {
            graph: DiGraph::new(),
            always: Vec::new(),
        }
    }

    /// Adds a node that runs only when every dependency succeeded.
    pub fn add_node(&mut self, node: N) -> NodeId {
        self.always.push(false);
        NodeId(self.graph.add_node(node).index())
    }

    /// Adds an always-run node (`finally` / `ensure`): it runs once its dependencies are done,
    /// whatever they ended as, and even after cancellation or fail-fast.
    pub fn add_always(&mut self, node: N) -> NodeId {
        self.always.push(true);
        NodeId(self.graph.add_node(node).index())
    }

    /// Makes `to` depend on `from`. Refuses edges that would create a cycle.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) -> Result<(), DagError> {
        let n = self.graph.node_count();
        for id in [from, to] {
            if id.0 >= n {
                return Err(DagError::NoSuchNode(id.0));
            }
        }
        let (a, b) = (NodeIndex::new(from.0), NodeIndex::new(to.0));
        if from == to || petgraph::algo::has_path_connecting(&self.graph, b, a, None) {
            return Err(DagError::Cycle {
                from: from.0,
                to: to.0,
            });
        }
        self.graph.update_edge(a, b, ());
        Ok(())
    }

    /// The value of a node.
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.graph.node_weight(NodeIndex::new(id.0))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The direct dependencies of a node, in id order.
    pub fn dependencies(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .graph
            .neighbors_directed(NodeIndex::new(id.0), Direction::Incoming)
            .map(|n| NodeId(n.index()))
            .collect();
        v.sort_unstable();
        v
    }

    /// True for always-run nodes.
    pub fn is_always(&self, id: NodeId) -> bool {
        self.always.get(id.0).copied().unwrap_or(false)
    }
}

/// What a node's function reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node did its work.
    Succeeded,
    /// The node failed, with a reason.
    Failed(String),
}

/// The terminal state of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed.
    Failed {
        /// The node's reason.
        reason: String,
    },
    /// Never ran.
    Skipped {
        /// Why (a failed dependency, fail-fast, cancellation).
        reason: String,
    },
    /// Was running when cancellation (or fail-fast) stopped it.
    Cancelled,
}

impl NodeState {
    /// True only for [`NodeState::Succeeded`].
    pub fn is_success(&self) -> bool {
        matches!(self, NodeState::Succeeded)
    }
}

/// An event of a run. `at` is the time since the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// All dependencies are done; the node waits for a free slot.
    Ready {
        /// The node.
        node: NodeId,
        /// When.
        at: Duration,
    },
    /// The node's function was called.
    Started {
        /// The node.
        node: NodeId,
        /// When.
        at: Duration,
    },
    /// The node reached its terminal state.
    Finished {
        /// The node.
        node: NodeId,
        /// Its state.
        state: NodeState,
        /// When.
        at: Duration,
        /// How long it ran (zero for skipped nodes).
        duration: Duration,
    },
}

/// The result of a run: every node's terminal state and run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    states: Vec<NodeState>,
    durations: Vec<Duration>,
    /// True when the run was cancelled through its token.
    pub cancelled: bool,
}

impl Report {
    /// A node's terminal state.
    ///
    /// # Panics
    /// If `id` is not a node of the DAG that was run.
    pub fn state(&self, id: NodeId) -> &NodeState {
        &self.states[id.0]
    }

    /// A node's run time (zero if it never ran).
    pub fn duration(&self, id: NodeId) -> Duration {
        self.durations.get(id.0).copied().unwrap_or_default()
    }

    /// Every node's state, by id.
    pub fn states(&self) -> &[NodeState] {
        &self.states
    }

    /// True when every node succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.states.iter().all(NodeState::is_success)
    }
}

type Listener<'a> = Box<dyn FnMut(&Event) + Send + 'a>;

/// Runs a [`Dag`]. Configure with the builder methods, then call [`Executor::run`].
pub struct Executor<'a, N> {
    dag: &'a Dag<N>,
    limit: usize,
    fail_fast: bool,
    cancel: CancellationToken,
    listener: Option<Listener<'a>>,
}

impl<N> std::fmt::Debug for Executor<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("nodes", &self.dag.len())
            .field("limit", &self.limit)
            .field("fail_fast", &self.fail_fast)
            .finish_non_exhaustive()
    }
}

impl<'a, N> Executor<'a, N> {
    /// An executor for `dag`: unlimited concurrency, run-what-can, never cancelled.
    pub fn new(dag: &'a Dag<N>) -> Self {
        Self {
            dag,
            limit: 0,
            fail_fast: false,
            cancel: CancellationToken::new(),
            listener: None,
        }
    }

    /// At most `limit` nodes run at once (0 = unlimited).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// On the first failure, cancel running nodes and skip the rest (always-run nodes still run).
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// Cancelling this token cancels running nodes and skips the rest (always-run nodes still
    /// run, with a fresh token).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Receives every [`Event`] as it happens.
    pub fn on_event(mut self, f: impl FnMut(&Event) + Send + 'a) -> Self {
        self.listener = Some(Box::new(f));
        self
    }

    /// Runs the DAG. `f` is called once per node that runs, with a token that is cancelled when
    /// the node should stop; the node should then return promptly.
    pub async fn run<F, Fut>(mut self, f: F) -> Report
    where
        F: Fn(NodeId, &'a N, CancellationToken) -> Fut,
        Fut: Future<Output = Outcome> + 'a,
    {
        let dag = self.dag;
        let n = dag.len();
        let mut run = RunState {
            start: Instant::now(),
            states: vec![None; n],
            durations: vec![Duration::ZERO; n],
            waiting: (0..n).map(|i| dag.dependencies(NodeId(i)).len()).collect(),
            runnable: BTreeSet::new(),
            finished: VecDeque::new(),
            halted: None,
            listener: self.listener.take(),
        };
        // Cancelled by fail-fast or by the outside token; always-run nodes never get it.
        let stop = self.cancel.child_token();
        let mut running = FuturesUnordered::new();
        let mut started_at: Vec<Option<Instant>> = vec![None; n];
        let mut cancelled = false;
        let mut done = 0usize;

        for i in 0..n {
            if run.waiting[i] == 0 {
                run.make_ready(dag, i);
            }
        }

        loop {
            if !cancelled && self.cancel.is_cancelled() {
                cancelled = true;
                run.halt(dag, "the run was cancelled");
            }
            // Record finished nodes; their dependents may become ready (or be skipped at once).
            while let Some((i, state)) = run.finished.pop_front() {
                run.emit(Event::Finished {
                    node: NodeId(i),
                    state: state.clone(),
                    at: run.start.elapsed(),
                    duration: run.durations[i],
                });
                run.states[i] = Some(state);
                done += 1;
                let mut dependents: Vec<usize> = dag
                    .graph
                    .neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
                    .map(|x| x.index())
                    .collect();
                dependents.sort_unstable();
                dependents.dedup();
                for d in dependents {
                    run.waiting[d] -= 1;
                    if run.waiting[d] == 0 {
                        run.make_ready(dag, d);
                    }
                }
            }
            if done == n {
                break;
            }
            // Start runnable nodes in id order while there are free slots.
            while self.limit == 0 || running.len() < self.limit {
                let Some(i) = run.runnable.pop_first() else {
                    break;
                };
                let id = NodeId(i);
                let Some(node) = dag.node(id) else { continue };
                let token = if dag.is_always(id) {
                    CancellationToken::new()
                } else {
                    stop.child_token()
                };
                started_at[i] = Some(Instant::now());
                run.emit(Event::Started {
                    node: id,
                    at: run.start.elapsed(),
                });
                let fut = f(id, node, token.clone());
                running.push(async move { (i, token, fut.await) });
            }
            if running.is_empty() {
                if run.finished.is_empty() && run.runnable.is_empty() {
                    // Unreachable for a DAG built through `add_edge`; never spin.
                    break;
                }
                continue;
            }
            let next = tokio::select! {
                biased;
                r = running.next() => r,
                _ = self.cancel.cancelled(), if !cancelled => None,
            };
            let Some((i, token, outcome)) = next else {
                cancelled = true;
                run.halt(dag, "the run was cancelled");
                continue;
            };
            if let Some(t) = started_at[i] {
                run.durations[i] = t.elapsed();
            }
            let state = match outcome {
                Outcome::Succeeded => NodeState::Succeeded,
                Outcome::Failed(_) if token.is_cancelled() => NodeState::Cancelled,
                Outcome::Failed(reason) => NodeState::Failed { reason },
            };
            if matches!(state, NodeState::Failed { .. }) && self.fail_fast && run.halted.is_none() {
                run.halt(dag, &format!("fail-fast: node {i} failed"));
                stop.cancel();
            }
            run.finished.push_back((i, state));
        }

        Report {
            states: run
                .states
                .into_iter()
                .map(|s| {
                    s.unwrap_or(NodeState::Skipped {
                        reason: "not reached".into(),
                    })
                })
                .collect(),
            durations: run.durations,
            cancelled,
        }
    }
}

/// Book-keeping of one run.
struct RunState<'a> {
    start: Instant,
    states: Vec<Option<NodeState>>,
    durations: Vec<Duration>,
    /// Unfinished dependencies per node.
    waiting: Vec<usize>,
    /// Ready to start, in id order (the deterministic tie-break).
    runnable: BTreeSet<usize>,
    /// Terminal states not yet recorded.
    finished: VecDeque<(usize, NodeState)>,
    /// Why nodes that have not started are being skipped (fail-fast or cancellation).
    halted: Option<String>,
    listener: Option<Listener<'a>>,
}

impl RunState<'_> {
    fn emit(&mut self, e: Event) {
        if let Some(l) = self.listener.as_mut() {
            l(&e);
        }
    }

    /// All dependencies of `i` are done: it becomes runnable, or is skipped with a reason.
    fn make_ready<N>(&mut self, dag: &Dag<N>, i: usize) {
        let id = NodeId(i);
        self.emit(Event::Ready {
            node: id,
            at: self.start.elapsed(),
        });
        if dag.is_always(id) {
            self.runnable.insert(i);
            return;
        }
        let reason = self.halted.clone().or_else(|| {
            dag.dependencies(id)
                .into_iter()
                .find_map(|d| match &self.states[d.0] {
                    Some(NodeState::Succeeded) => None,
                    Some(NodeState::Failed { .. }) => Some(format!("dependency {} failed", d.0)),
                    Some(NodeState::Cancelled) => Some(format!("dependency {} was cancelled", d.0)),
                    _ => Some(format!("dependency {} was skipped", d.0)),
                })
        });
        match reason {
            Some(reason) => self.finished.push_back((i, NodeState::Skipped { reason })),
            None => {
                self.runnable.insert(i);
            }
        }
    }

    /// Stops starting new work: every runnable node except always-run ones is skipped.
    fn halt<N>(&mut self, dag: &Dag<N>, reason: &str) {
        if self.halted.is_some() {
            return;
        }
        self.halted = Some(reason.to_owned());
        let skipped: Vec<usize> = self
            .runnable
            .iter()
            .copied()
            .filter(|&i| !dag.is_always(NodeId(i)))
            .collect();
        for i in skipped {
            self.runnable.remove(&i);
            self.finished.push_back((
                i,
                NodeState::Skipped {
                    reason: reason.to_owned(),
                },
            ));
        }
    }
}
