//! `matrix` with `include` and `exclude`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_config::{LoadOptions, Pipeline, StepKind, load_str};

fn load(matrix: &str) -> Pipeline {
    let src = format!(
        "job \"test\" {{\n  matrix {{\n{matrix}\n  }}\n  task \"t\" {{\n    run \"shell\" {{ cmd = \"true\" }}\n    env = {{ PY = each.value.python, OS = each.value.os, EXP = each.value.experimental }}\n  }}\n}}\n"
    );
    load_str("pipeline.hcl", &src, &LoadOptions::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .pipeline
}

fn error(matrix: &str) -> String {
    let src = format!(
        "job \"test\" {{\n  matrix {{\n{matrix}\n  }}\n  task \"t\" {{\n    run \"shell\" {{ cmd = \"true\" }}\n  }}\n}}\n"
    );
    match load_str("pipeline.hcl", &src, &LoadOptions::default()) {
        Ok(l) => pipewright_config::render(&l.warnings, &l.sources, false),
        Err(e) => e.render(false),
    }
}

fn env(p: &Pipeline, job: &str, key: &str) -> String {
    match &p.jobs[job].steps[0].kind {
        StepKind::Task(t) => t.env[key].clone(),
        _ => panic!("not a task"),
    }
}

#[test]
fn exclude_removes_and_include_adds_or_extends_combinations() {
    let p = load(
        r#"
    python = ["3.11", "3.12", "3.13"]
    os     = ["linux", "macos"]
    exclude = [{ python = "3.11", os = "macos" }]
    include = [
      { python = "3.13", experimental = "yes" },
      { python = "3.14", os = "linux", experimental = "yes" },
    ]"#,
    );
    let names: Vec<&str> = p.groups["test"].iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "test--3-11-linux",
            "test--3-12-linux",
            "test--3-12-macos",
            "test--3-13-linux",
            "test--3-13-macos",
            "test--3-14-linux",
        ]
    );
    assert_eq!(env(&p, "test--3-13-macos", "EXP"), "yes");
    assert_eq!(env(&p, "test--3-12-linux", "EXP"), "");
    assert_eq!(env(&p, "test--3-14-linux", "PY"), "3.14");
    assert_eq!(env(&p, "test--3-14-linux", "OS"), "linux");
}

#[test]
fn a_lone_include_entry_is_a_combination_not_an_axis() {
    let p = load(
        r#"
    python = ["3.12"]
    os     = ["linux"]
    include = [{ python = "3.12", os = "windows", experimental = "no" }]"#,
    );
    assert_eq!(
        p.groups["test"],
        [
            "test--3-12-linux".to_owned(),
            "test--3-12-windows".to_owned()
        ]
    );
}

#[test]
fn look_alike_keys_are_rejected_with_a_suggestion() {
    let out = error("    python = [\"3.12\"]\n    includes = [{ python = \"3.13\" }]");
    assert!(
        out.contains("matrix key `includes` looks like `include`"),
        "{out}"
    );
    assert!(out.contains("pipeline.hcl:4:5"), "{out}");
    let out = error("    python = [\"3.12\"]\n    Exclude = [{ python = \"3.12\" }]");
    assert!(out.contains("looks like `exclude`"), "{out}");
}

#[test]
fn an_include_that_duplicates_a_combination_is_named() {
    let out = error(
        "    python = [\"3.12\"]\n    include = [{ python = \"3.13\" }, { python = \"3.13\" }]",
    );
    assert!(out.contains("the combination `3.13` twice"), "{out}");
    assert!(!out.contains("declared twice"), "{out}");
}

#[test]
fn an_exclude_that_matches_nothing_warns() {
    let out = error("    python = [\"3.12\"]\n    exclude = [{ python = \"3.10\" }]");
    assert!(out.contains("removes no combination"), "{out}");
}

#[test]
fn include_entries_must_be_maps() {
    let out = error("    python = [\"3.12\"]\n    include = [\"3.13\"]");
    assert!(out.contains("must be a non-empty list of maps"), "{out}");
}
