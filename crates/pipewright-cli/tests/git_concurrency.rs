//! Separate `pipewright run` processes, each a pipeline of eight jobs that get the same git
//! repository, all at once against one cache directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const PROCESSES: usize = 4;
const JOBS: usize = 8;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(repo: &Path, text: &str) {
    std::fs::write(repo.join("a.txt"), format!("{text}\n")).unwrap_or_else(|e| panic!("{e}"));
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", text]);
}

/// Eight jobs, each getting the repository and checking it holds the expected commit.
fn pipeline() -> String {
    let names: Vec<String> = (1..=JOBS).map(|i| format!("\"{i}\"")).collect();
    format!(
        r#"
variable "repo" {{
  type = string
}}
variable "expect" {{
  type = string
}}
resource "git" "app" {{
  params {{
    url = var.repo
  }}
}}
job "test" {{
  for_each = toset([{}])
  get "git" "app" {{}}
  task "look" {{
    run "shell" {{
      cmd = "read -r got < app/a.txt && test \"$got\" = \"${{var.expect}}\""
    }}
  }}
}}
"#,
        names.join(", ")
    )
}

fn start(pipeline: &Path, ws: &Path, cache: &Path, repo: &Path, expect: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .arg("run")
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--workspace-root")
        .arg(ws)
        .arg("--var")
        .arg(format!("repo={}", repo.display()))
        .arg("--var")
        .arg(format!("expect={expect}"))
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run pipewright: {e}"))
}

/// Half the rounds start from a cold cache; every round has a new commit to fetch. Twenty
/// rounds take about 40 s on two cores (each run starts some hundred git processes), so CI runs
/// ten.
#[test]
fn separate_runs_of_a_fan_out_share_one_git_mirror() {
    let rounds: usize = if std::env::var_os("CI").is_some() {
        10
    } else {
        20
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap_or_else(|e| panic!("{e}"));
    git(&repo, &["init", "-q"]);
    let file = dir.path().join("fan-out.hcl");
    std::fs::write(&file, pipeline()).unwrap_or_else(|e| panic!("{e}"));
    let cache = dir.path().join("cache");
    let started = Instant::now();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let expect = format!("round {round}");
        commit(&repo, &expect);
        if round % 2 == 0 {
            let _ = std::fs::remove_dir_all(&cache);
        }
        let children: Vec<Child> = (0..PROCESSES)
            .map(|p| {
                let ws = dir.path().join(format!("ws/{round}/{p}"));
                start(&file, &ws, &cache, &repo, &expect)
            })
            .collect();
        for (p, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            if !out.status.success() {
                failures.push(format!(
                    "round {round} process {p}: {}\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    eprintln!(
        "{rounds} rounds of {PROCESSES} runs x {JOBS} jobs: {} failed runs in {:.1?}",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        rounds * PROCESSES,
        failures.join("\n")
    );
}
