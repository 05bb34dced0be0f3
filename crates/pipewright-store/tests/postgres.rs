//! The conformance suite against [`PostgresStore`] on a real PostgreSQL server, each check on a
//! fresh database, and what is PostgreSQL's own: data survives a reconnect, two stores on one
//! database number without gaps, concurrent connects apply the schema once, a newer schema is
//! refused, an unreachable or silent server and a server that goes away are `Unavailable`,
//! log text with NUL round-trips.
//!
//! The file owns its `main` (no libtest harness) so that one server serves the whole run and is
//! stopped, its cluster removed, when the run ends: a server in a `static` would never be
//! dropped. It prints what libtest prints and takes the arguments that matter: name filters,
//! `--exact`, `--skip NAME`, `--list`, `--ignored`, `--test-threads N`. Without PostgreSQL the
//! cases that need a server are reported `ignored` after a `SKIPPED:` line; in CI (`CI` set)
//! the run fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_store::{
    BuildStore, EventRecord, EventStore, NewBuild, PostgresStore, Store, StoreError, testing,
};
use pipewright_testing::servers::{Postgres, free_port, require};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Run = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One case: its name, whether it needs the shared server, and what it runs.
struct Trial {
    name: &'static str,
    server: bool,
    run: fn(Ctx) -> Run,
}

/// What a case gets: the shared server (when it needs one) and fresh databases on it.
#[derive(Clone)]
struct Ctx(Arc<Shared>);

struct Shared {
    /// `postgres://postgres@127.0.0.1:<port>/`, without a database.
    base: Option<String>,
    admin: Option<PgPool>,
    next: AtomicUsize,
}

impl Ctx {
    /// A new, empty database on the shared server; its URL.
    async fn database(&self) -> String {
        let (Some(base), Some(admin)) = (&self.0.base, &self.0.admin) else {
            panic!("this case needs the server")
        };
        let name = format!("case_{}", self.0.next.fetch_add(1, Ordering::Relaxed));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(admin)
            .await
            .unwrap();
        format!("{base}{name}")
    }

    /// A store on a new database, and the database's URL.
    async fn store(&self) -> (PostgresStore, String) {
        let url = self.database().await;
        match PostgresStore::connect(&url).await {
            Ok(store) => (store, url),
            Err(e) => panic!("cannot connect to {url}: {e}"),
        }
    }
}

/// Runs one check of the suite on a fresh database.
async fn suite(ctx: Ctx, check: fn(Arc<dyn Store>) -> Run) {
    let (store, _) = ctx.store().await;
    let store = Arc::new(store);
    check(store.clone()).await;
    store.close().await;
}

macro_rules! conformance {
    ($($module:ident::$check:ident),* $(,)?) => {
        vec![$(Trial {
            name: concat!(stringify!($module), "::", stringify!($check)),
            server: true,
            run: |ctx| Box::pin(suite(ctx, |s| Box::pin(testing::$module::$check(s)))),
        }),*]
    };
}

/// This file's own cases: `name: needs the shared server`, each an `async fn name(Ctx)`.
macro_rules! own {
    ($($name:ident: $server:expr),* $(,)?) => {
        vec![$(Trial {
            name: stringify!($name),
            server: $server,
            run: |ctx| Box::pin($name(ctx)),
        }),*]
    };
}

fn trials() -> Vec<Trial> {
    // The slow ones first, so they wait out their timeouts beside the others.
    let mut all = own!(
        a_server_that_goes_away_makes_calls_unavailable: false,
        a_silent_server_is_unavailable_within_the_timeout: false,
    );
    all.extend(conformance!(
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
    ));
    all.extend(own!(
        all_checks_share_one_database: true,
        builds_survive_a_reconnect: true,
        two_stores_on_one_database_number_without_gaps: true,
        concurrent_connects_apply_the_schema_once: true,
        a_newer_schema_is_refused: true,
        a_missing_database_is_invalid: true,
        log_text_with_nul_round_trips: true,
        a_seq_twice_in_one_batch_keeps_the_first: true,
        an_unreachable_server_is_unavailable_at_once: false,
    ));
    all
}

fn new_build(pipeline: &str) -> NewBuild {
    NewBuild {
        pipeline: pipeline.into(),
        job: "unit".into(),
        trigger: "manual".into(),
        ..NewBuild::default()
    }
}

async fn all_checks_share_one_database(ctx: Ctx) {
    let (store, _) = ctx.store().await;
    let store = Arc::new(store);
    testing::run_all(store.clone()).await;
    testing::run_all(store.clone()).await;
    store.close().await;
}

async fn builds_survive_a_reconnect(ctx: Ctx) {
    let (store, url) = ctx.store().await;
    let b = store.create_build(new_build("app")).await.unwrap();
    store.claim_build(b.id, 1, "w").await.unwrap();
    store.close().await;
    drop(store);

    let store = PostgresStore::connect(&url).await.unwrap();
    let again = store.build(b.id).await.unwrap().unwrap();
    assert_eq!(again.attempt, 1);
    assert_eq!(again.worker.as_deref(), Some("w"));
    let next = store.create_build(new_build("app")).await.unwrap();
    assert_eq!(next.number, 2);
    assert!(next.id > b.id, "ids grow: {} after {}", next.id, b.id);
    store.close().await;
}

