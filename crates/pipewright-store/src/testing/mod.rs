//! The conformance suite every [`Store`] backend runs (enabled by the `testing` feature).
//!
//! Each check is an async function taking an `Arc<dyn Store>` and panicking with the rule it
//! found broken; [`run_all`] runs them one after another. Checks name their pipelines, jobs and
//! resources uniquely, so they can share one store (a database that outlives a run) as well
//! as use a fresh one each. Concurrency checks spawn Tokio tasks that make one read, then wait
//! for each other before the calls under test, so the calls overlap even where a pooled
//! backend would otherwise run them one after another as it opens connections: run them on a
//! multi-thread runtime.
//!
//! Builds ([`builds`]):
//! - **numbering**: concurrent creates of one job get the numbers 1..=n, no gap and no
//!   duplicate, and another job of the same pipeline counts from 1 on its own.
//! - **state machine**: `pending → claimed(1) → running → succeeded`, with what each step
//!   records, and every out-of-order call rejected as a conflict.
//! - **approval**: a build needing two approvals waits for two distinct approvers.
//! - **concurrent claims**: of many concurrent claims of one attempt exactly one wins (four
//!   builds at once, twelve claims each).
//! - **fencing**: after a re-queue and a new claim, every write of the old attempt is stale
//!   and changes nothing.
//! - **exactly one terminal**: a second finish is rejected unless it repeats the first; of
//!   concurrent finishes with different statuses exactly one wins.
//! - **re-queue**: a re-queued build is pending at the same attempt and the next claim is
//!   attempt + 1.
//! - **paging**: a job's builds newest first, in pages by `limit` and `before`.
//! - **recovery listing**: builds in given states, oldest first, paged by `after`.
//! - **steps**: step summaries replace by step id and keep their first-recorded order.
//!
//! Events ([`events`]): append is idempotent by (build, seq), within a batch too, and fenced by
//! attempt; reads after a seq page in order; the log text is the log chunks in seq order
//! whatever order the batches came in.
//!
//! Versions ([`versions`]): the [`VersionStore`](crate::VersionStore) queries: latest, pages,
//! find, passed versions after `record_build`, pins.

pub mod builds;
pub mod events;
pub mod versions;

use crate::{Build, BuildId, NewBuild, Store};
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs every check of the suite against `store`, one after another.
pub async fn run_all(store: Arc<dyn Store>) {
    builds::numbering(store.clone()).await;
    builds::state_machine(store.clone()).await;
    builds::approval(store.clone()).await;
    builds::concurrent_claims(store.clone()).await;
    builds::fencing(store.clone()).await;
    builds::exactly_one_terminal(store.clone()).await;
    builds::requeue(store.clone()).await;
    builds::paging(store.clone()).await;
    builds::recovery_listing(store.clone()).await;
    builds::steps(store.clone()).await;
    events::append_idempotent(store.clone()).await;
    events::read_after(store.clone()).await;
    events::log_text(store.clone()).await;
    versions::queries(store.clone()).await;
    versions::passed_and_pins(store).await;
}

fn broke(rule: &str, detail: impl Display) -> ! {
    panic!("store rule `{rule}` broke: {detail}")
}

fn check(rule: &str, holds: bool, detail: impl Display) {
    if !holds {
        broke(rule, detail)
    }
}

fn ok<T, E: Display>(rule: &str, what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| broke(rule, format!("{what} failed: {e}")))
}

/// Lines up `n` concurrent tasks: each calls [`Start::go`] before the call under test, which
/// makes a read (so a pooled backend has connections open, and the calls do not run one after
/// another while it opens them) and waits until every task has.
struct Start {
    barrier: tokio::sync::Barrier,
}

impl Start {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Start {
            barrier: tokio::sync::Barrier::new(n),
        })
    }

    async fn go(&self, store: &dyn Store) {
        // A build that does not exist: any answer will do.
        let _ = store.build(BuildId(u64::MAX / 3)).await;
        self.barrier.wait().await;
    }
}

/// A name no other check (or earlier run against the same database) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn new_build(pipeline: &str, job: &str) -> NewBuild {
    NewBuild {
        pipeline: pipeline.to_owned(),
        job: job.to_owned(),
        trigger: "conformance".to_owned(),
        ..NewBuild::default()
    }
}

/// Creates a build of a fresh pipeline and job.
async fn fresh_build(store: &dyn Store, rule: &str) -> Build {
    let p = unique(rule);
    ok(
        rule,
        "create_build",
        store.create_build(new_build(&p, "job")).await,
    )
}

/// Creates a fresh build and claims it as attempt 1 for `worker`.
async fn claimed_build(store: &dyn Store, rule: &str, worker: &str) -> BuildId {
    let b = fresh_build(store, rule).await;
    ok(
        rule,
        "claim_build",
        store.claim_build(b.id, 1, worker).await,
    );
    b.id
}

async fn get(store: &dyn Store, rule: &str, id: BuildId) -> Build {
    match ok(rule, "build", store.build(id).await) {
        Some(b) => b,
        None => broke(rule, format!("build {id} vanished")),
    }
}
