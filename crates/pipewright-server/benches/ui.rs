//! Web UI figures in a real headless Chromium (`cargo bench -p pipewright-server --bench ui`;
//! `N` page loads per figure, `JOBS`, `BUILDS` and `LOG_LINES` set the sizes):
//!
//! 1. the pipeline page of a pipeline with `JOBS` jobs and `BUILDS` builds: first contentful
//!    paint and the graph drawn, against the same page of a one-job pipeline with no builds;
//! 2. the build page of a `LOG_LINES`-line log: time to load every line, and how the page
//!    answers while the log is scrolled end to end (the longest frame);
//! 3. the weight of the UI's files, gzip-compressed as the server sends them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "../tests/common/browser.rs"]
mod browser;

use browser::Browser;
use common::{ADMIN, Ci};
use pipewright_core::{BuildStatus, Event, EventKind, StepId, StepRole, Stream};
use pipewright_server::{LocalLink, MemoryQueue, ServerOptions, WorkerLink};
use pipewright_store::NewBuild;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !browser::available() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn pipeline(jobs: usize) -> String {
    let mut hcl = String::from(
        "resource \"cron\" \"tick\" {\n  params {\n    schedule = \"0 0 1 1 *\"\n  }\n}\n",
    );
    for i in 0..jobs {
        let passed = if i == 0 {
            String::new()
        } else {
            format!("\n    passed = [\"job-{}\"]", (i - 1) / 2)
        };
        hcl.push_str(&format!(
            "job \"job-{i}\" {{\n  get \"cron\" \"tick\" {{{passed}\n  }}\n  task \"t\" {{\n    run \"shell\" {{\n      cmd = \"true\"\n    }}\n  }}\n}}\n"
        ));
    }
    hcl
}

/// A server without a worker (nothing runs by itself), logged in in the browser.
async fn server(hcl: &str) -> Ci {
    let options = ServerOptions {
        reload_every: Duration::from_secs(3600),
        ..ServerOptions::default()
    };
    Ci::start_custom(
        hcl,
        Arc::new(pipewright_store::MemoryStore::new()),
        options,
        None,
        Arc::new(MemoryQueue::new()),
    )
    .await
}

/// Makes `n` finished builds spread over `jobs` jobs, through the workers' own link.
async fn fill(ci: &Ci, jobs: usize, n: usize) {
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let link = LocalLink(hub.clone());
    for i in 0..n {
        let b = hub
            .store
            .create_build(NewBuild {
                pipeline: "p".into(),
                job: format!("job-{}", i % jobs),
                trigger: "bench".into(),
                ..NewBuild::default()
            })
            .await
            .unwrap();
        link.claim(b.id, 1, "bench").await.unwrap();
        let status = if i % 7 == 0 {
            BuildStatus::Failed
        } else {
            BuildStatus::Succeeded
        };
        link.finish(b.id, 1, status, None).await.unwrap();
    }
}

async fn login(b: &Browser, ci: &Ci) {
    b.goto(&format!("{}/#/login", ci.base)).await;
    b.until("document.getElementById('token')", 10, "the login form")
        .await;
    let ok = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/ui/login', {method: 'POST', headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({token: arguments[0]})}).then((r) => done(r.status));",
            vec![serde_json::json!(ADMIN)],
        )
        .await
        .unwrap();
    assert_eq!(ok, 200);
}

/// Loads the pipeline page `n` times; medians of first contentful paint and of the graph
/// drawn (ms from navigation start).
async fn pipeline_page(b: &Browser, ci: &Ci, n: usize, nodes: usize) -> (f64, f64) {
    let (mut fcp, mut drawn) = (Vec::new(), Vec::new());
    for _ in 0..n {
        b.goto("about:blank").await;
        b.goto(&format!("{}/#/p/p", ci.base)).await;
        b.until(
            &format!("document.querySelectorAll('.graph .node').length === {nodes} && performance.getEntriesByName('pipeline-drawn').length && performance.getEntriesByName('first-contentful-paint').length"),
            30,
            "the graph",
        )
        .await;
        let v = b
            .eval("[performance.getEntriesByName('first-contentful-paint')[0].startTime, performance.getEntriesByName('pipeline-drawn')[0].startTime]")
            .await;
        fcp.push(v[0].as_f64().unwrap());
        drawn.push(v[1].as_f64().unwrap());
    }
    (median(fcp), median(drawn))
}

