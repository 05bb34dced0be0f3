//! Values of a job's `input` blocks given to a manual trigger: checked against what the job
//! declares, every problem named.

use crate::error::{ServerError, ServerResult};
use pipewright_config::{Job, VarType};
use serde_json::Value;
use std::collections::BTreeMap;

/// `given` checked against `job`'s inputs: unknown names, wrong types, values outside the
/// options and missing required inputs are one 400 naming each.
pub(crate) fn check(
    job: &Job,
    given: BTreeMap<String, Value>,
) -> ServerResult<BTreeMap<String, Value>> {
    let mut errors = Vec::new();
    for (name, value) in &given {
        let Some(input) = job.inputs.iter().find(|i| i.name == *name) else {
            let hint = pipewright_config::suggest(name, job.inputs.iter().map(|i| i.name.as_str()))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            errors.push(if job.inputs.is_empty() {
                format!("input `{name}`: job `{}` declares no inputs", job.name)
            } else {
                format!("input `{name}`: job `{}` has no such input{hint}", job.name)
            });
            continue;
        };
        let ok = match input.ty {
            VarType::String => value.is_string(),
            VarType::Number => value.is_number(),
            VarType::Bool => value.is_boolean(),
        };
        if !ok {
            errors.push(format!(
                "input `{name}` must be a {}, got {value}",
                input.ty.as_str()
            ));
            continue;
        }
        if !input.options.is_empty() {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !input.options.contains(&text) {
                errors.push(format!(
                    "input `{name}`: `{text}` is not one of the options ({})",
                    input.options.join(", ")
                ));
            }
        }
    }
    for input in job.inputs.iter().filter(|i| i.default.is_none()) {
        if !given.contains_key(&input.name) {
            errors.push(format!("input `{}` is required", input.name));
        }
    }
    if errors.is_empty() {
        Ok(given)
    } else {
        Err(ServerError::BadRequest(errors.join("; ")))
    }
}
