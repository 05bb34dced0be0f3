//! The `pipewright` binary, run as a process.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines")
}

fn run(cmd: &mut Command) -> (i32, String, String) {
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
fn every_example_validates() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hcl") {
            let (code, out, err) = run(bin().arg("validate").arg(&path).args(["--color", "never"]));
            assert_eq!(code, 0, "{}: {err}", path.display());
            assert!(out.contains("is valid"), "{out}");
        }
    }
}

#[test]
fn invalid_pipeline_exits_1_with_positioned_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, "job \"a\" {\n  timout = \"5m\"\n  task \"t\" {\n    run \"shel\" { cmd = \"true\" }\n  }\n}\n").unwrap();
    let (code, out, err) = run(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("p.hcl:2:3"), "{err}");
    assert!(err.contains("did you mean `timeout`?"), "{err}");
    assert!(err.contains("p.hcl:4:5"), "{err}");
    assert!(err.contains("did you mean `shell`?"), "{err}");
    assert!(err.contains("pipeline is invalid: 2 errors"), "{err}");
}

#[test]
fn validate_refuses_git_values_that_git_would_read_as_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(
        &file,
        "resource \"git\" \"app\" {\n  params {\n    url = \"--upload-pack=touch /tmp/x\"\n  }\n}\njob \"a\" {\n  get \"git\" \"app\" {}\n}\n",
    )
    .unwrap();
    let (code, _, err) = run(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`url` of resource `git.app` starts with `-`"),
        "{err}"
    );
    assert!(err.contains("p.hcl:3:11"), "{err}");
    assert!(err.contains("pipeline is invalid: 1 error"), "{err}");
}

#[test]
fn validate_reports_param_values_a_builtin_type_refuses_at_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(
        &file,
        r#"resource "registry-image" "app" {
  params {
    repository = "registry.example.com/app"
    tag        = "stable"
    tag_regex  = "[0-9]+"
  }
}
resource "cron" "tick" {
  params { schedule = "every day" }
}
job "a" {
  get "registry-image" "app" {}
}
"#,
    )
    .unwrap();
    let (code, _, err) = run(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("resource `registry-image.app`: set `tag`"),
        "{err}"
    );
    assert!(err.contains("p.hcl:1:1"), "{err}");
    assert!(
        err.contains("resource `cron.tick`: cron `schedule`"),
        "{err}"
    );
    assert!(err.contains("p.hcl:8:1"), "{err}");
    assert!(err.contains("pipeline is invalid: 2 errors"), "{err}");
}

#[test]
fn json_output_for_tools() {
    let (code, out, _) = run(bin()
        .arg("validate")
        .arg(examples().join("hello.hcl"))
        .args(["--output", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["pipeline"]["jobs"]["hello"]["steps"][0]["step"], "task");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.hcl");
    std::fs::write(&file, "job \"a\" {\n  concurrency = -1\n}\n").unwrap();
    let (code, out, _) = run(bin().arg("validate").arg(&file).args(["--output", "json"]));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert!(
        v["diagnostics"][0]["position"]
            .as_str()
            .unwrap()
            .ends_with("bad.hcl:2:17")
    );
}

#[test]
fn vars_flags() {
    let hello = examples().join("hello.hcl");
    let (code, out, _) =
        run(bin()
            .arg("validate")
            .arg(&hello)
            .args(["--var", "greeting=hi", "--output", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["pipeline"]["variables"]["greeting"]["value"], "hi");
    assert_eq!(
        v["pipeline"]["variables"]["greeting"]["origin"]["kind"],
        "cli"
    );

    let (code, _, err) =
        run(bin()
            .arg("validate")
            .arg(&hello)
            .args(["--var", "greting=hi", "--color", "never"]));
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `greeting`?"), "{err}");

    let (code, _, err) = run(bin().arg("validate").arg(&hello).args(["--var", "novalue"]));
    assert_eq!(code, 2, "usage errors exit 2");
    assert!(err.contains("expected NAME=VALUE"), "{err}");
}

#[test]
fn graph_formats() {
    let f = examples().join("fan-out-fan-in.hcl");
    let (code, out, _) = run(bin().arg("graph").arg(&f));
    assert_eq!(code, 0);
    assert!(out.starts_with("graph LR\n"));
    assert!(
        out.contains("j_build -->|artifact.binary| j_deploy"),
        "{out}"
    );
    let (code, out, _) = run(bin().arg("graph").arg(&f).args(["--format", "dot"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph pipeline {"));
    assert!(out.contains("\"r:git.app\" -> \"j:lint\";"), "{out}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _, err) = run(bin().args(["validate", "/nonexistent/p.hcl", "--color", "never"]));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read `/nonexistent/p.hcl`"), "{err}");
}

#[test]
fn help_is_there() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    assert!(
        out.contains("validate") && out.contains("graph") && out.contains("Examples:"),
        "{out}"
    );
}
