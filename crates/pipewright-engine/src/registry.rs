//! The plug-ins an engine can use, by type name.

use pipewright_config::{Catalog, Pipeline, ResourceOps, TypeSource};
use pipewright_core::{
    Error, ErrorKind, ParamSpec, Params, Resource, ResourceCapabilities, Result, Runner,
    SecretSource, Service,
};
#[cfg(feature = "docker")]
use pipewright_runners::DockerRunner;
#[cfg(feature = "podman")]
use pipewright_runners::PodmanRunner;
use pipewright_runners::{ExecRunner, ShellRunner, TemplateRunner};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Makes a [`Resource`] for a `resource` block of a pipeline.
pub trait ResourceFactory: Send + Sync {
    /// The resource for `decl` (its params are in `decl.params`).
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>>;

    /// What the resources this factory makes can do; validation refuses a `put` of a type
    /// without `put` at load time. Defaults to everything.
    fn capabilities(&self) -> ResourceCapabilities {
        ResourceCapabilities::ALL
    }

    /// Params (of the resource and its puts) and pinned-version fields the resource hands to a
    /// command as arguments: validation refuses values starting with `-` there, which the
    /// command would read as options. Defaults to none.
    fn arguments(&self) -> &'static [&'static str] {
        &[]
    }

    /// Every param a `resource` block of this type may set, and every param of its puts:
    /// validation refuses others with a suggestion. Defaults to `None`, any param.
    fn params(&self) -> Option<pipewright_resources::ResourceParams> {
        None
    }
}

/// The built-in resource types (`git`, `cron`, `fs`, `artifact`), with their capabilities.
struct BuiltinResource {
    capabilities: ResourceCapabilities,
    arguments: &'static [&'static str],
    params: Option<pipewright_resources::ResourceParams>,
    cache_root: PathBuf,
}

impl ResourceFactory for BuiltinResource {
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        pipewright_resources::create(&decl.type_name, &decl.params, &self.cache_root)
    }

    fn capabilities(&self) -> ResourceCapabilities {
        self.capabilities
    }

    fn arguments(&self) -> &'static [&'static str] {
        self.arguments
    }

    fn params(&self) -> Option<pipewright_resources::ResourceParams> {
        self.params
    }
}

/// The built-in `registry-image` resource type.
#[cfg(feature = "images")]
struct ImageResource;

#[cfg(feature = "images")]
impl ResourceFactory for ImageResource {
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        Ok(Arc::new(pipewright_images::RegistryImage::from_params(
            &decl.params,
        )?))
    }

    fn params(&self) -> Option<pipewright_resources::ResourceParams> {
        Some(pipewright_resources::ResourceParams {
            resource: pipewright_images::RESOURCE_PARAMS,
            put: pipewright_images::PUT_PARAMS,
        })
    }
}

/// Settings of the built-in plug-ins that [`Registry::builtins`] registers.
#[derive(Debug, Clone)]
pub struct BuiltinOptions {
    /// How long a stopped task or server gets between `SIGTERM` and `SIGKILL`.
    pub grace: Duration,
    /// Where `git` keeps its mirrors.
    pub cache_root: PathBuf,
    /// Whether `run "docker"` may ask for `privileged = true`.
    pub allow_privileged: bool,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            grace: pipewright_runners::DEFAULT_GRACE,
            cache_root: std::env::temp_dir().join("pipewright-cache"),
            allow_privileged: false,
        }
    }
}

impl<F> ResourceFactory for F
where
    F: Fn(&pipewright_config::Resource) -> Result<Arc<dyn Resource>> + Send + Sync,
{
    fn create(&self, decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        self(decl)
    }
}

/// Makes a [`SecretSource`] for a secret type from its declaration's config (`address`,
/// `token`, `format`…; secrets in it already resolved).
pub trait SecretFactory: Send + Sync {
    /// The source configured by `config`.
    fn create(&self, config: &Params) -> Result<Arc<dyn SecretSource>>;
}

impl<F> SecretFactory for F
where
    F: Fn(&Params) -> Result<Arc<dyn SecretSource>> + Send + Sync,
{
    fn create(&self, config: &Params) -> Result<Arc<dyn SecretSource>> {
        self(config)
    }
}

/// Makes a [`Service`] for a `service` step; `params` are the step's overrides.
pub trait ServiceFactory: Send + Sync {
    /// The service named `name` with `params`.
    fn create(&self, name: &str, params: &Params) -> Result<Arc<dyn Service>>;

    /// The params a `service` step of this type may set: validation refuses others with a
    /// suggestion. Defaults to `None`, any param.
    fn params(&self) -> Option<ParamSpec> {
        None
    }
}

/// A built-in service type of `pipewright-services`, with its declared params.
struct BuiltinService {
    grace: Duration,
    params: Option<ParamSpec>,
}

