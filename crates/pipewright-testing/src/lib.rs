#![doc = include_str!("../README.md")]

pub mod log;
pub mod resource;
pub mod runner;
pub mod secret;
pub mod servers;
pub mod service;

pub use log::RecordingSink;
pub use resource::{ResourceFixture, check_resource};
pub use runner::RunnerSuite;
pub use secret::{SecretFixture, check_secret_source};
pub use service::check_service;
