//! Bad input to the `pipewright` binary: builds that cannot start, files that are not
//! pipelines, closed pipes. Each ends with a clear error and never with a false success.

use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
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

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, text) {
        panic!("cannot write {}: {e}", p.display());
    }
    p
}

const ONE_TASK: &str =
    "job \"a\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"echo hi\" }\n  }\n}\n";

#[test]
fn a_build_that_cannot_start_is_errored_not_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.hcl", ONE_TASK);
    // A workspace root that is a file: no workspace can be made under it (even as root).
    let root = write(dir.path(), "not-a-dir", "");
    let (code, out, _) = output(
        bin()
            .arg("run")
            .arg(&file)
            .arg("--workspace-root")
            .arg(&root)
            .args(["--color", "never"]),
    );
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("pipeline succeeded"), "{out}");
    assert!(out.contains("pipeline errored"), "{out}");
    assert!(out.contains("could not start"), "{out}");

    let (code, out, _) = output(
        bin()
            .arg("run")
            .arg(&file)
            .arg("--workspace-root")
            .arg(&root)
            .args(["--output", "json"]),
    );
    assert_eq!(code, 1);
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["status"], "errored", "{summary}");
    assert_eq!(summary["builds"][0]["status"], "errored", "{summary}");
    assert!(
        summary["builds"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("could not start"),
        "{summary}"
    );
    // The event stream shows the build end too.
    assert!(out.contains("\"status\":\"errored\""), "{out}");
}

#[test]
fn an_empty_pipeline_warns_on_validate_and_fails_on_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "empty.hcl", "# nothing yet\n");
    let (code, _, err) = output(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 0);
    assert!(err.contains("warning: no jobs in"), "{err}");
    let (code, out, err) = output(bin().arg("run").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 1);
    assert!(err.contains("no jobs in"), "{err}");
    assert!(!out.contains("succeeded"), "{out}");
}

#[test]
fn run_takes_the_file_positionally_or_by_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.hcl", ONE_TASK);
    let ws = dir.path().join("ws");
    for args in [vec!["run"], vec!["run", "--pipeline"]] {
        let (code, out, err) = output(
            bin()
                .args(&args)
                .arg(&file)
                .arg("--workspace-root")
                .arg(&ws)
                .args(["--color", "never"]),
        );
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("pipeline succeeded"), "{out}");
    }
    let (code, _, err) = output(bin().arg("run"));
    assert_eq!(code, 2, "{err}");
}

/// `pipewright … | head -1`: the reader goes away; the command ends without a panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.hcl", ONE_TASK);
    for args in [
        vec!["run", "--output", "json"],
        vec!["validate", "--output", "json"],
    ] {
        let mut child = bin()
            .args(&args)
            .arg(&file)
            .arg("--workspace-root")
            .arg(dir.path().join("ws"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before anything is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn a_source_that_is_not_a_definition_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    // A file full of something secret-looking that is not HCL.
    let key = write(
        dir.path(),
        "key.pem",
        "-----BEGIN KEY-----\nTOPSECRET-abc123\n-----END KEY-----\n",
    );
    for src in [key.display().to_string(), "/proc/self/environ".to_owned()] {
        let file = write(
            dir.path(),
            "p.hcl",
            &format!("runner_type \"x\" {{\n  source = \"{src}\"\n}}\n{ONE_TASK}"),
        );
        let (code, out, err) = output(
            bin()
                .arg("validate")
                .arg(&file)
                .args(["--color", "never"])
                .env("PW_TEST_ENV_SECRET", "envsecret-987"),
        );
        assert_eq!(code, 1, "{src}: {err}");
        assert!(err.contains("is not a valid type definition"), "{err}");
        assert!(err.contains("p.hcl:2:"), "{err}");
        for leaked in ["TOPSECRET", "BEGIN KEY", "envsecret-987", "PATH="] {
            assert!(!err.contains(leaked), "{src} leaked {leaked}: {err}");
            assert!(!out.contains(leaked), "{src} leaked {leaked}: {out}");
        }
    }
}

#[test]
fn relative_sources_stay_in_the_pipeline_directory_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("pipelines");
    std::fs::create_dir(&inner).unwrap();
    write(
        dir.path(),
        "shared.hcl",
        "runner_type \"x\" {\n  run {\n    path = \"/bin/echo\"\n    args = [\"hi\"]\n  }\n}\n",
    );
    let file = write(
        &inner,
        "p.hcl",
        &format!("runner_type \"x\" {{\n  source = \"../shared.hcl\"\n}}\n{ONE_TASK}"),
    );
    let (code, _, err) = output(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("outside the pipeline's directory"), "{err}");
    assert!(err.contains("--allow-sources-outside"), "{err}");
    let (code, _, err) = output(
        bin()
            .arg("validate")
            .arg(&file)
            .arg("--allow-sources-outside")
            .args(["--color", "never"]),
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn devices_fifos_and_huge_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.hcl");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for src in ["/dev/zero".to_owned(), fifo.display().to_string()] {
        let file = write(
            dir.path(),
            "p.hcl",
            &format!("runner_type \"x\" {{\n  source = \"{src}\"\n}}\n{ONE_TASK}"),
        );
        let (code, _, err) = output(bin().arg("validate").arg(&file).args(["--color", "never"]));
        assert_eq!(code, 1, "{src}: {err}");
        assert!(err.contains("not a regular file"), "{src}: {err}");
    }
    // The pipeline itself: a FIFO and a file over the cap.
    let (code, _, err) = output(bin().arg("validate").arg(&fifo).args(["--color", "never"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");
    let big = dir.path().join("big.hcl");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(pipewright_config_cap() + 1).unwrap();
    let (code, _, err) = output(bin().arg("validate").arg(&big).args(["--color", "never"]));
    assert_eq!(code, 1);
    assert!(err.contains("larger than"), "{err}");
}

fn pipewright_config_cap() -> u64 {
    4 << 20
}

/// The README's first example with a hostile value: the value stays text.
#[test]
fn a_variable_cannot_inject_shell_code_into_the_hello_example() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let hello = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/pipelines/hello.hcl");
    let (code, out, err) = output(
        bin()
            .arg("run")
            .arg(&hello)
            .arg("--var")
            .arg(format!("greeting=$(touch {})", marker.display()))
            .arg("--workspace-root")
            .arg(dir.path().join("ws"))
            .args(["--color", "never"]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(!marker.exists(), "the value ran as shell code");
    assert!(out.contains("$(touch"), "{out}");
}

/// `validate` names the safe form when a variable is spliced into a shell command.
#[test]
fn validate_warns_about_spliced_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.hcl",
        "variable \"v\" {\n  type = string\n  default = \"x\"\n}\njob \"a\" {\n  task \"t\" {\n    run \"shell\" { cmd = \"echo ${var.v}\" }\n  }\n}\n",
    );
    let (code, _, err) = output(bin().arg("validate").arg(&file).args(["--color", "never"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: variable `v` is spliced into a shell command"),
        "{err}"
    );
    assert!(err.contains("env = { V = var.v }"), "{err}");
}