impl ServiceFactory for BuiltinService {
    fn create(&self, name: &str, params: &Params) -> Result<Arc<dyn Service>> {
        pipewright_services::create(name, params, self.grace)
    }

    fn params(&self) -> Option<ParamSpec> {
        self.params.clone()
    }
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
    secret_factories: BTreeMap<String, Arc<dyn SecretFactory>>,
    /// Built-in notification types this engine sends, with their params.
    notifications: BTreeMap<String, ParamSpec>,
    grace: Option<Duration>,
    /// Starts the containers of jobs with a `container` block.
    #[cfg(feature = "docker")]
    job_containers: Option<Arc<DockerRunner>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("runners", &self.runners.keys().collect::<Vec<_>>())
            .field("resource_types", &self.resources.keys().collect::<Vec<_>>())
            .field("service_types", &self.services.keys().collect::<Vec<_>>())
            .field("secret_types", &self.secrets.keys().collect::<Vec<_>>())
            .field(
                "secret_factories",
                &self.secret_factories.keys().collect::<Vec<_>>(),
            )
            .field(
                "notification_types",
                &self.notifications.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the runners `exec`, `shell`, `docker` and `podman`, which stop a task
    /// with `SIGTERM`, then `SIGKILL` after `grace`; the services `nats`, `postgres` and
    /// `docker` (container images); and the secret
    /// types `env`, `file` and `vault`.
    pub fn with_builtins(grace: Duration) -> Self {
        Self::builtins(&BuiltinOptions {
            grace,
            ..BuiltinOptions::default()
        })
    }

    /// Every built-in plug-in: the runners `exec`, `shell`, `docker` and `podman`; the
    /// resource types `git`, `cron`, `fs`, `artifact` and `registry-image` (feature `images`);
    /// the services `nats` and `postgres` (also `postgresql`) and, with the `docker` feature,
    /// `docker` (a service from a container image, `service "NAME" { image = "…" }`); the
    /// secret types `env`, `file` and `vault`; the notification types of
    /// `pipewright-notify` (feature `notify`). This is the one list of built-ins: validation uses [`Registry::catalog`], so what validates can run.
    pub fn builtins(opts: &BuiltinOptions) -> Self {
        let grace = opts.grace;
        let mut r = Self {
            grace: Some(grace),
            ..Self::default()
        };
        r.runner("exec", Arc::new(ExecRunner::new().with_grace(grace)));
        r.runner("shell", Arc::new(ShellRunner::new().with_grace(grace)));
        // Connects to the daemon on first use only, so a host without Docker is fine.
        #[cfg(feature = "docker")]
        {
            let docker = Arc::new(
                DockerRunner::new()
                    .with_grace(grace)
                    .allow_privileged(opts.allow_privileged),
            );
            r.runner("docker", docker.clone());
            r.job_containers(docker);
        }
        #[cfg(feature = "podman")]
        r.runner(
            "podman",
            Arc::new(
                PodmanRunner::new()
                    .with_grace(grace)
                    .allow_privileged(opts.allow_privileged),
            ),
        );
        r.builtin_resources(&opts.cache_root);
        #[cfg(feature = "images")]
        r.resource_type(pipewright_images::TYPE_NAME, Arc::new(ImageResource));
        for name in pipewright_services::BUILTIN_TYPES {
            r.service_type(
                *name,
                Arc::new(BuiltinService {
                    grace,
                    params: pipewright_services::param_spec(name),
                }),
            );
        }
        for name in pipewright_secrets::BUILTIN_TYPES {
            r.secret_factory(
                *name,
                Arc::new(move |config: &Params| {
                    let base = std::env::current_dir().unwrap_or_default();
                    pipewright_secrets::create(name, config, &base)
                }),
            );
        }
        #[cfg(feature = "notify")]
        r.builtin_notifications();
        r
    }

    /// Starts the containers of jobs with a `container` block with `docker` (the built-ins use
    /// their `docker` runner, so both share one connection and one privileged policy).
    #[cfg(feature = "docker")]
    pub fn job_containers(&mut self, docker: Arc<DockerRunner>) -> &mut Self {
        self.job_containers = Some(docker);
        self
    }

    /// What starts job containers, if anything.
    #[cfg(feature = "docker")]
    pub(crate) fn job_container_runner(&self) -> Option<&Arc<DockerRunner>> {
        self.job_containers.as_ref()
    }

    /// Registers the built-in notification types (`webhook`, `slack`, `discord`, `email`,
    /// `github-check`, `gitlab`, `gitea`).
    #[cfg(feature = "notify")]
    pub fn builtin_notifications(&mut self) -> &mut Self {
        for name in pipewright_notify::BUILTIN_TYPES {
            if let Some(spec) = pipewright_notify::param_spec(name) {
                self.notifications.insert((*name).to_owned(), spec);
            }
        }
        self
    }

    /// True when `name` is a built-in notification type this registry sends.
    pub fn has_notification_type(&self, name: &str) -> bool {
        self.notifications.contains_key(name)
    }

    /// Registers (or re-registers) the built-in resource types with their mirrors and caches
    /// under `cache_root`.
    pub fn builtin_resources(&mut self, cache_root: &Path) -> &mut Self {
        let mut only_check_get = ResourceCapabilities::ALL;
        only_check_get.put = false;
        for name in pipewright_resources::BUILTIN_TYPES {
            let capabilities = if name == "cron" {
                only_check_get
            } else {
                ResourceCapabilities::ALL
            };
            self.resource_type(
                name,
                Arc::new(BuiltinResource {
                    capabilities,
                    // git takes these on its command line (after `--end-of-options`).
                    arguments: if name == "git" {
                        &["url", "branch", "tag_filter", "tag", "ref"]
                    } else {
                        &[]
                    },
                    params: pipewright_resources::builtin_params(name),
                    cache_root: cache_root.to_path_buf(),
                }),
            );
        }
        self
    }

    /// Re-registers the built-in `artifact` type over `store` (see
    /// [`pipewright_resources::ArtifactResource::in_blobs`]): what a build on one worker puts,
    /// a build on another gets, and the server's checks list.
    pub fn artifacts_in(&mut self, store: Arc<dyn pipewright_core::BlobStore>) -> &mut Self {
        self.resource_type(
            "artifact",
            Arc::new(
                move |decl: &pipewright_config::Resource| -> Result<Arc<dyn Resource>> {
                    Ok(Arc::new(pipewright_resources::ArtifactResource::in_blobs(
                        store.clone(),
                        &decl.params,
                        &decl.name,
                    )))
                },
            ),
        );
        self
    }

    /// The names and capabilities validation needs, derived from what is registered: a
    /// pipeline that loads with this catalogue names only plug-ins this registry can run.
    /// Register a plug-in once, here, and both validation and running know it.
    pub fn catalog(&self) -> Catalog {
        let mut secret_types: Vec<String> = self
            .secrets
            .keys()
            .chain(self.secret_factories.keys())
            .cloned()
            .collect();
        secret_types.sort();
        secret_types.dedup();
        Catalog {
            resource_types: self
                .resources
                .iter()
                .map(|(n, f)| {
                    let c = f.capabilities();
                    let params = f.params();
                    (
                        n.clone(),
                        ResourceOps {
                            get: c.check || c.get,
                            put: c.put,
                            arguments: f.arguments(),
                            params: params.map(|p| p.resource),
                            put_params: params.map(|p| p.put),
                        },
                    )
                })
                .collect(),
            runners: self
                .runners
                .iter()
                .map(|(n, r)| (n.clone(), r.params()))
                .collect(),
            service_types: self.services.keys().cloned().collect(),
            service_params: self
                .services
                .iter()
                .filter_map(|(n, f)| Some((n.clone(), f.params()?)))
                .collect(),
            secret_types,
            notification_types: self.notifications.clone(),
        }
    }

    /// Registers a secret type made per pipeline from its `secret_type` config (a built-in
    /// that a declaration points at with `source = "pipewright://NAME"`).
    pub fn secret_factory(
        &mut self,
        name: impl Into<String>,
        factory: Arc<dyn SecretFactory>,
    ) -> &mut Self {
        self.secret_factories.insert(name.into(), factory);
        self
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

    /// Makes each resource of a registered (built-in or Rust) type once, as a build would, so
    /// a param value its type refuses (`format = "tar"`, a bad schedule) is reported at the
    /// resource's block when the pipeline is loaded, not when a build runs. Types the
    /// pipeline defines with commands are left alone. Nothing is contacted.
    pub fn check_resources(&self, pipeline: &Pipeline) -> Vec<pipewright_config::Diagnostic> {
        pipeline
            .resources
            .values()
            .filter(|r| {
                pipeline
                    .resource_types
                    .get(&r.type_name)
                    .is_none_or(|t| t.commands.is_empty())
                    && self.resources.contains_key(&r.type_name)
            })
            .filter_map(|r| {
                self.resource(r).err().map(|e| {
                    pipewright_config::Diagnostic::error(
                        format!("resource `{}`: {}", r.id, e.message()),
                        Some(r.loc),
                    )
                })
            })
            .collect()
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

    /// The source registered with [`Registry::secret_type`] under `name`, if any.
    pub fn fixed_secret_source(&self, name: &str) -> Option<Arc<dyn SecretSource>> {
        self.secrets.get(name).cloned()
    }

    /// A source made by the factory registered under `name` with `config`.
    pub fn secret_from_factory(
        &self,
        name: &str,
        config: &Params,
    ) -> Result<Arc<dyn SecretSource>> {
        match self.secret_factories.get(name) {
            Some(f) => f.create(config),
            None => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "secret type `{name}` is not available in this engine; declare it with a                      `get` command, or pass the variable with `--var`"
                ),
            )),
        }
    }
}
