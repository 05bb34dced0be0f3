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
//! - [`engine`] (feature `engine`, on by default): run jobs and pipelines. Its
//!   `Registry::builtins` holds every built-in plug-in, from the crates below, and
//!   `Registry::catalog` gives validation the same list.
//! - [`runners`] (`exec`, `shell`, `docker`, `podman`, templates), [`resources`] (`git`,
//!   `cron`, `fs`, `artifact`), [`images`] (`registry-image`), [`services`] (`nats`,
//!   `postgres`, container images), [`secrets`] (`env`, `file`, `vault` and the
//!   log masker), [`versions`] (version history and `passed`): feature `engine`.
//! - [`notify`] (feature `notify`, part of `engine`): the built-in notification types
//!   (`webhook`, `slack`, `discord`, `email`, `github-check`, `gitlab`, `gitea`) and the
//!   dispatch rules.
//! - [`fetch`] (feature `fetch`, on by default): `https://` type definitions.
//! - `store` (feature `store`): what a server keeps, in memory, SQLite or PostgreSQL; `api`
//!   (feature `api`): the HTTP API's JSON types; `queue` (feature `queue`): the build queue, in
//!   memory or on NATS JetStream; `blobs` (feature `blobs`): blob stores for artifacts and
//!   caches across machines (a directory, the NATS object store, S3); `server` (feature
//!   `server`, which takes the others): check loops, triggers, the scheduler, workers and the
//!   HTTP API; `ui` (feature `ui`): the web UI's assets and graph layout.

pub use pipewright_core as core;

#[cfg(feature = "config")]
pub use pipewright_config as config;

#[cfg(feature = "dag")]
pub use pipewright_dag as dag;

#[cfg(feature = "engine")]
pub use pipewright_engine as engine;

#[cfg(feature = "engine")]
pub use pipewright_runners as runners;

#[cfg(feature = "engine")]
pub use pipewright_resources as resources;

#[cfg(feature = "images")]
pub use pipewright_images as images;

#[cfg(feature = "engine")]
pub use pipewright_services as services;

#[cfg(feature = "engine")]
pub use pipewright_secrets as secrets;

#[cfg(feature = "engine")]
pub use pipewright_versions as versions;

#[cfg(feature = "notify")]
pub use pipewright_notify as notify;

#[cfg(feature = "fetch")]
pub use pipewright_fetch as fetch;

#[cfg(feature = "store")]
pub use pipewright_store as store;

#[cfg(feature = "api")]
pub use pipewright_api as api;

#[cfg(feature = "queue")]
pub use pipewright_queue as queue;

#[cfg(feature = "ui")]
pub use pipewright_ui as ui;

#[cfg(feature = "blobs")]
pub use pipewright_blobs as blobs;

#[cfg(feature = "server")]
pub use pipewright_server as server;
