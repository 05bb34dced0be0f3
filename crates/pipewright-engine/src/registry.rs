//! The plug-ins an engine can use, by type name.

use pipewright_config::{Pipeline, TypeSource};
use pipewright_core::{Error, ErrorKind, Params, Resource, Result, Runner, SecretSource, Service};
use pipewright_runners::{ExecRunner, ShellRunner, TemplateRunner};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Makes a [`Resource`] for a `resource` block of a pipeline.
pub trait ResourceFactory: Send + Sync {
    /// The resource for `decl` (its params are in `decl.params`).
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>>;
}

impl<F> ResourceFactory for F
where
    F: Fn(&pipewright_config::Resource) -> Result<Arc<dyn Resource>> + Send + Sync,
{
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        self(decl)
    }
}

/// Makes a [`Service`] for a `service` step; `params` are the step's overrides.
pub trait ServiceFactory: Send + Sync {
    /// The service named `name` with `params`.
    fn create(&self, name: &str, params: &Params) -> Result<Arc<dyn Service>>;
}

impl<F> ServiceFactory for F
where
    F: Fn(&str, &Params) -> Result<Arc<dyn Service>> + Send + Sync,
{
    fn create(&self, name: &str, params: &Params) -> Result<Arc<dyn Service>> {
        self(name, params)
    }
}

/// Runners, resource types, service types and secret types by name.
///
/// [`Registry::with_builtins`] offers the host runners `exec` and `shell`; a pipeline's own
/// `runner_type` blocks with a `run` template are added per run. Register Rust plug-ins with the
/// `runner`, `resource_type`, `service_type` and `secret_type` methods.
#[derive(Clone, Default)]
pub struct Registry {
    runners: BTreeMap<String, Arc<dyn Runner>>,
    resources: BTreeMap<String, Arc<dyn ResourceFactory>>,
    services: BTreeMap<String, Arc<dyn ServiceFactory>>,
    secrets: BTreeMap<String, Arc<dyn SecretSource>>,
    grace: Option<Duration>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("runners", &self.runners.keys().collect::<Vec<_>>())
            .field("resource_types", &self.resources.keys().collect::<Vec<_>>())
            .field("service_types", &self.services.keys().collect::<Vec<_>>())
            .field("secret_types", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the host runners `exec` and `shell`, which stop a task with `SIGTERM`,
    /// then `SIGKILL` after `grace`.
    pub fn with_builtins(grace: Duration) -> Self {
        let mut r = Self {
            grace: Some(grace),
            ..Self::default()
        };
        r.runner("exec", Arc::new(ExecRunner::new().with_grace(grace)));
        r.runner("shell", Arc::new(ShellRunner::new().with_grace(grace)));
        r
    }

    /// Registers a runner under `name` (replacing one of the same name).
    pub fn runner(&mut self, name: impl Into<String>, runner: Arc<dyn Runner>) -> &mut Self {
        self.runners.insert(name.into(), runner);
        self
    }

    /// Registers a resource type.
    pub fn resource_type(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn ResourceFactory>,
    ) -> &mut Self {
        self.resources.insert(name.into(), factory);
        self
    }

    /// Registers a service type.
    pub fn service_type(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn ServiceFactory>,
    ) -> &mut Self {
        self.services.insert(name.into(), factory);
        self
    }

    /// Registers a secret type.
    pub fn secret_type(
        &mut self,
        name: impl Into<String>,
        source: Arc<dyn SecretSource>,
    ) -> &mut Self {
        self.secrets.insert(name.into(), source);
        self
    }

    /// The runner a `run "<name>"` block of `pipeline` uses: the pipeline's own template when
    /// it declares `runner_type "<name>" { run { … } }`, the built-in it points at with
    /// `source = "pipewright://…"`, else the registered runner of that name.
    pub fn resolve_runner(&self, pipeline: &Pipeline, name: &str) -> Result<Arc<dyn Runner>> {
        if let Some(decl) = pipeline.runner_types.get(name) {
            if let Some(run) = &decl.run {
                let t = TemplateRunner::new(name, run.path.clone(), run.args.clone());
                let t = match self.grace {
                    Some(g) => t.with_grace(g),
                    None => t,
                };
                return Ok(Arc::new(t));
            }
            if let TypeSource::Builtin { name: builtin } = &decl.source
                && let Some(r) = self.runners.get(builtin)
            {
                return Ok(r.clone());
            }
        }
        self.runners.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.runners.keys().map(String::as_str).collect();
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "runner `{name}` is not available here (available: {})",
                    known.join(", ")
                ),
            )
        })
    }

    /// The resource for a `resource` block, made by its type's factory.
    pub fn resource(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        match self.resources.get(&decl.type_name) {
            Some(f) => f.create(decl),
            None => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "resource type `{}` is not available in this engine; run the job with \
                     `--input {}=DIR` to use a local directory instead",
                    decl.type_name, decl.name
                ),
            )
            .with_context("resource", &decl.id)),
        }
    }

    /// The service for a `service` step.
    pub fn service(&self, name: &str, params: &Params) -> Result<Arc<dyn Service>> {
        match self.services.get(name) {
            Some(f) => f.create(name, params),
            None => Err(Error::new(
                ErrorKind::Unsupported,
                format!("service type `{name}` is not available in this engine"),
            )),
        }
    }

    /// The secret source for a secret type.
    pub fn secret_source(&self, name: &str) -> Result<Arc<dyn SecretSource>> {
        self.secrets.get(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "secret type `{name}` is not available in this engine; pass the variable \
                     with `--var` instead"
                ),
            )
        })
    }
}
