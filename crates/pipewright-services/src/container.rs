//! `docker`: a service run from any container image through the Docker Engine API (bollard).

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HealthStatusEnum, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use pipewright_core::owner::{
    LABEL_BUILD, LABEL_JOB, LABEL_MANAGED, LABEL_OWNER, container_owner, container_owner_alive,
};
use pipewright_core::{Ctx, Error, ErrorKind, ParamSpec, Params, Result, Service, Stream};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Label holding the name of the service a container runs.
pub const LABEL_SERVICE: &str = "io.pipewright.service";

/// Every param a `service` step of the `docker` type may set. The engine adds `name` (the
/// step's label) itself.
pub const PARAMS: &[&str] = &[
    "image",
    "ports",
    "host_port",
    "env",
    "cmd",
    "entrypoint",
    "health",
    "pull",
    "ready_timeout",
    "ready_interval",
];

/// The params of the `docker` service type, for validation.
pub fn param_spec() -> ParamSpec {
    ParamSpec::exactly(PARAMS, &["image"])
}

/// How long one `health` command may run before it counts as "not ready yet".
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The interval when only `ready_timeout` is set, and the timeout when only `ready_interval` is.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(250);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines quoted when the container exits before it is ready.
const TAIL_LINES: usize = 20;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// When to pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pull {
    Always,
    IfNotPresent,
    Never,
}

/// How readiness is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    /// A command run inside the container (the Docker exec API); exit 0 is ready.
    Command(Vec<String>),
    /// The image's HEALTHCHECK, else a TCP connection to the first published port.
    Image,
}

/// What a `docker` service step asks for.
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    image: String,
    ports: Vec<u16>,
    host_port: Option<u16>,
    env: BTreeMap<String, String>,
    cmd: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    health: Health,
    pull: Pull,
    policy: Option<(Duration, Duration)>,
}

fn invalid(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, m)
}

fn port(v: &serde_json::Value, what: &str) -> Result<u16> {
    let text = match v {
        serde_json::Value::String(s) => s.trim().trim_end_matches("/tcp").to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        o => o.to_string(),
    };
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(format!(
            "`{what}` must be a TCP port number (1-65535), got `{text}`"
        ))),
    }
}

/// A command given as a list (run as is) or a string (run with `/bin/sh -c`).
fn command(params: &Params, key: &str) -> Result<Option<Vec<String>>> {
    match params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => {
            Ok(Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]))
        }
        Some(serde_json::Value::Array(items)) => Ok(Some(
            items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => s.clone(),
                    o => o.to_string(),
                })
                .collect(),
        )),
        Some(_) => Err(invalid(format!(
            "`{key}` must be a list of strings or a shell command string"
        ))),
    }
}

fn duration(params: &Params, key: &str) -> Result<Option<Duration>> {
    match params.get_str(key).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => pipewright_core::parse_duration(&s)
            .map(Some)
            .map_err(|e| invalid(format!("`{key}`: {e} (use e.g. 500ms, 30s, 2m)"))),
    }
}

impl Settings {
    fn from_params(type_name: &str, params: &Params) -> Result<Self> {
        let image = params
            .get_str("image")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                invalid("a container service needs `image` (e.g. image = \"postgres:16\")")
            })?;
        let ports = match params.get("ports") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => {
                a.iter().map(|p| port(p, "ports")).collect::<Result<_>>()?
            }
            Some(one) => vec![port(one, "ports")?],
        };
        let host_port = params
            .get("host_port")
            .map(|p| port(p, "host_port"))
            .transpose()?;
        if host_port.is_some() && ports.is_empty() {
            return Err(invalid(
                "`host_port` maps the first of `ports`: add `ports = [CONTAINER_PORT]`",
            ));
        }
        let mut env = BTreeMap::new();
        match params.get("env") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        o => o.to_string(),
                    };
                    env.insert(k.clone(), v);
                }
            }
            Some(_) => return Err(invalid("`env` must be a map: env = { KEY = \"value\" }")),
        }
        let pull = match params.get_str("pull").as_deref() {
            None | Some("" | "if-not-present" | "missing") => Pull::IfNotPresent,
            Some("always") => Pull::Always,
            Some("never") => Pull::Never,
            Some(o) => {
                return Err(invalid(format!(
                    "`pull` is always, if-not-present or never, got `{o}`"
                )));
            }
        };
        let health = match command(params, "health")? {
            Some(c) => Health::Command(c),
            None => Health::Image,
        };
        let policy = match (
            duration(params, "ready_interval")?,
            duration(params, "ready_timeout")?,
        ) {
            (None, None) => None,
            (i, t) => Some((i.unwrap_or(DEFAULT_INTERVAL), t.unwrap_or(DEFAULT_TIMEOUT))),
        };
        Ok(Self {
            name: params
                .get_str("name")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| type_name.to_owned()),
            image,
            ports,
            host_port,
            env,
            cmd: command(params, "cmd")?,
            entrypoint: command(params, "entrypoint")?,
            health,
            pull,
            policy,
        })
    }
}

