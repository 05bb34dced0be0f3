//! `run --param NAME=VALUE`: values for the jobs' `input` blocks, checked against what the
//! jobs declare; and the notice for job settings that only a server applies.

use pipewright_config::{Job, Pipeline, VarType};
use std::collections::BTreeMap;

/// Turns `--param` pairs into typed job-input values for the selected jobs (all jobs when
/// `jobs` is empty). Every problem is reported, one per line.
pub fn job_inputs(
    pipeline: &Pipeline,
    jobs: &[String],
    given: &[(String, String)],
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let selected: Vec<&Job> = if jobs.is_empty() {
        pipeline.jobs.values().collect()
    } else {
        jobs.iter().filter_map(|j| pipeline.jobs.get(j)).collect()
    };
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, raw) in given {
        let Some(input) = selected
            .iter()
            .flat_map(|j| j.inputs.iter())
            .find(|i| i.name == *name)
        else {
            let known: Vec<String> = selected
                .iter()
                .flat_map(|j| j.inputs.iter().map(|i| format!("`{}`", i.name)))
                .collect();
            let hint = pipewright_config::suggest(
                name,
                selected
                    .iter()
                    .flat_map(|j| j.inputs.iter().map(|i| i.name.as_str())),
            )
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
            errors.push(if known.is_empty() {
                format!("--param {name}: the selected jobs declare no `input` blocks")
            } else {
                format!(
                    "--param {name}: no job input `{name}`{hint} (inputs: {})",
                    known.join(", ")
                )
            });
            continue;
        };
        let value = match input.ty {
            VarType::String => Ok(serde_json::Value::String(raw.clone())),
            VarType::Number => raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| format!("--param {name}: `{raw}` is not a number")),
            VarType::Bool => match raw.as_str() {
                "true" => Ok(serde_json::Value::Bool(true)),
                "false" => Ok(serde_json::Value::Bool(false)),
                _ => Err(format!("--param {name}: `{raw}` is not true or false")),
            },
        };
        match value {
            Ok(_) if !input.options.is_empty() && !input.options.contains(raw) => {
                errors.push(format!(
                    "--param {name}: `{raw}` is not one of the options ({})",
                    input.options.join(", ")
                ));
            }
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    for job in &selected {
        for input in job.inputs.iter().filter(|i| i.default.is_none()) {
            if !out.contains_key(&input.name) {
                errors.push(format!(
                    "job `{}` needs input `{}`: add --param {}=VALUE",
                    job.name, input.name, input.name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.dedup();
        Err(errors.join("\n"))
    }
}

/// One line naming the job settings `run` does not apply (they need a server), or `None`.
pub fn server_only_notice(pipeline: &Pipeline, jobs: &[String]) -> Option<String> {
    let selected: Vec<&Job> = if jobs.is_empty() {
        pipeline.jobs.values().collect()
    } else {
        jobs.iter().filter_map(|j| pipeline.jobs.get(j)).collect()
    };
    let mut notes = Vec::new();
    let mut note = |what: &str, names: Vec<&str>| {
        if !names.is_empty() {
            notes.push(format!("{what} ({})", names.join(", ")));
        }
    };
    note(
        "`approve` gates are a server feature: `run` proceeds as if approved",
        selected
            .iter()
            .filter(|j| j.approve.is_some())
            .map(|j| j.name.as_str())
            .collect(),
    );
    note(
        "`tags` route builds to workers: `run` runs every job on this machine",
        selected
            .iter()
            .filter(|j| !j.tags.is_empty())
            .map(|j| j.name.as_str())
            .collect(),
    );
    note(
        "`concurrency`, `serial_groups` and `interruptible` limit builds across runs: `run` starts one build per job",
        selected
            .iter()
            .filter(|j| j.concurrency != 1 || !j.serial_groups.is_empty() || j.interruptible)
            .map(|j| j.name.as_str())
            .collect(),
    );
    (!notes.is_empty()).then(|| format!("note: {}", notes.join("; ")))
}