/// Two stores on one database (as two servers would be) share no lock but the database's:
/// their concurrent creates still number without gaps.
async fn two_stores_on_one_database_number_without_gaps(ctx: Ctx) {
    let (a, url) = ctx.store().await;
    let a = Arc::new(a);
    let b = Arc::new(PostgresStore::connect(&url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.create_build(new_build("app")).await.map(|b| b.number)
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    a.close().await;
    b.close().await;
}

async fn concurrent_connects_apply_the_schema_once(ctx: Ctx) {
    let url = ctx.database().await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        tasks.push(tokio::spawn(
            async move { PostgresStore::connect(&url).await },
        ));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap().unwrap());
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM pipewright_schema")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(versions, [i64::from(PostgresStore::SCHEMA_VERSION)]);
    pool.close().await;
    for s in stores {
        s.close().await;
    }
}

async fn a_newer_schema_is_refused(ctx: Ctx) {
    let (store, url) = ctx.store().await;
    store.close().await;
    let newer = i64::from(PostgresStore::SCHEMA_VERSION) + 1;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("UPDATE pipewright_schema SET version = $1")
        .bind(newer)
        .execute(&pool)
        .await
        .unwrap();
    let err = PostgresStore::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("schema version {newer}")) && msg.contains("newer"),
        "{msg}"
    );
    assert!(msg.contains(&url), "the message names the database: {msg}");
    let kept: i64 = sqlx::query_scalar("SELECT version FROM pipewright_schema")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, newer, "a refused connect changed the schema version");
    pool.close().await;
}

async fn a_missing_database_is_invalid(ctx: Ctx) {
    let url = ctx.database().await;
    let missing = url.replace("case_", "missing_case_");
    let err = PostgresStore::connect(&missing).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains(&missing), "{err}");
}

async fn log_text_with_nul_round_trips(ctx: Ctx) {
    let (store, _) = ctx.store().await;
    let b = store.create_build(new_build("app")).await.unwrap();
    store.claim_build(b.id, 1, "w").await.unwrap();
    let text = "bin\0ary \u{1F980} ü\n";
    let record = EventRecord {
        seq: 0,
        body: serde_json::json!({ "event": "log", "data": text }),
        log: Some(text.to_owned()),
    };
    assert_eq!(
        store
            .append_events(b.id, 1, std::slice::from_ref(&record))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.log_text(b.id).await.unwrap(), text);
    assert_eq!(store.events_after(b.id, None, 10).await.unwrap(), [record]);
    store.close().await;
}

async fn a_seq_twice_in_one_batch_keeps_the_first(ctx: Ctx) {
    let (store, _) = ctx.store().await;
    let b = store.create_build(new_build("app")).await.unwrap();
    store.claim_build(b.id, 1, "w").await.unwrap();
    let event = |seq: u64, text: &str| EventRecord {
        seq,
        body: serde_json::json!({ "seq": seq, "text": text }),
        log: Some(text.to_owned()),
    };
    let batch = [
        event(2, "b"),
        event(1, "first"),
        event(1, "second"),
        event(0, "a"),
    ];
    assert_eq!(store.append_events(b.id, 1, &batch).await.unwrap(), 3);
    assert_eq!(store.log_text(b.id).await.unwrap(), "afirstb");
    store.close().await;
}

/// Held while a case takes a port: `Postgres::start` finds a free port and releases it before
/// the server binds it, and a listener bound meanwhile could be handed the same one.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A URL with a password, to a port nothing listens on.
fn closed_port_url() -> (String, u16) {
    let port = free_port().unwrap();
    (
        format!("postgres://pipewright:s3cret@127.0.0.1:{port}/ci"),
        port,
    )
}

fn assert_unavailable(err: &StoreError, port: u16) {
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.retryable());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pipewright@127.0.0.1:{port}/ci")),
        "{msg}"
    );
    assert!(
        !msg.contains("s3cret"),
        "the message shows the password: {msg}"
    );
}

