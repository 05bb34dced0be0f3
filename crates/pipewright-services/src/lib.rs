//! Sidecar services for Pipewright builds: command-defined service types ([`CommandService`]),
//! the built-in `nats` and `postgres` servers run as host processes ([`ProcessService`]) and,
//! with the `docker` feature, services from any container image (`ContainerService`).

mod command;
#[cfg(feature = "docker")]
pub mod container;
mod process;

pub use command::{Command, CommandService};
#[cfg(feature = "docker")]
pub use container::ContainerService;
pub use process::{ProcessService, free_port};

use pipewright_core::{Error, ErrorKind, Params, Result, Service};
use std::sync::Arc;
use std::time::Duration;

/// The built-in service type names (`postgresql` is another name for `postgres`, as the PikoCI
/// seed pipeline writes it).
pub const BUILTIN_TYPES: &[&str] = &[
    "nats",
    "postgres",
    "postgresql",
    #[cfg(feature = "docker")]
    "docker",
];

/// The params a built-in service type reads, for validation; `None`: not declared (any).
pub fn param_spec(name: &str) -> Option<pipewright_core::ParamSpec> {
    match name {
        #[cfg(feature = "docker")]
        "docker" => Some(container::param_spec()),
        _ => None,
    }
}

/// The built-in service `name` with the step's `params`. `grace` is how long a stopped server
/// gets between `SIGTERM` and `SIGKILL`.
pub fn create(name: &str, params: &Params, grace: Duration) -> Result<Arc<dyn Service>> {
    match name {
        "nats" => Ok(Arc::new(ProcessService::nats(params)?.with_grace(grace))),
        "postgres" | "postgresql" => Ok(Arc::new(
            ProcessService::postgres(params)?.with_grace(grace),
        )),
        #[cfg(feature = "docker")]
        "docker" => Ok(Arc::new(ContainerService::new(name, params)?)),
        other => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "there is no built-in service `{other}` (built-ins: {}); declare a `service_type` \
                 with start/stop commands",
                BUILTIN_TYPES.join(", ")
            ),
        )),
    }
}
