//! The conformance suite against [`MemoryStore`]: each check on a fresh store, and all of them
//! on one shared store.

use pipewright_store::{MemoryStore, Store, testing};
use std::sync::Arc;

fn fresh() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

macro_rules! conformance {
    ($($module:ident::$check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            testing::$module::$check(fresh()).await;
        }
    )*};
}

conformance!(
    builds::numbering,
    builds::state_machine,
    builds::approval,
    builds::concurrent_claims,
    builds::fencing,
    builds::exactly_one_terminal,
    builds::requeue,
    builds::paging,
    builds::recovery_listing,
    builds::steps,
    events::append_idempotent,
    events::read_after,
    events::log_text,
    versions::queries,
    versions::passed_and_pins,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_checks_share_one_store() {
    let store = fresh();
    testing::run_all(store.clone()).await;
    testing::run_all(store).await;
}