async fn an_unreachable_server_is_unavailable_at_once(_: Ctx) {
    let _ports = PORTS.lock().await;
    let (url, port) = closed_port_url();
    let started = Instant::now();
    let err = PostgresStore::connect(&url).await.unwrap_err();
    assert_unavailable(&err, port);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// A server that accepts the connection and never answers: the connect gives up after
/// [`PostgresStore::CONNECT_TIMEOUT`].
async fn a_silent_server_is_unavailable_within_the_timeout(_: Ctx) {
    let listener = {
        let _ports = PORTS.lock().await;
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://pipewright:s3cret@127.0.0.1:{port}/ci");
    let started = Instant::now();
    let err = PostgresStore::connect(&url).await.unwrap_err();
    let took = started.elapsed();
    assert_unavailable(&err, port);
    assert!(
        took >= PostgresStore::CONNECT_TIMEOUT - Duration::from_secs(1)
            && took < PostgresStore::CONNECT_TIMEOUT + Duration::from_secs(3),
        "took {took:?}"
    );
    drop(listener);
}

/// A server of its own. `Postgres::start` releases the free port it found before the server
/// binds it, and meanwhile the other cases' client connections take ephemeral ports from the
/// same range: a start that lost its port is tried again.
fn start_postgres() -> Postgres {
    let mut tries = 0;
    loop {
        match Postgres::start() {
            Ok(pg) => return pg,
            Err(e) if tries < 3 => {
                eprintln!("PostgreSQL did not start ({e}); trying again");
                tries += 1;
            }
            Err(e) => panic!("cannot start PostgreSQL: {e}"),
        }
    }
}

/// A server of its own, stopped under a connected store: calls fail as `Unavailable`, within
/// the timeout.
async fn a_server_that_goes_away_makes_calls_unavailable(_: Ctx) {
    let pg = {
        let _ports = PORTS.lock().await;
        tokio::task::spawn_blocking(start_postgres).await.unwrap()
    };
    let store = PostgresStore::connect(&pg.url()).await.unwrap();
    let b = store.create_build(new_build("app")).await.unwrap();
    tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    let started = Instant::now();
    let err = store.build(b.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < PostgresStore::CONNECT_TIMEOUT + Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    store.close().await;
}

/// The arguments libtest would take that this harness honours.
#[derive(Default)]
struct Args {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    list: bool,
    ignored: bool,
    threads: Option<usize>,
}

impl Args {
    fn parse() -> Self {
        let mut args = Args::default();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--exact" => args.exact = true,
                "--list" => args.list = true,
                "--ignored" => args.ignored = true,
                "--skip" => args.skip.extend(it.next()),
                "--test-threads" => args.threads = it.next().and_then(|n| n.parse().ok()),
                "--format" | "--color" | "--logfile" | "-Z" | "--shuffle-seed" => {
                    it.next();
                }
                s if s.starts_with("--test-threads=") => {
                    args.threads = s["--test-threads=".len()..].parse().ok();
                }
                s if s.starts_with('-') => {}
                s => args.filters.push(s.to_owned()),
            }
        }
        args
    }

    fn selects(&self, name: &str) -> bool {
        let matches = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(e) => e.to_string(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let all = trials();
    let total = all.len();
    // No case is `#[ignore]`d: `--ignored` selects none.
    let chosen: Vec<Trial> = all
        .into_iter()
        .filter(|t| !args.ignored && args.selects(t.name))
        .collect();
    let filtered_out = total - chosen.len();
    if args.list {
        for t in &chosen {
            println!("{}: test", t.name);
        }
        println!("\n{} tests, 0 benchmarks", chosen.len());
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let needs_server = chosen.iter().any(|t| t.server);
    let server = if needs_server
        && require("initdb", "apt-get install postgresql")
        && require("postgres", "apt-get install postgresql")
    {
        Some(start_postgres())
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let admin = server.as_ref().map(|pg| {
        rt.block_on(PgPoolOptions::new().max_connections(2).connect(&pg.url()))
            .expect("cannot connect to the test server")
    });
    let ctx = Ctx(Arc::new(Shared {
        base: server
            .as_ref()
            .map(|pg| format!("postgres://postgres@127.0.0.1:{}/", pg.port())),
        admin,
        next: AtomicUsize::new(0),
    }));

    println!("\nrunning {} tests", chosen.len());
    let threads = args.threads.unwrap_or(4).max(1);
    let (mut passed, mut ignored, mut failed) = (0, 0, Vec::new());
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(threads));
        let mut running = tokio::task::JoinSet::new();
        for t in chosen {
            if t.server && ctx.0.base.is_none() {
                println!("test {} ... ignored, PostgreSQL is not installed", t.name);
                ignored += 1;
                continue;
            }
            let (gate, ctx) = (gate.clone(), ctx.clone());
            running.spawn(async move {
                let _turn = gate.acquire_owned().await;
                let at = Instant::now();
                let outcome = tokio::spawn((t.run)(ctx)).await;
                (t.name, at.elapsed(), outcome)
            });
        }
        while let Some(done) = running.join_next().await {
            let (name, took, outcome) = done.expect("a case runner failed");
            match outcome {
                Ok(()) => {
                    println!("test {name} ... ok ({:.2}s)", took.as_secs_f64());
                    passed += 1;
                }
                Err(e) => {
                    println!("test {name} ... FAILED ({:.2}s)", took.as_secs_f64());
                    failed.push((name, panic_message(e)));
                }
            }
        }
    });
    if let Some(admin) = &ctx.0.admin {
        rt.block_on(admin.close());
    }
    drop(rt);
    drop(server);

    if !failed.is_empty() {
        println!("\nfailures:");
        for (name, msg) in &failed {
            println!("    {name}: {msg}");
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; {ignored} ignored; 0 measured; \
         {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