/// A build whose log has `lines` lines, in events of 500 lines.
async fn big_log(ci: &Ci, lines: usize) -> u64 {
    let hub = ci.server.as_ref().unwrap().hub.clone();
    let link = LocalLink(hub.clone());
    let b = hub
        .store
        .create_build(NewBuild {
            pipeline: "p".into(),
            job: "job-0".into(),
            trigger: "bench".into(),
            ..NewBuild::default()
        })
        .await
        .unwrap();
    link.claim(b.id, 1, "bench").await.unwrap();
    let step = StepId::new(["t"], StepRole::Step);
    let mut offset = 0u64;
    let mut batch = Vec::new();
    batch.push(Event {
        schema: pipewright_core::SCHEMA_VERSION,
        build_id: b.id.to_string(),
        seq: 0,
        at_ms: 0,
        kind: EventKind::StepStarted {
            step: step.clone(),
            attempt: 1,
            attempts: 1,
        },
    });
    for (chunk, seq) in (0..lines.div_ceil(500)).zip(1u64..) {
        let mut data = String::new();
        for l in chunk * 500..((chunk + 1) * 500).min(lines) {
            data.push_str(&format!(
                "\x1b[32mok\x1b[0m line {l}: test result for case {} passed in 0.{}s\n",
                l * 7,
                l % 100
            ));
        }
        let len = data.len() as u64;
        batch.push(Event {
            schema: pipewright_core::SCHEMA_VERSION,
            build_id: b.id.to_string(),
            seq,
            at_ms: chunk as u64,
            kind: EventKind::Log {
                step: step.clone(),
                attempt: 1,
                stream: Stream::Stdout,
                offset,
                data,
            },
        });
        offset += len;
        if batch.len() >= 100 {
            link.events(b.id, 1, std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    link.events(b.id, 1, batch).await.unwrap();
    link.finish(b.id, 1, BuildStatus::Succeeded, None)
        .await
        .unwrap();
    b.id.0
}

async fn run() {
    let n = env_usize("N", 5);
    let jobs = env_usize("JOBS", 50);
    let builds = env_usize("BUILDS", 10_000);
    let lines = env_usize("LOG_LINES", 1_000_000);
    let b = Browser::start().await;

    let small = server(&pipeline(1)).await;
    login(&b, &small).await;
    let (fcp0, drawn0) = pipeline_page(&b, &small, n, 2).await;
    small.stop().await;

    let ci = server(&pipeline(jobs)).await;
    let t = Instant::now();
    fill(&ci, jobs, builds).await;
    eprintln!("made {builds} builds in {:?}", t.elapsed());
    login(&b, &ci).await;
    let (fcp, drawn) = pipeline_page(&b, &ci, n, jobs + 1).await;
    println!("pipeline page, median of {n} loads in headless Chromium (ms from navigation):");
    println!("  1 job, no builds (baseline):   first paint {fcp0:>6.1}  graph drawn {drawn0:>6.1}");
    println!(
        "  {jobs} jobs, {builds} builds:       first paint {fcp:>6.1}  graph drawn {drawn:>6.1}  ({:.2}x / {:.2}x the baseline)",
        fcp / fcp0,
        drawn / drawn0
    );

    let id = big_log(&ci, lines).await;
    b.goto("about:blank").await;
    let t = Instant::now();
    b.goto(&format!("{}/#/builds/{id}", ci.base)).await;
    b.until(
        &format!("document.querySelector('.logbar .muted') && document.querySelector('.logbar .muted').textContent.startsWith('{}')", fmt_thousands(lines)),
        300,
        "every log line",
    )
    .await;
    let loaded = t.elapsed();
    let scroll = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const box = document.querySelector('.log');
             let worst = 0, i = 0, last = performance.now();
             const start = last;
             const step = (t) => {
               worst = Math.max(worst, t - last); last = t;
               box.scrollTop = (i / 100) * (box.scrollHeight - box.clientHeight);
               if (++i <= 100) requestAnimationFrame(step);
               else done([worst, performance.now() - start, document.querySelectorAll('.log .line').length]);
             };
             requestAnimationFrame(step);",
            vec![],
        )
        .await
        .unwrap();
    let (worst, total, dom) = (
        scroll[0].as_f64().unwrap(),
        scroll[1].as_f64().unwrap(),
        scroll[2].as_u64().unwrap(),
    );
    println!(
        "build page, a {lines}-line log: every line loaded in {:.1} s; scrolled end to end in 100 jumps: \
         {total:.0} ms, longest frame {worst:.1} ms (a 60 Hz frame is 16.7 ms), {dom} line elements in the page",
        loaded.as_secs_f64()
    );
    b.close().await;
    ci.stop().await;

    let (mut raw, mut gz) = (0usize, 0usize);
    for name in pipewright_ui::names() {
        let a = pipewright_ui::asset(name).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(a.body).unwrap();
        raw += a.body.len();
        gz += enc.finish().unwrap().len();
    }
    println!(
        "UI files: {:.1} KB, {:.1} KB gzip-compressed (goal under 300 KB)",
        raw as f64 / 1024.0,
        gz as f64 / 1024.0
    );
}

fn fmt_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
