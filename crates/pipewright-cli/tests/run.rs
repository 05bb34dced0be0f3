//! `pipewright run` as a process: output, exit codes, JSON events, and Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin(ws: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    c.arg("run").arg("--workspace-root").arg(ws);
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

#[test]
fn ctrl_c_cancels_runs_hooks_and_reaps_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let p = dir.path().join("p.hcl");
    std::fs::write(
        &p,
        format!(
            r#"
job "j" {{
  task "hang" {{
    run "shell" {{
      cmd = "setsid sleep 321 </dev/null >/dev/null 2>&1 & echo $! >> {d}/pids; (trap '' TERM; exec sleep 322) & echo $! >> {d}/pids; sleep 323"
    }}
  }}
  ensure "shell" {{
    cmd = "echo ensure $BUILD_STATUS > {d}/ensure"
  }}
}}
"#
        ),
    )
    .unwrap();
    let child = bin(&dir.path().join("ws"))
        .arg("--pipeline")
        .arg(&p)
        .args(["--kill-grace", "500ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("pids");
    for _ in 0..1000 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.lines().count() == 2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelling"));
    assert!(stdout.contains("pipeline cancelled"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ensure")).unwrap(),
        "ensure cancelled\n"
    );
    for pid in std::fs::read_to_string(&pid_file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse::<i32>().unwrap())
    {
        assert!(!alive(pid), "process {pid} survived Ctrl-C");
    }
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
