//! The four plug-in traits. All are object-safe: the engine holds them as `Arc<dyn Trait>`.

use crate::{Ctx, ExitStatus, Metadata, Params, Result, SecretMap, SecretRef, Version};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a [`Resource`] can do; validation rejects a `put` on a resource that cannot put before
/// anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceCapabilities {
    /// `check` discovers versions.
    pub check: bool,
    /// `get` fetches a version.
    pub get: bool,
    /// `put` pushes and reports versions.
    pub put: bool,
}

impl ResourceCapabilities {
    /// Check, get and put.
    pub const ALL: Self = Self {
        check: true,
        get: true,
        put: true,
    };
    /// Check and get, no put.
    pub const READ_ONLY: Self = Self {
        check: true,
        get: true,
        put: false,
    };
}

/// Something external that has versions: a git branch, a timer, an artifact store.
///
/// `check` discovers versions, `get` fetches one into a directory, `put` pushes a directory and
/// reports the versions it produced.
///
/// ```
/// use async_trait::async_trait;
/// use pipewright_core::{Ctx, Metadata, Params, Resource, Result, Version};
/// use std::path::Path;
///
/// /// A resource whose only version is a fixed string.
/// struct Constant(String);
///
/// #[async_trait]
/// impl Resource for Constant {
///     async fn check(&self, _ctx: &Ctx, _last: Option<&Version>) -> Result<Vec<Version>> {
///         Ok(vec![Version::from_pairs([("value", self.0.as_str())])])
///     }
///     async fn get(&self, _ctx: &Ctx, v: &Version, dest: &Path) -> Result<Metadata> {
///         std::fs::write(dest.join("value"), v.get("value").unwrap_or_default())?;
///         Ok(Metadata::new())
///     }
///     async fn put(&self, _ctx: &Ctx, _src: &Path, _params: &Params) -> Result<Vec<Version>> {
///         Err(pipewright_core::Error::unsupported("put", "constant"))
///     }
/// }
///
/// let r: Box<dyn Resource> = Box::new(Constant("1.0".into()));
/// # let _ = r;
/// ```
#[async_trait]
pub trait Resource: Send + Sync {
    /// What this resource supports. Defaults to check, get and put.
    fn capabilities(&self) -> ResourceCapabilities {
        ResourceCapabilities::ALL
    }

    /// Versions newer than `last`, oldest first. On the first check (`last` is `None`) return only
    /// the newest version, so adding a resource does not replay its history.
    async fn check(&self, ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>>;

    /// Fetches `version` into `dest` (an existing, empty directory) and returns its metadata.
    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata>;

    /// Pushes from `src` (the build's workspace) with the step's `params`; returns the versions
    /// produced, which the build records as its outputs.
    async fn put(&self, ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>>;
}

/// What a [`Runner`] offers, so validation can reject a pipeline that needs more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RunnerCapabilities {
    /// Tasks are isolated from the host (a container, a sandbox).
    pub isolated: bool,
    /// Resource limits (`cpus`, `memory`) are enforced.
    pub limits: bool,
}

/// The params a plug-in reads from its block, so validation can reject a typo (`shel`) or a
/// missing param at load time, before anything runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSpec {
    /// Params that must be set.
    pub required: Vec<&'static str>,
    /// Exactly one of these must be set (empty: no such rule).
    pub exactly_one_of: Vec<&'static str>,
    /// Every param read (besides `args`); any other is an error with a suggestion. `None`:
    /// any param is accepted and the plug-in checks them itself when it runs.
    pub known: Option<Vec<&'static str>>,
}

impl ParamSpec {
    /// Accepts any param (the default for plug-ins that do not declare theirs).
    pub fn any() -> Self {
        Self::default()
    }

    /// Exactly these params are read; `required` of them must be set.
    pub fn exactly(known: &[&'static str], required: &[&'static str]) -> Self {
        Self {
            required: required.to_vec(),
            exactly_one_of: Vec::new(),
            known: Some(known.to_vec()),
        }
    }

    /// Adds an exactly-one-of rule.
    pub fn one_of(mut self, names: &[&'static str]) -> Self {
        self.exactly_one_of = names.to_vec();
        self
    }
}

/// What to run: the runner's params from the `run "<runner>" { … }` block, its `args`, and the
/// environment for the process. Secrets appear only in `env`, never in `args`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSpec {
    /// The step's name, for labels and messages.
    pub name: String,
    /// Runner params (`path`, `image`, `cmd`…).
    pub params: Params,
    /// The `args` list.
    pub args: Vec<String>,
    /// Environment for the process, on top of [`Ctx::env`].
    pub env: BTreeMap<String, String>,
}

/// The build's working directory and the file a task writes `KEY=VALUE` exports to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The working directory (`$WORKDIR`), shared by the build's steps.
    pub dir: PathBuf,
    /// The file behind `$PIPEWRIGHT_OUTPUT` for this step.
    pub output_file: PathBuf,
}

impl Workspace {
    /// The file behind `$PIPEWRIGHT_ENV` for this step: the output file's path with `.env`
    /// appended, so every runner that maps one maps the other.
    pub fn env_file(&self) -> PathBuf {
        let mut p = self.output_file.clone().into_os_string();
        p.push(".env");
        PathBuf::from(p)
    }
}