/// What a started container publishes.
#[derive(Debug, Clone, Default)]
struct Started {
    id: String,
    /// Container port → host port on 127.0.0.1, in the order of `ports`.
    ports: Vec<(u16, u16)>,
}

/// A service run from a container image: `image`, `ports` (container ports published on
/// 127.0.0.1, each on a free host port; `host_port` fixes the first), `env`, `cmd`,
/// `entrypoint`, `health`, `pull`, `ready_timeout` and `ready_interval`.
///
/// Ready when the image's HEALTHCHECK says `healthy`; without one, when the `health` command
/// run inside the container exits 0; without either, when the first published port answers.
/// A container that exits first fails the step with its last log lines. The container carries
/// the labels of task containers (managed, owner, build, job) plus [`LABEL_SERVICE`]; `stop`
/// removes it with its volumes, and one whose engine died is removed the next time a
/// container service (or the docker runner) starts on the same host.
///
/// Exports `HOST`, `PORT` (the first port's host side), `PORT_<CONTAINERPORT>` for every port,
/// `ADDR` (`host:port`) and `CONTAINER` (the id).
#[derive(Debug)]
pub struct ContainerService {
    settings: Settings,
    client: tokio::sync::OnceCell<std::result::Result<Docker, String>>,
    started: Mutex<Option<Started>>,
}

impl ContainerService {
    /// The service for a step with `params`; `type_name` names it when `name` is not set.
    pub fn new(type_name: &str, params: &Params) -> Result<Self> {
        Ok(Self {
            settings: Settings::from_params(type_name, params)?,
            client: tokio::sync::OnceCell::new(),
            started: Mutex::new(None),
        })
    }

    /// The service's name (its `name` param, else its type's).
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    async fn client(&self) -> Result<&Docker> {
        let c = self
            .client
            .get_or_init(|| async {
                let d = Docker::connect_with_local_defaults()
                    .map_err(|e| format!("cannot connect to the Docker daemon: {e}"))?;
                d.negotiate_version().await.map_err(|e| {
                    format!("cannot reach the Docker daemon (is dockerd running?): {e}")
                })
            })
            .await;
        c.as_ref()
            .map_err(|m| Error::new(ErrorKind::Unavailable, m.clone()))
    }

    fn id(&self) -> Option<String> {
        self.started
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.id.clone()))
    }

    fn create_body(&self, ctx: &Ctx) -> ContainerCreateBody {
        let s = &self.settings;
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "1".to_owned()),
            (LABEL_OWNER.to_owned(), container_owner().to_owned()),
            (LABEL_BUILD.to_owned(), ctx.build.build_id.clone()),
            (LABEL_JOB.to_owned(), ctx.build.job.clone()),
            (LABEL_SERVICE.to_owned(), s.name.clone()),
        ]);
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = s
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // No host port: the daemon picks a free one, so two builds never race for it.
                let host = if i == 0 { s.host_port } else { None };
                (
                    format!("{p}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: host.map(|h| h.to_string()),
                    }]),
                )
            })
            .collect();
        ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: s.cmd.clone(),
            entrypoint: s.entrypoint.clone(),
            env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: Some(s.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }

    /// The host ports the daemon bound, in the order of `ports`; none when the container has
    /// already exited (`ready` then reports that, with its logs).
    async fn published(&self, d: &Docker, id: &str) -> Result<Vec<(u16, u16)>> {
        let info = d
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot inspect: {e}")))?;
        if info.state.and_then(|s| s.running) != Some(true) {
            return Ok(Vec::new());
        }
        let map = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default();
        let mut out = Vec::new();
        for p in &self.settings.ports {
            let host = map
                .get(&format!("{p}/tcp"))
                .and_then(|b| b.as_ref())
                .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()));
            match host {
                Some(h) => out.push((*p, h)),
                None => {
                    return Err(Error::new(
                        ErrorKind::Failed,
                        format!("the daemon published no host port for container port {p}"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The container's last log lines, also written to the step's log.
    async fn tail(&self, d: &Docker, ctx: &Ctx, id: &str) -> String {
        let mut logs = d.logs(
            id,
            Some(
                LogsOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .tail(&TAIL_LINES.to_string())
                    .build(),
            ),
        );
        let mut text = String::new();
        while let Some(Ok(item)) = logs.next().await {
            let (stream, bytes) = match item {
                LogOutput::StdErr { message } => (Stream::Stderr, message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (Stream::Stdout, message)
                }
                LogOutput::StdIn { .. } => continue,
            };
            ctx.log.write(stream, &bytes);
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text.trim_end().to_owned()
    }

    /// Runs the `health` command inside the container: `Ok(true)` when it exits 0.
    async fn probe(&self, d: &Docker, id: &str, cmd: &[String]) -> Result<bool> {
        let exec = d
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..CreateExecOptions::default()
                },
            )
            .await;
        // The container may have just exited; the caller's state check reports it.
        let Ok(exec) = exec else { return Ok(false) };
        let run = async {
            if let Ok(StartExecResults::Attached { mut output, .. }) =
                d.start_exec(&exec.id, None).await
            {
                while output.next().await.is_some() {}
            }
            d.inspect_exec(&exec.id)
                .await
                .ok()
                .and_then(|i| i.exit_code)
        };
        Ok(matches!(
            tokio::time::timeout(PROBE_TIMEOUT, run).await,
            Ok(Some(0))
        ))
    }
}

/// Whether something listens behind a published port. The userland proxy accepts every
/// connection and closes it at once when nothing listens in the container, so an accepted
/// connection only counts when it stays open (or the server speaks first).
async fn answers(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// Makes sure `image` is present according to `policy`.
async fn ensure_image(d: &Docker, ctx: &Ctx, image: &str, policy: Pull) -> Result<()> {
    let present = d.inspect_image(image).await.is_ok();
    match (policy, present) {
        (Pull::Never, false) => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "image `{image}` is not present and `pull = \"never\"`; build or load it first"
            ),
        )),
        (Pull::IfNotPresent | Pull::Never, true) => Ok(()),
        _ => {
            ctx.log.write(
                Stream::System,
                format!("pulling image {image}\n").as_bytes(),
            );
            let (name, tag) = split_tag(image);
            let mut s = d.create_image(
                Some(
                    CreateImageOptionsBuilder::new()
                        .from_image(name)
                        .tag(tag)
                        .build(),
                ),
                None,
                None,
            );
            while let Some(item) = s.next().await {
                if let Err(e) = item {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("image `{image}` is not present and could not be pulled: {e}"),
                    ));
                }
            }
            Ok(())
        }
    }
}

