//! `pipewright run` as a process: output, exit codes, JSON events, and signals.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `run` without the local history, so every build here is #1 however often the tests run.
fn bin(ws: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    c.arg("run")
        .arg("--no-history")
        .arg("--workspace-root")
        .arg(ws);
    c
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines")
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run pipewright: {e}"),
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_ported_python_project_runs_whole_and_by_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = examples().join("../..");
    let (code, out, err) = output(
        bin(dir.path())
            .current_dir(&root)
            .args(["--color", "never", "--pipeline"])
            .arg(examples().join("python-project.hcl")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("job test--3-14-linux #"), "{out}");
    assert!(
        out.contains("package/verify │ sdist has pyproject.toml"),
        "{out}"
    );
    assert!(!out.contains("test--3-11-macos"), "excluded: {out}");
    let (code, out, err) = output(
        bin(dir.path())
            .current_dir(&root)
            .args(["--color", "never", "--job", "test", "--pipeline"])
            .arg(examples().join("python-project.hcl")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("coverage: 100%"), "{out}");
    assert!(!out.contains("package/"), "{out}");
}

#[test]
fn local_history_numbers_builds_and_lets_a_lone_job_use_what_passed_before() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), "v1").unwrap();
    let p = dir.path().join("p.hcl");
    std::fs::write(
        &p,
        format!(
            r#"
resource "fs" "src" {{
  params {{ path = "{}" }}
}}
job "test" {{
  get "fs" "src" {{}}
  task "t" {{
    run "shell" {{ cmd = "echo test number $BUILD_NUMBER" }}
  }}
}}
job "ship" {{
  get "fs" "src" {{ passed = ["test"] }}
  task "t" {{
    run "shell" {{ cmd = "echo ship number $BUILD_NUMBER of $(cat src/file)" }}
  }}
}}
"#,
            src.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        output(
            Command::new(env!("CARGO_BIN_EXE_pipewright"))
                .arg("run")
                .arg(&p)
                .args(["--color", "never", "--workspace-root"])
                .arg(dir.path().join("ws"))
                .args(args)
                .env("XDG_CACHE_HOME", dir.path().join("cache")),
        )
    };
    let (code, out, err) = run(&["--job", "ship"]);
    assert_eq!(code, 1, "nothing has passed `test` yet: {out}{err}");
    let (code, out, err) = run(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("test number 1"), "{out}");
    let (code, out, err) = run(&["--job", "test"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("test number 2"), "{out}");
    // `ship` alone takes the version earlier runs passed through `test`; its numbers count
    // the failed first try and the whole run.
    let (code, out, err) = run(&["--job", "ship"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the newest version that passed test"), "{out}");
    assert!(out.contains("ship number 3 of v1"), "{out}");
    let (code, out, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("plan")
            .arg(&p)
            .args(["--job", "ship"])
            .env("XDG_CACHE_HOME", dir.path().join("cache")),
    );
    assert_eq!(code, 0, "plan reads the history too: {out}{err}");
    assert!(out.contains("passed test"), "{out}");
    let (code, out, _) = run(&["--job", "test", "--no-history"]);
    assert_eq!(code, 0);
    assert!(out.contains("test number 1"), "{out}");
    let history = dir.path().join("cache/pipewright/history");
    assert_eq!(std::fs::read_dir(&history).unwrap().count(), 1);
}

#[test]
fn the_readme_example_runs_with_readable_output() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(
        bin(dir.path())
            .arg("--pipeline")
            .arg(examples().join("local-ci.hcl")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("build/unit-tests │ --- attempt 2/2 ---"),
        "{out}"
    );
    assert!(
        out.contains("build/publish │ publishing app 1.4.0 to the stable channel"),
        "{out}"
    );
    assert!(
        out.contains("build/job:ensure │ build build #1 finished: succeeded"),
        "{out}"
    );
    assert!(out.contains("JOB    STEP"), "summary table: {out}");
    assert!(out.contains("unit-tests          succeeded  2"), "{out}");
    assert!(out.ends_with("pipeline succeeded\n"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "no colour codes without a terminal"
    );
    // The workspace is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_failing_job_exits_1_and_keep_leaves_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.hcl");
    std::fs::write(
        &p,
        "job \"j\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"echo partial > file; exit 4\" }\n  }\n}\n",
    )
    .unwrap();
    let ws = dir.path().join("ws");
    let (code, out, _) = output(bin(&ws).arg("--pipeline").arg(&p).arg("--keep"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("job j #1: failed"), "{out}");
    assert!(out.contains("`t` failed: exit code 4"), "{out}");
    assert!(out.contains("workspace kept at"), "{out}");
    let kept: Vec<_> = std::fs::read_dir(&ws).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let build_dir = kept[0].as_ref().unwrap().path();
    assert_eq!(
        std::fs::read_to_string(build_dir.join("file")).unwrap(),
        "partial\n"
    );
}

#[test]
fn json_output_is_one_event_per_line_then_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = output(
        bin(dir.path())
            .arg("--pipeline")
            .arg(examples().join("hello.hcl"))
            .args(["--output", "json", "--var", "greeting=hej"]),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "build_started");
    assert_eq!(lines[0]["job"], "hello");
    assert!(
        lines
            .iter()
            .any(|e| e["event"] == "log" && e["data"] == "hej from hello\n")
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["builds"][0]["steps"][0]["step"]["path"][0], "say");
    // The build's end comes before the summary, which agrees with it.
    let finished = &lines[lines.len() - 2];
    assert_eq!(finished["event"], "build_finished");
    assert_eq!(finished["steps"], summary["builds"][0]["steps"]);
    let mut normalised = String::new();
    for mut line in lines {
        normalise(&mut line);
        normalised.push_str(&line.to_string());
        normalised.push('\n');
    }
    insta::assert_snapshot!("hello_json", normalised);
}

/// Ids, times and durations replaced, so the output compares across runs.
fn normalise(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match k.as_str() {
                    "build_id" => *val = "[build]".into(),
                    "at_ms" | "duration_ms" => *val = 0.into(),
                    _ => normalise(val),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn unknown_jobs_and_bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hello = examples().join("hello.hcl");
    let (code, _, err) = output(
        bin(dir.path())
            .arg("--pipeline")
            .arg(&hello)
            .args(["--job", "helo"]),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no job `helo`") && err.contains("did you mean `hello`?"),
        "{err}"
    );

    let (code, _, err) = output(
        bin(dir.path())
            .arg("--pipeline")
            .arg(&hello)
            .args(["--input", "src=/no/such/dir"]),
    );
    assert_eq!(code, 2);
    assert!(err.contains("`/no/such/dir` is not a directory"), "{err}");
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit(") ").next().and_then(|r| r.chars().next()),
            Some('Z') | Some('X')
        ),
        Err(_) => false,
    }
}

/// Starts a pipeline whose task leaves a `setsid` daemon, one that also clears its environment
/// (so it carries no cookie) and a TERM-ignoring child (their pids go to `<dir>/pids`), with an
/// `ensure` hook, and waits until the three children exist.
fn start_hanging_run(dir: &Path, ensure: &str) -> std::process::Child {
    let d = dir.display();
    let p = dir.join("p.hcl");
    std::fs::write(
        &p,
        format!(
            r#"
job "j" {{
  task "hang" {{
    run "shell" {{
      cmd = "setsid sleep 321 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; setsid env -i sleep 325 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; (trap '' TERM; exec sleep 322) & echo $! >> {d}/pids; sleep 323"
    }}
  }}
  ensure "shell" {{
    cmd = "{ensure}"
  }}
}}
"#
        ),
    )
    .unwrap();
    let child = bin(&dir.join("ws"))
        .arg("--pipeline")
        .arg(&p)
        .args(["--kill-grace", "500ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&dir.join("pids"), 3);
    child
}

/// Waits (up to 10 s) until `file` has `lines` lines.
fn wait_for(file: &Path, lines: usize) {
    for _ in 0..1000 {
        if std::fs::read_to_string(file).is_ok_and(|s| s.lines().count() >= lines) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never got {lines} line(s)", file.display());
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
        .collect()
}

/// Ctrl-C, `timeout`, systemd, `docker stop` and CI cancels all mean the same: cancel, run the
/// hooks, reap every process, remove the workspace, exit 130.
fn cancel_with(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let _sweep = Sweep(dir.path().join("pids"));
    let child = start_hanging_run(
        dir.path(),
        &format!("echo ensure $BUILD_STATUS > {d}/ensure"),
    );
    signal(child.id(), sig);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "SIG{sig}: {stdout} {:?}",
        out.status
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelling"));
    assert!(stdout.contains("pipeline cancelled"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ensure")).unwrap(),
        "ensure cancelled\n"
    );
    for pid in pids_in(&dir.path().join("pids")) {
        assert!(!alive(pid), "process {pid} survived SIG{sig}");
    }
    let ws: Vec<_> = std::fs::read_dir(dir.path().join("ws")).unwrap().collect();
    assert!(
        ws.is_empty(),
        "the workspace was left after SIG{sig}: {ws:?}"
    );
}

#[test]
fn ctrl_c_cancels_runs_hooks_and_reaps_every_process() {
    cancel_with("INT");
}

#[test]
fn sigterm_cancels_like_ctrl_c() {
    cancel_with("TERM");
}

#[test]
fn sighup_cancels_like_ctrl_c() {
    cancel_with("HUP");
}

#[test]
fn a_second_signal_stops_the_hooks_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let _sweep = Sweep(dir.path().join("pids"));
    let _sweep = Sweep(dir.path().join("pids"));
    let child = start_hanging_run(dir.path(), &format!("echo $$ >> {d}/pids; sleep 324"));
    let started = std::time::Instant::now();
    signal(child.id(), "TERM");
    // The ensure hook has started (and hangs).
    wait_for(&dir.path().join("pids"), 4);
    signal(child.id(), "HUP");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{:?}", out.status);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the second signal stopped the hanging hook"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping everything"));
    for pid in pids_in(&dir.path().join("pids")) {
        assert!(!alive(pid), "process {pid} survived the second signal");
    }
}

/// Kills the processes a test started if they are still there when it ends (a failing test
/// must not leave sleepers behind).
struct Sweep(PathBuf);

impl Drop for Sweep {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .filter(|p| alive(*p))
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
        }
    }
}

/// Waits (up to 10 s) until none of `pids` is alive; returns the survivors.
fn survivors(pids: &[i32]) -> Vec<i32> {
    // Generous: on a loaded 2-core machine the supervisor may take a while to be scheduled.
    for _ in 0..3000 {
        if pids.iter().all(|p| !alive(*p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    pids.iter().copied().filter(|p| alive(*p)).collect()
}

fn write_pipeline(dir: &Path, cmd: &str) -> PathBuf {
    let p = dir.join("p.hcl");
    std::fs::write(
        &p,
        format!("job \"j\" {{\n  task \"t\" {{\n    run \"shell\" {{ cmd = \"{cmd}\" }}\n  }}\n  task \"after\" {{\n    run \"shell\" {{ cmd = \"true\" }}\n  }}\n}}\n"),
    )
    .unwrap();
    p
}

#[test]
fn sigkill_of_the_runner_takes_every_task_process_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pids = dir.path().join("pids");
    let _sweep = Sweep(pids.clone());
    let p = write_pipeline(
        dir.path(),
        &format!(
            "setsid env -i sleep 331 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; \
             setsid sleep 332 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; \
             sleep 333 & echo $! >> {d}/pids; echo $$ >> {d}/pids; sleep 334"
        ),
    );
    let mut child = bin(&dir.path().join("ws"))
        .arg("--pipeline")
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pids, 4);
    signal(child.id(), "KILL");
    child.wait().unwrap();
    let left = survivors(&pids_in(&pids));
    assert!(
        left.is_empty(),
        "processes {left:?} outlived the killed runner"
    );
}

#[test]
fn the_next_run_reaps_what_a_dead_runner_left_and_spares_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pids = dir.path().join("pids");
    let _sweep = Sweep(pids.clone());
    // A run that dies with everything between it and its task (SIGKILL to both), leaving a
    // daemon that still carries the dead run's cookie.
    let p = write_pipeline(
        dir.path(),
        &format!(
            "setsid sleep 341 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; \
             echo $PPID > {d}/parent; sleep 342"
        ),
    );
    let mut dead = bin(&dir.path().join("ws"))
        .arg("--pipeline")
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&dir.path().join("parent"), 1);
    let parent = std::fs::read_to_string(dir.path().join("parent")).unwrap();
    // Stopped first, so that neither reacts to the other's death.
    let runner = dead.id().to_string();
    for sig in ["-STOP", "-KILL"] {
        let _ = Command::new("kill")
            .args([sig, parent.trim(), &runner])
            .output();
    }
    dead.wait().unwrap();
    let orphan = pids_in(&pids)[0];
    assert!(alive(orphan), "the test needs an orphan");

    // A live run's processes are not orphans.
    let live_dir = tempfile::tempdir().unwrap();
    let _live_sweep = Sweep(live_dir.path().join("pids"));
    let live = start_hanging_run(live_dir.path(), "true");

    let (code, out, err) = output(
        bin(&dir.path().join("ws"))
            .arg("--pipeline")
            .arg(examples().join("hello.hcl")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        survivors(&[orphan]).is_empty(),
        "the next run did not reap {orphan}"
    );
    for pid in pids_in(&live_dir.path().join("pids")) {
        assert!(alive(pid), "the live run's process {pid} was reaped");
    }
    signal(live.id(), "INT");
    let out = live.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
}

#[test]
fn a_daemon_that_clears_its_environment_ends_with_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let pids = dir.path().join("pids");
    let _sweep = Sweep(pids.clone());
    let p = write_pipeline(
        dir.path(),
        &format!("setsid env -i sleep 351 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids"),
    );
    let started = std::time::Instant::now();
    let (code, out, err) = output(
        bin(&dir.path().join("ws"))
            .arg("--pipeline")
            .arg(&p)
            .args(["--kill-grace", "30s"]),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    // Stopping a process that has just left the group takes a SIGTERM, not the whole grace.
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    let left = survivors(&pids_in(&pids));
    assert!(left.is_empty(), "processes {left:?} outlived the build");
}

#[test]
fn a_relative_workspace_root_becomes_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.hcl");
    std::fs::write(
        &p,
        "job \"j\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"cd /; echo \\\"$WORKDIR\\\"; ls \\\"$WORKDIR\\\"\" }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["run", "--workspace-root", "builds", "--pipeline"])
            .arg(&p)
            .current_dir(dir.path()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let root = dir.path().join("builds");
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("j/t │ "))
        .unwrap_or_else(|| panic!("no task output: {out}"));
    assert!(
        Path::new(line).starts_with(&root),
        "WORKDIR `{line}` is not under {}",
        root.display()
    );
}

#[test]
fn a_commit_flows_from_git_through_passed_to_an_artifact_and_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("crates/one")).unwrap();
    std::fs::write(repo.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(repo.join("README.md"), "# demo\n").unwrap();
    std::fs::write(repo.join("crates/one/Cargo.toml"), "[package]\n").unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
            .args(args)
            .current_dir(&repo)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "demo"]);
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&repo)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (code, out, err) = output(
        bin(&dir.path().join("ws"))
            .arg("--pipeline")
            .arg(examples().join("git-to-deploy.hcl"))
            .arg("--var")
            .arg(format!("repo={}", repo.display()))
            .arg("--var")
            .arg(format!("artifacts={}", dir.path().join("store").display()))
            .env("XDG_CACHE_HOME", dir.path().join("cache")),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "test/check │ testing commit {}: 1 crates",
            head.trim()
        )),
        "{out}"
    );
    assert!(
        out.contains("the newest version that passed build"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "deploy/release │ deploying revision {}",
            head.trim()
        )),
        "{out}"
    );
}