/// Where a task executes: host processes, containers, or anything a plug-in author writes.
///
/// A runner streams output to [`Ctx::log`] as it comes and, on cancellation or when
/// [`Ctx::deadline`] passes, stops everything it started (the whole process group or container)
/// before returning.
///
/// ```
/// use async_trait::async_trait;
/// use pipewright_core::{Ctx, ExitStatus, Result, Runner, Stream, TaskSpec, Workspace};
///
/// /// A runner that "runs" a task by echoing its args.
/// struct Echo;
///
/// #[async_trait]
/// impl Runner for Echo {
///     async fn run(&self, ctx: &Ctx, task: &TaskSpec, _ws: &Workspace) -> Result<ExitStatus> {
///         ctx.log.write(Stream::Stdout, task.args.join(" ").as_bytes());
///         Ok(ExitStatus::SUCCESS)
///     }
/// }
/// let r: std::sync::Arc<dyn Runner> = std::sync::Arc::new(Echo);
/// # let _ = r;
/// ```
#[async_trait]
pub trait Runner: Send + Sync {
    /// What this runner offers. Defaults to nothing beyond running a process.
    fn capabilities(&self) -> RunnerCapabilities {
        RunnerCapabilities::default()
    }

    /// The params this runner reads from a `run` block. Defaults to any: declare them so a typo
    /// is a load-time error with a suggestion instead of a silently ignored setting.
    fn params(&self) -> ParamSpec {
        ParamSpec::any()
    }

    /// Runs the task to completion and returns how it ended. A non-zero exit is `Ok`; `Err` means
    /// the runner itself failed (image missing, daemon down, cancelled).
    async fn run(&self, ctx: &Ctx, task: &TaskSpec, workspace: &Workspace) -> Result<ExitStatus>;
}

/// A sidecar (database, message broker…) started before the steps that need it.
///
/// The engine calls `start`, then polls `ready` until it answers `true` or its timeout passes,
/// and calls `stop` exactly once whatever happens afterwards, with a fresh context, so a
/// service never outlives its build.
///
/// ```
/// use async_trait::async_trait;
/// use pipewright_core::{Ctx, Result, Service};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// #[derive(Default)]
/// struct Flag(AtomicBool);
///
/// #[async_trait]
/// impl Service for Flag {
///     async fn start(&self, _ctx: &Ctx) -> Result<()> { self.0.store(true, Ordering::SeqCst); Ok(()) }
///     async fn ready(&self, _ctx: &Ctx) -> Result<bool> { Ok(self.0.load(Ordering::SeqCst)) }
///     async fn stop(&self, _ctx: &Ctx) -> Result<()> { self.0.store(false, Ordering::SeqCst); Ok(()) }
/// }
/// # let _: Box<dyn Service> = Box::new(Flag::default());
/// ```
#[async_trait]
pub trait Service: Send + Sync {
    /// Starts the service. An error fails the build.
    async fn start(&self, ctx: &Ctx) -> Result<()>;
    /// One readiness probe: `Ok(true)` when ready, `Ok(false)` to be asked again.
    async fn ready(&self, ctx: &Ctx) -> Result<bool>;
    /// Stops the service and frees what it holds (ports, containers). Errors are logged and do
    /// not change the build's status.
    async fn stop(&self, ctx: &Ctx) -> Result<()>;
    /// Variables the steps after a ready service see, as `SERVICE_<STEP>_<KEY>` (its URL,
    /// port…). Asked once, after it is ready.
    fn exports(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
    /// `(interval, timeout)` for readiness probes when the service decides them (a
    /// `ready_check` block); `None` uses the engine's defaults.
    fn ready_policy(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        None
    }
}

/// Where credentials come from (environment, files, Vault…).
///
/// Values are returned as [`crate::SecretValue`]s; the engine registers every value with the
/// build's log masker before any log line of the build is written.
///
/// ```
/// use async_trait::async_trait;
/// use pipewright_core::{Ctx, Error, ErrorKind, Result, SecretMap, SecretRef, SecretSource, SecretValue};
///
/// struct Fixed;
///
/// #[async_trait]
/// impl SecretSource for Fixed {
///     async fn get(&self, _ctx: &Ctx, r: &SecretRef) -> Result<SecretMap> {
///         if r.path != "db" {
///             return Err(Error::new(ErrorKind::NotFound, format!("no secret at {}", r.path)));
///         }
///         Ok(SecretMap::from([("password".to_owned(), SecretValue::from("s3cret"))]))
///     }
/// }
/// # let _: Box<dyn SecretSource> = Box::new(Fixed);
/// ```
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// Fetches every key at `secret.path` (the engine picks `secret.key` and caches the whole map
    /// for the build, so one path is fetched once). A source that can only return the key it
    /// was asked for may: the engine asks again for another key of the same path.
    async fn get(&self, ctx: &Ctx, secret: &SecretRef) -> Result<SecretMap>;

    /// The credentials the source itself authenticates with (a Vault token). The engine masks
    /// them like the values the source returns.
    fn credentials(&self) -> Vec<crate::SecretValue> {
        Vec::new()
    }
}
