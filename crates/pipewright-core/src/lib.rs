#![doc = include_str!("../README.md")]

mod blob;
mod context;
pub mod duration;
mod error;
mod event;
pub mod owner;
mod secret;
mod status;
mod traits;
mod types;

pub use blob::{BlobStore, SMALL_BLOB_MAX};
pub use context::{BuildMeta, Ctx, LogSink, NullSink, SendFuture, Stream};
pub use duration::{Schedule, format_duration, parse_duration};
pub use error::{Error, ErrorKind, Result};
pub use event::{BuildVersions, Event, EventKind, SCHEMA_VERSION, StepId, StepRecord, StepRole};
pub use secret::{SecretMap, SecretRef, SecretValue};
pub use status::{BuildStatus, ExitStatus, StepStatus};
pub use traits::{
    ParamSpec, Resource, ResourceCapabilities, Runner, RunnerCapabilities, SecretSource, Service,
    TaskSpec, Workspace,
};
pub use types::{Metadata, MetadataField, Params, Version, env_key, flatten_json};

/// Re-exported so plug-in authors use the same cancellation token type as the engine.
pub use tokio_util::sync::CancellationToken;
