//! `run --param`: job inputs from the command line, and the notice for server-only settings.

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

const PIPELINE: &str = r#"
job "deploy" {
  approve "prod" {}
  concurrency = 2
  input "target" {
    type    = string
    options = ["dev", "prod"]
    default = "dev"
  }
  input "replicas" {
    type = number
  }
  task "show" {
    run "shell" { cmd = "echo target=$INPUT_TARGET replicas=$INPUT_REPLICAS" }
  }
}
"#;

fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let file = dir.join("p.hcl");
    std::fs::write(&file, PIPELINE).unwrap_or_else(|e| panic!("{e}"));
    output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("run")
            .arg(&file)
            .arg("--workspace-root")
            .arg(dir.join("ws"))
            .args(["--color", "never"])
            .args(args),
    )
}

#[test]
fn params_reach_commands_as_upper_case_input_variables() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["--param", "target=prod", "--param", "replicas=3"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("target=prod replicas=3"), "{out}");
    // Said once, before the run: what `run` does not apply.
    assert!(
        err.contains(
            "`approve` gates are a server feature: `run` proceeds as if approved (deploy)"
        ),
        "{err}"
    );
    assert!(err.contains("`concurrency`"), "{err}");
}

#[test]
fn bad_params_are_usage_errors_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        dir.path(),
        &["--param", "targt=prod", "--param", "replicas=3"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no job input `targt`; did you mean `target`?"),
        "{err}"
    );
    let (code, _, err) = run(
        dir.path(),
        &["--param", "target=qa", "--param", "replicas=x"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("`qa` is not one of the options (dev, prod)"),
        "{err}"
    );
    assert!(err.contains("`x` is not a number"), "{err}");
    let (code, _, err) = run(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("job `deploy` needs input `replicas`: add --param replicas=VALUE"),
        "{err}"
    );
}

/// `--job NAME` where NAME is a matrix group runs every instance of it.
#[test]
fn a_matrix_group_name_runs_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.hcl");
    std::fs::write(
        &file,
        r#"
job "test" {
  matrix {
    python = ["3.12", "3.13"]
  }
  task "t" {
    env = { PY = each.value.python }
    run "shell" { cmd = "echo python=$PY" }
  }
}
job "other" {
  task "t" {
    run "shell" { cmd = "echo other" }
  }
}
"#,
    )
    .unwrap();
    let (code, out, err) = output(
        Command::new(env!("CARGO_BIN_EXE_pipewright"))
            .arg("run")
            .arg(&file)
            .args(["--job", "test", "--color", "never", "--workspace-root"])
            .arg(dir.path().join("ws")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("python=3.12") && out.contains("python=3.13"),
        "{out}"
    );
    assert!(
        !out.contains("echo other") && !out.contains("other/t"),
        "{out}"
    );
}
