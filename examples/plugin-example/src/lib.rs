//! An example third-party plug-in crate: a [`NiceRunner`] and a [`ReleaseDir`] resource, written
//! against `pipewright-core` alone. `tests/conformance.rs` runs the `pipewright-testing` suites
//! against both.

mod release;
mod runner;

pub use release::ReleaseDir;
pub use runner::NiceRunner;
