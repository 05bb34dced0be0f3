#![doc = include_str!("../README.md")]
//!
//! # Crates
//!
//! This facade re-exports the workspace's crates so an application can depend on one name:
//!
//! - [`core`]: domain types and the four plug-in traits (`Resource`, `Runner`, `Service`,
//!   `SecretSource`).
//! - [`config`] (feature `config`, on by default): the HCL pipeline language.
//! - [`dag`] (feature `dag`, on by default): the generic async DAG executor.
//! - [`engine`] and [`runners`] (feature `engine`, on by default): run jobs and pipelines, with
//!   the host runners `exec`, `shell` and `runner_type` templates.

pub use pipewright_core as core;

#[cfg(feature = "config")]
pub use pipewright_config as config;

#[cfg(feature = "dag")]
pub use pipewright_dag as dag;

#[cfg(feature = "engine")]
pub use pipewright_engine as engine;

#[cfg(feature = "engine")]
pub use pipewright_runners as runners;
