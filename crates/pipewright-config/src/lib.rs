#![doc = include_str!("../README.md")]

mod catalog;
mod condition;
mod container;
mod diag;
mod duration;
mod files;
mod funcs;
mod graph;
mod jobs;
mod load;
mod matrix;
mod model;
mod services;
mod steps;
mod validate;

pub use catalog::{Catalog, ResourceOps, RunnerRule, TypeKind};
pub use condition::{CmpOp, Condition, ConditionError, Operand};
pub use diag::{Diagnostic, FileId, LoadError, Loc, Severity, Sources, render, suggest};
pub use duration::{Schedule, format_duration, parse_duration};
pub use files::{MAX_DEFINITION_BYTES, MAX_PIPELINE_BYTES, ReadError, read_capped};
pub use funcs::function_names;
pub use graph::{to_dot, to_mermaid};
pub use load::{LoadOptions, Loaded, TypeFetcher, load_file, load_str, slugify};
pub use model::*;
pub use services::{IMAGE_SERVICE_TYPE, image_service};

/// The job dependencies induced by `passed`: `(upstream, downstream, resource)` for every
/// constraint, in declaration order.
pub fn passed_edges(p: &Pipeline) -> Vec<(String, String, String)> {
    validate::passed_edges(p)
}