/// `repo:tag` → (`repo`, `tag`); a port in the registry host is not a tag.
fn split_tag(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (image, "latest"),
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Removes `id` with its anonymous volumes; a container already gone is fine.
async fn remove(d: &Docker, id: &str) -> Result<()> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match d.remove_container(id, Some(opts)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        // Already being removed (a reap by another engine): it will be gone.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot remove service container {id}: {e}; remove it with `docker rm -f {id}`"
            ),
        )),
    }
}

/// Removes every Pipewright container on this host whose owning engine is gone (a SIGKILLed
/// `pipewright run` leaves its service containers behind). Returns how many were removed.
pub async fn reap_orphans(d: &Docker) -> usize {
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![LABEL_MANAGED])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = match d.list_containers(Some(opts)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list containers to reap");
            return 0;
        }
    };
    let mut n = 0;
    for c in list {
        let owner = c
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_OWNER))
            .cloned()
            .unwrap_or_default();
        if container_owner_alive(&owner) {
            continue;
        }
        if let Some(id) = c.id {
            tracing::info!(container = %id, owner, "removing a container left by a dead engine");
            if remove(d, &id).await.is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// Reaps once per process: the first container service to start does it.
async fn reap_once(d: &Docker) {
    static REAPED: tokio::sync::OnceCell<usize> = tokio::sync::OnceCell::const_new();
    REAPED.get_or_init(|| reap_orphans(d)).await;
}

#[async_trait]
impl Service for ContainerService {
    async fn start(&self, ctx: &Ctx) -> Result<()> {
        let s = &self.settings;
        let d = self.client().await?;
        reap_once(d).await;
        ensure_image(d, ctx, &s.image, s.pull).await?;
        let name = format!(
            "pw-{}-svc-{}-{}-{}",
            sanitize(&ctx.build.build_id),
            sanitize(&s.name),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let created = d
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                self.create_body(ctx),
            )
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot create a container from `{}`: {e}", s.image),
                )
            })?;
        // Recorded before it starts, so that `stop` removes a container that failed to start.
        if let Ok(mut g) = self.started.lock() {
            *g = Some(Started {
                id: created.id.clone(),
                ports: Vec::new(),
            });
        }
        d.start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Failed,
                format!(
                    "cannot start the `{}` service container from `{}`: {e}",
                    s.name, s.image
                ),
            )
        })?;
        let ports = self.published(d, &created.id).await?;
        ctx.log.write(
            Stream::System,
            format!(
                "service `{}`: container {} from {}{}\n",
                s.name,
                &created.id[..created.id.len().min(12)],
                s.image,
                ports
                    .iter()
                    .map(|(c, h)| format!(", {c} on 127.0.0.1:{h}"))
                    .collect::<String>()
            )
            .as_bytes(),
        );
        if let Ok(mut g) = self.started.lock()
            && let Some(st) = g.as_mut()
        {
            st.ports = ports;
        }
        Ok(())
    }

    async fn ready(&self, ctx: &Ctx) -> Result<bool> {
        let d = self.client().await?;
        let Some(id) = self.id() else {
            return Ok(false);
        };
        let info = d
            .inspect_container(
                &id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Failed,
                    format!(
                        "the `{}` service container is gone: {e}",
                        self.settings.name
                    ),
                )
            })?;
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            let code = state.exit_code.unwrap_or(-1);
            let tail = self.tail(d, ctx, &id).await;
            let logs = if tail.is_empty() {
                "it printed nothing".to_owned()
            } else {
                format!("its last log lines:\n{tail}")
            };
            return Err(Error::new(
                ErrorKind::Failed,
                format!(
                    "the `{}` service container ({}) exited with code {code} before it was \
                     ready; {logs}",
                    self.settings.name, self.settings.image
                ),
            ));
        }
        if let Some(status) = state.health.and_then(|h| h.status)
            && !matches!(status, HealthStatusEnum::NONE | HealthStatusEnum::EMPTY)
        {
            return Ok(status == HealthStatusEnum::HEALTHY);
        }
        if let Health::Command(cmd) = &self.settings.health {
            return self.probe(d, &id, cmd).await;
        }
        let first = self
            .started
            .lock()
            .ok()
            .and_then(|s| s.as_ref().and_then(|s| s.ports.first().map(|p| p.1)));
        match first {
            Some(port) => Ok(answers(port).await),
            None => Ok(true),
        }
    }

    async fn stop(&self, _ctx: &Ctx) -> Result<()> {
        let started = self.started.lock().ok().and_then(|mut g| g.take());
        let Some(st) = started else { return Ok(()) };
        let d = self.client().await?;
        remove(d, &st.id).await
    }

    fn exports(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let Some(st) = self.started.lock().ok().and_then(|g| g.clone()) else {
            return m;
        };
        m.insert("HOST".to_owned(), "127.0.0.1".to_owned());
        m.insert("CONTAINER".to_owned(), st.id.clone());
        if let Some((_, h)) = st.ports.first() {
            m.insert("PORT".to_owned(), h.to_string());
            m.insert("ADDR".to_owned(), format!("127.0.0.1:{h}"));
        }
        for (c, h) in &st.ports {
            m.insert(format!("PORT_{c}"), h.to_string());
        }
        m
    }

    fn ready_policy(&self) -> Option<(Duration, Duration)> {
        self.settings.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: serde_json::Value) -> Params {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn settings_read_ports_commands_env_and_policy() {
        let s = Settings::from_params(
            "docker",
            &params(serde_json::json!({
                "name": "db", "image": "postgres:16", "ports": [5432, "8080/tcp"],
                "host_port": 15432, "env": {"A": "1", "B": 2}, "cmd": ["-c", "fsync=off"],
                "health": "pg_isready", "ready_timeout": "30s"
            })),
        );
        let s = s.map_err(|e| e.to_string());
        assert!(s.is_ok(), "{s:?}");
        let Ok(s) = s else { return };
        assert_eq!(s.name, "db");
        assert_eq!(s.ports, [5432, 8080]);
        assert_eq!(s.host_port, Some(15432));
        assert_eq!(s.env.get("B").map(String::as_str), Some("2"));
        assert_eq!(s.cmd, Some(vec!["-c".to_owned(), "fsync=off".to_owned()]));
        assert_eq!(
            s.health,
            Health::Command(vec!["/bin/sh".into(), "-c".into(), "pg_isready".into()])
        );
        assert_eq!(s.policy, Some((DEFAULT_INTERVAL, Duration::from_secs(30))));
    }

    #[test]
    fn bad_settings_say_what_to_write() {
        let err = |v| {
            Settings::from_params("docker", &params(v))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(serde_json::json!({})).contains("needs `image`"));
        assert!(err(serde_json::json!({"image": "x", "ports": ["http"]})).contains("port number"));
        assert!(err(serde_json::json!({"image": "x", "host_port": 1})).contains("ports = ["));
        assert!(err(serde_json::json!({"image": "x", "pull": "sometimes"})).contains("always"));
        assert!(err(serde_json::json!({"image": "x", "ready_timeout": "soon"})).contains("30s"));
        let named = Settings::from_params("docker", &params(serde_json::json!({"image": "x"})));
        assert_eq!(named.map(|s| s.name).ok().as_deref(), Some("docker"));
    }
}
