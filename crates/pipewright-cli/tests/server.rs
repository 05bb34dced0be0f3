//! `pipewright server` as an operator runs it, driven by `pipewright`'s own client: restart
//! recovery after `kill -9` on SQLite (history kept, the interrupted build re-queued once and
//! succeeded, nothing duplicated), and the one-command in-memory CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pipewright");

const PIPELINE: &str = r#"
job "quick" {
  task "t" {
    run "shell" {
      cmd = "echo quick"
    }
  }
}

job "slow" {
  task "t" {
    run "shell" {
      cmd = "echo started; sleep 4; echo finished"
    }
  }
}
"#;

struct Srv {
    child: Child,
    url: String,
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pipewright server` on a free port and waits for its "listening" line.
fn start(dir: &Path, db: &str) -> Srv {
    start_with(dir, db, &[])
}

fn start_with(dir: &Path, db: &str, extra: &[&str]) -> Srv {
    let mut child = Command::new(BIN)
        .args([
            "server",
            "--run-worker",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
        ])
        .args(extra)
        .arg("--pipeline")
        .arg(dir.join("p.hcl"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--workspace-root")
        .arg(dir.join("ws"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("server: {line}");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not start");
    Srv { child, url }
}

fn client(dir: &Path, srv: &Srv, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["--server", &srv.url, "--token-file"])
        .arg(dir.join("token"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn builds(dir: &Path, srv: &Srv, job: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = client(dir, srv, &["builds", job, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn wait_for(
    dir: &Path,
    srv: &Srv,
    job: &str,
    f: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let b = builds(dir, srv, job);
        if f(&b) {
            return b;
        }
        assert!(Instant::now() < until, "{job}: {b:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.hcl"), PIPELINE).unwrap();
    let db = dir.path().join("ci.db");
    (dir, db)
}

#[test]
fn kill_9_mid_build_on_sqlite_requeues_the_build_once_and_keeps_history() {
    let (dir, db) = setup();
    kill_9_mid_build(dir.path(), &format!("sqlite://{}", db.display()));
}

#[test]
fn kill_9_mid_build_on_postgres_requeues_the_build_once_and_keeps_history() {
    use pipewright_testing::servers::{Postgres, require};
    if !(require("initdb", "apt-get install postgresql")
        && require("postgres", "apt-get install postgresql"))
    {
        return;
    }
    let pg = Postgres::start().unwrap();
    let (dir, _) = setup();
    kill_9_mid_build(dir.path(), &pg.url());
}

fn kill_9_mid_build(dir: &Path, db: &str) {
    let srv = start(dir, db);
    // History: one finished build.
    let (code, _, err) = client(dir, &srv, &["trigger", "p/quick", "--watch"]);
    assert_eq!(code, 0, "{err}");
    // A build running when the server dies.
    let (code, _, err) = client(dir, &srv, &["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    let mut srv = srv;
    srv.child.kill().unwrap(); // SIGKILL: no shutdown, no cleanup.
    srv.child.wait().unwrap();
    drop(srv);

    let srv = start(dir, db);
    let slow = wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    assert_eq!(slow.len(), 1, "re-queued, not duplicated: {slow:#?}");
    assert_eq!(slow[0]["attempt"], 2, "the second attempt ran it");
    let quick = builds(dir, &srv, "p/quick");
    assert_eq!(quick.len(), 1);
    assert_eq!(
        quick[0]["status"], "succeeded",
        "history survived the restart"
    );
    let id = slow[0]["id"].to_string();
    let (code, log, _) = client(dir, &srv, &["logs", &id]);
    assert_eq!(code, 0);
    assert!(log.contains("finished"), "{log}");
    // `watch` of a finished build prints it and exits with its result.
    let (code, _, err) = client(dir, &srv, &["watch", &id]);
    assert_eq!(code, 0, "{err}");
    // New builds continue the numbering.
    let (code, _, err) = client(dir, &srv, &["trigger", "p/quick", "--watch"]);
    assert_eq!(code, 0, "{err}");
    let quick = builds(dir, &srv, "p/quick");
    assert_eq!(quick[0]["number"], 2);
}

#[test]
fn the_client_reports_failures_with_exit_codes_a_script_can_use() {
    let (dir, _) = setup();
    let dir = dir.path();
    std::fs::write(
        dir.join("p.hcl"),
        format!("{PIPELINE}\njob \"bad\" {{\n  task \"t\" {{\n    run \"shell\" {{\n      cmd = \"exit 3\"\n    }}\n  }}\n}}\n"),
    )
    .unwrap();
    let srv = start(dir, "mem");
    let (code, _, err) = client(dir, &srv, &["trigger", "p/bad", "--watch"]);
    assert_eq!(code, 1, "a failed build: {err}");
    assert!(err.contains("failed"), "{err}");
    let (code, _, err) = client(dir, &srv, &["trigger", "p/nope"]);
    assert_eq!(code, 2, "an unknown job: {err}");
    assert!(err.contains("no job `nope`"), "{err}");
    let (code, _, err) = client(dir, &srv, &["trigger", "nojob"]);
    assert_eq!(code, 2, "{err}");
    let out = Command::new(BIN)
        .args([
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "x",
            "builds",
            "p/quick",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "no server");
    let out = Command::new(BIN)
        .args([
            "--server", &srv.url, "--token", "pw_wrong", "builds", "p/quick",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn a_server_that_cannot_start_says_why() {
    let (dir, _) = setup();
    let dir = dir.path();
    std::fs::write(
        dir.join("bad.hcl"),
        "job \"x\" {\n  task \"t\" {\n    run \"shel\" {}\n  }\n}\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("server")
            .args(args)
            .arg("--token-file")
            .arg(dir.join("token"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bad = dir.join("bad.hcl").display().to_string();
    let (code, err) = run(&["--pipeline", &bad, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad.hcl:3:") && err.contains("shel"), "{err}");
    let good = dir.join("p.hcl").display().to_string();
    let (code, err) = run(&["--pipeline", &good, "--db", "mysql://x"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("expected `mem`, `sqlite://PATH`"), "{err}");
    let (code, err) = run(&[
        "--pipeline",
        &good,
        "--db",
        "sqlite:///nonexistent-dir/x/ci.db",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--db sqlite:///nonexistent-dir/x/ci.db"),
        "{err}"
    );
    let (code, err) = run(&["--pipeline", &good, "--queue", "nats://127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{err}"
    );
    let (code, err) = run(&["--pipeline", &good, "--queue", "kafka://x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("expected `mem` or `nats://HOST:PORT`"),
        "{err}"
    );
    let (code, err) = run(&["--pipeline", "/nonexistent.hcl"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not a file"), "{err}");
}

fn sigterm(srv: &mut Srv) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    srv.child.wait().unwrap()
}

#[test]
fn sigterm_lets_a_running_build_finish_and_a_short_grace_requeues_it() {
    let (dir, db) = setup();
    let dir = dir.path();
    let db = format!("sqlite://{}", db.display());
    // Default grace: the running build finishes before the server exits.
    let mut srv = start(dir, &db);
    let (code, _, err) = client(dir, &srv, &["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    assert!(sigterm(&mut srv).success());
    drop(srv);
    let srv = start(dir, &db);
    let slow = builds(dir, &srv, "p/slow");
    assert_eq!(
        (slow[0]["status"].as_str(), slow[0]["attempt"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    drop(srv);

    // A grace shorter than the build: stopped, re-queued, run again after the restart.
    let mut srv = start_with(dir, &db, &["--shutdown-grace", "1s"]);
    let (code, _, err) = client(dir, &srv, &["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    wait_for(dir, &srv, "p/slow", |b| {
        b.first()
            .is_some_and(|b| b["number"] == 2 && b["status"] == "running")
    });
    assert!(sigterm(&mut srv).success());
    drop(srv);
    let srv = start(dir, &db);
    let slow = wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    assert_eq!(slow.len(), 2);
    assert_eq!(slow[0]["attempt"], 2, "{:#?}", slow[0]);
}

#[test]
fn a_postgres_restart_mid_build_loses_nothing() {
    use pipewright_testing::servers::{Postgres, require};
    if !(require("initdb", "apt-get install postgresql")
        && require("postgres", "apt-get install postgresql"))
    {
        return;
    }
    let mut pg = Postgres::start().unwrap();
    let (dir, _) = setup();
    let dir = dir.path();
    let srv = start(dir, &pg.url());
    let (code, _, err) = client(dir, &srv, &["trigger", "p/slow"]);
    assert_eq!(code, 0, "{err}");
    wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "running")
    });
    pg.restart().unwrap();
    let slow = wait_for(dir, &srv, "p/slow", |b| {
        b.first().is_some_and(|b| b["status"] == "succeeded")
    });
    assert_eq!(slow.len(), 1, "{slow:#?}");
    let id = slow[0]["id"].to_string();
    let (_, log, _) = client(dir, &srv, &["logs", &id]);
    assert_eq!(log.matches("finished").count(), 1, "every line once: {log}");
    assert_eq!(log.matches("started").count(), 1, "every line once: {log}");
}

#[test]
fn every_command_parses_its_help_and_pin_takes_fields() {
    // clap checks a command's arguments when it is built: a clash panics here, not in use.
    for cmd in [
        "run", "plan", "validate", "graph", "server", "worker", "trigger", "builds", "watch",
        "logs", "cancel", "rerun", "approve", "check", "pin", "token", "webhooks",
    ] {
        let out = Command::new(BIN).args([cmd, "--help"]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (dir, _) = setup();
    let dir = dir.path();
    let srv = start(dir, "mem");
    let (code, _, err) = client(dir, &srv, &["pin", "p/git.nope", "ref=abc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no resource `git.nope`"), "{err}");
    let (code, _, err) = client(dir, &srv, &["pin", "p/git.nope", "--unpin"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = client(dir, &srv, &["rerun", "1", "--from", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected `job` or `failed-step`"), "{err}");
}

/// One raw HTTP/1.1 request (the tests have no HTTP client crate); returns the status code.
fn raw_post(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn webhooks_lists_what_became_of_each_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.email=ci@example.com",
            "-c",
            "user.name=ci",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "one",
        ],
    ] {
        assert!(
            Command::new("git")
                .args(args)
                .current_dir(&repo)
                .status()
                .unwrap()
                .success()
        );
    }
    std::fs::write(
        dir.join("p.hcl"),
        format!(
            "resource \"git\" \"src\" {{\n  params {{ url = \"{}\" }}\n  check_interval = \"@every 1h\"\n  webhook_secret = \"gitlab-secret-token\"\n}}\n{PIPELINE}",
            repo.display()
        ),
    )
    .unwrap();
    let srv = start(dir, "mem");
    let (code, out, err) = client(dir, &srv, &["webhooks", "p/git.src"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(err.contains("no webhook deliveries"), "{err}");
    let path = "/api/v1/webhooks/p/git.src";
    let gitlab = |token| [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)];
    assert_eq!(
        raw_post(&srv.url, path, &gitlab("gitlab-secret-token"), "{}"),
        202
    );
    assert_eq!(raw_post(&srv.url, path, &gitlab("wrong"), "{}"), 401);
    let (code, out, err) = client(dir, &srv, &["webhooks", "p/git.src"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("TIME (UTC)"), "{out}");
    assert!(
        lines[1].contains("gitlab") && lines[1].contains("rejected") && lines[1].contains("401"),
        "{out}"
    );
    assert!(lines[1].contains("does not match"), "{out}");
    assert!(
        lines[2].contains("Push Hook") && lines[2].contains("checking") && lines[2].contains("202"),
        "{out}"
    );
    let (code, _, err) = client(dir, &srv, &["webhooks", "p/git.nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no resource `git.nope`"), "{err}");
}
