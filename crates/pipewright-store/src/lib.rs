#![doc = include_str!("../README.md")]

mod build;
mod error;
mod event;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod rules;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use build::{Build, BuildId, BuildState, BuildStore, NewBuild, StepSummary};
pub use error::{StoreError, StoreResult};
pub use event::{EventRecord, EventStore};
pub use memory::MemoryStore;
pub use pipewright_versions::{VersionId, VersionStore};
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Everything a server keeps: versions, builds and their events. Implemented for every type
/// that implements the three traits, and object-safe (`Arc<dyn Store>`); a `&dyn Store`
/// coerces to `&dyn VersionStore` (and the others) where one is wanted.
pub trait Store: VersionStore + BuildStore + EventStore {}

impl<T: VersionStore + BuildStore + EventStore + ?Sized> Store for T {}

/// Milliseconds since the Unix epoch, now (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
