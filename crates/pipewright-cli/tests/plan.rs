//! `pipewright plan` and `run --plan`: a plan printed by one process runs in another with the
//! same result, without the pipeline file.

use std::path::Path;
use std::process::Command;

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

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?} failed");
}

fn pipeline(repo: &Path, marker: &Path) -> String {
    format!(
        r#"
resource "git" "src" {{
  params {{ url = "{}" }}
}}
job "test" {{
  input "mode" {{
    type    = string
    default = "quick"
  }}
  get "git" "src" {{}}
  task "count" {{
    run "shell" {{ cmd = "cat src/file.txt; echo \"$INPUT_MODE $GET_SRC_REF\" >> {}" }}
  }}
}}
"#,
        repo.display(),
        marker.display()
    )
}

#[test]
fn a_plan_round_trips_through_json_and_runs_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("file.txt"), "one\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let marker = dir.path().join("seen");
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, pipeline(&repo, &marker)).unwrap();
    let cache = dir.path().join("cache");
    let env = |c: &mut Command| {
        c.env("XDG_CACHE_HOME", &cache);
    };

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    env(&mut cmd);
    let (code, text, err) = output(cmd.args(["plan"]).arg(&file).args(["--job", "test"]));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("git.src"), "{text}");
    assert!(text.contains("(the newest version)"), "{text}");
    assert!(text.contains("task count (runner `shell`)"), "{text}");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    env(&mut cmd);
    let (code, json, err) = output(cmd.args(["plan"]).arg(&file).args([
        "--job",
        "test",
        "--param",
        "mode=full",
        "--output",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["schema"], 1);
    let sha = plan["inputs"]["git.src"]["version"]["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    // A new commit after planning: the plan still runs the planned one.
    std::fs::write(repo.join("file.txt"), "two\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);

    // The pipeline file is gone: the plan is all the second process has.
    std::fs::remove_file(&file).unwrap();
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, &json).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipewright"));
    env(&mut cmd);
    let (code, out, err) = output(
        cmd.args(["run", "--plan"])
            .arg(&plan_file)
            .arg("--workspace-root")
            .arg(dir.path().join("ws"))
            .args(["--output", "json"]),
    );
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["builds"][0]["job"], "test");
    assert_eq!(
        summary["builds"][0]["versions"]["git.src"]["ref"],
        sha.as_str()
    );
    assert!(out.contains("one"), "the planned commit was fetched: {out}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        format!("full {sha}\n")
    );
}

#[test]
fn a_plan_that_cannot_be_made_or_read_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(
        &file,
        "resource \"fs\" \"d\" {\n  params { path = \"/nonexistent-dir\" }\n}\njob \"a\" {\n  get \"fs\" \"d\" {}\n}\njob \"b\" {\n  get \"fs\" \"d\" { passed = [\"a\"] }\n}\n",
    )
    .unwrap();
    let (code, _, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["plan"])
            .arg(&file)
            .args(["--job", "b"]),
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot plan job `b`"), "{err}");
    assert!(err.contains("--input d=DIR"), "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": 99}").unwrap();
    let (code, _, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .args(["run", "--plan"])
            .arg(&bad),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("is not a plan written by `pipewright plan --output json`"),
        "{err}"
    );
}

/// The seed's pipeline writes `name = "app"` on its git resource and `cd app` in its task; the
/// checkout lands there. Its typeless variable is a string and its `service "postgresql"` is
/// the built-in postgres (started for real: the PostgreSQL server binaries are needed, as for the
/// other postgres tests); with a local repository for the URL, a default for the Vault-backed
/// password and the host shell for the Docker image, the job runs as the seed wrote it.
#[test]
fn the_seed_pipeline_runs_with_local_substitutes() {
    if !pipewright_testing::servers::require("postgres", "apt-get install postgresql") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("Makefile"),
        "integration-test:\n\techo integration ok\n",
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let have_make = Command::new("make").arg("--version").output().is_ok();
    let seed = include_str!("../../pipewright-config/tests/fixtures/seed.hcl")
        .replace("https://github.com/org/app", &repo.display().to_string());
    // What needs a network or a registry: the secret store, the image. The rest is unchanged.
    let seed = seed
        .replace(
            "variable \"db_password\" {\n  secret \"vault\" {\n    path = \"secret/data/db\"\n    key  = \"password\"\n  }\n}",
            "variable \"db_password\" {\n  default = \"local\"\n}",
        )
        .replace(
            "run \"docker\" {\n      image = \"golang:1.25\"\n      cmd   = \"cd app && make integration-test\"\n      args  = [\"-v\", \"/cache/go:/root/go/pkg/mod\"]\n    }",
            &format!(
                "run \"shell\" {{\n      cmd = \"cd app && {}\"\n    }}",
                if have_make { "make integration-test" } else { "test -f Makefile && echo integration ok" }
            ),
        )
        // A free port instead of 5432, which another server on the machine may hold.
        .replace("port     = \"5432\"", &format!("port     = \"{}\"", free_port()));
    let file = dir.path().join("seed.hcl");
    std::fs::write(&file, &seed).unwrap();
    let (code, out, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("run")
            .arg(&file)
            .args(["--job", "test", "--color", "never", "--workspace-root"])
            .arg(dir.path().join("ws"))
            .env("XDG_CACHE_HOME", dir.path().join("cache")),
    );
    assert_eq!(code, 0, "{out}\n{err}\n{seed}");
    assert!(out.contains("integration ok"), "{out}");
    assert!(out.contains("postgresql"), "the service ran: {out}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// `url = "."` (git-to-deploy's default) names the directory `pipewright` runs in, on the
/// first check (a clone) and on later ones (a fetch, which git runs elsewhere).
#[test]
fn a_relative_repository_path_works_on_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("f"), "1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    let file = dir.path().join("p.hcl");
    std::fs::write(
        &file,
        "resource \"git\" \"src\" {\n  params { url = \".\" }\n}\njob \"j\" {\n  get \"git\" \"src\" {}\n}\n",
    )
    .unwrap();
    let mut shas = Vec::new();
    for round in 0..2 {
        if round == 1 {
            std::fs::write(repo.join("f"), "2\n").unwrap();
            git(&repo, &["commit", "-q", "-am", "two"]);
        }
        let (code, json, err) = output(
            Command::new(env!("CARGO_BIN_EXE_pipewright"))
                .args(["plan"])
                .arg(&file)
                .args(["--job", "j", "--output", "json"])
                .current_dir(&repo)
                .env("XDG_CACHE_HOME", dir.path().join("cache")),
        );
        assert_eq!(code, 0, "round {round}: {err}");
        let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
        shas.push(
            plan["inputs"]["git.src"]["version"]["ref"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_ne!(shas[0], shas[1], "the second check fetched the new commit");
}
