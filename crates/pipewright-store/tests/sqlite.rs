//! The conformance suite against [`SqliteStore`] in a temporary file, and what is SQLite's own:
//! data survives a reopen, and a database newer than this crate is refused.

use pipewright_store::{BuildStore, NewBuild, SqliteStore, Store, StoreError, testing};
use std::sync::Arc;

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    match SqliteStore::open(dir.path().join("pipewright.db")).await {
        Ok(store) => store,
        Err(e) => panic!("cannot open the test database: {e}"),
    }
}

macro_rules! conformance {
    ($($module:ident::$check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $check() {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(open(&dir).await);
            testing::$module::$check(store).await;
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
async fn all_checks_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(open(&dir).await);
    testing::run_all(store.clone()).await;
    testing::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let b = store
        .create_build(NewBuild {
            pipeline: "app".into(),
            job: "unit".into(),
            trigger: "manual".into(),
            ..NewBuild::default()
        })
        .await
        .unwrap();
    store.claim_build(b.id, 1, "w").await.unwrap();
    store.close().await;
    drop(store);

    let store = open(&dir).await;
    let again = store.build(b.id).await.unwrap().unwrap();
    assert_eq!(again.attempt, 1);
    assert_eq!(again.worker.as_deref(), Some("w"));
    let next = store
        .create_build(NewBuild {
            pipeline: "app".into(),
            job: "unit".into(),
            ..NewBuild::default()
        })
        .await
        .unwrap();
    assert_eq!(next.number, 2);
    let mode: String = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.path().display()))
            .await
            .unwrap();
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", store.path().display()))
            .await
            .unwrap();
        sqlx::raw_sql(&format!("PRAGMA user_version = {newer}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    store.close().await;
    let err = SqliteStore::open(dir.path().join("pipewright.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("schema version {newer}")) && msg.contains("newer"),
        "{msg}"
    );
}

/// Two stores on one file (as two processes would be) do not share the in-process write lock:
/// `BEGIN IMMEDIATE` and the busy timeout still number their concurrent creates without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_number_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(open(&dir).await);
    let b = Arc::new(open(&dir).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .create_build(NewBuild {
                    pipeline: "app".into(),
                    job: "unit".into(),
                    ..NewBuild::default()
                })
                .await
                .map(|b| b.number)
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
}
