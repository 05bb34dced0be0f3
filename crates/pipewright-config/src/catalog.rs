//! The built-in plug-in names a loader accepts without a declaration and as
//! `source = "pipewright://NAME"`.

use std::collections::BTreeMap;

/// What a built-in resource type can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceOps {
    /// Has `check`/`get`.
    pub get: bool,
    /// Has `put`.
    pub put: bool,
    /// Params (of the resource and of its puts) and pinned version fields that the built-in
    /// hands to a command as arguments. A value starting with `-` is refused at load time:
    /// the command would read it as an option (`git clone --upload-pack=…` runs a program).
    pub arguments: &'static [&'static str],
    /// Every param the type reads in a `resource` block; any other is a load-time error with a
    /// suggestion. `None`: any param is accepted (the plug-in checks its own).
    pub params: Option<&'static [&'static str]>,
    /// The same for a `put` step's params.
    pub put_params: Option<&'static [&'static str]>,
}

/// Parameters a runner reads and requires (the runner's [`pipewright_core::Runner::params`]).
pub type RunnerRule = pipewright_core::ParamSpec;

/// The built-ins of each kind. A binary that registers more plug-ins (or fewer) builds its own
/// catalog; [`Catalog::default`] is the reference `pipewright` binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Built-in resource types.
    pub resource_types: BTreeMap<String, ResourceOps>,
    /// Built-in runners and the params they require.
    pub runners: BTreeMap<String, RunnerRule>,
    /// Built-in service types.
    pub service_types: Vec<String>,
    /// The params of built-in service types that declare theirs (others accept any).
    pub service_params: BTreeMap<String, RunnerRule>,
    /// Built-in secret types.
    pub secret_types: Vec<String>,
    /// Built-in notification types and the params each reads and requires.
    pub notification_types: BTreeMap<String, RunnerRule>,
}

/// The params of the built-in `git` resource type (`name`, for every type, is the directory a
/// get fills).
const GIT_PARAMS: &[&str] = &[
    "url",
    "branch",
    "depth",
    "paths",
    "ignore_paths",
    "tag_filter",
    "token",
    "username",
    "private_key",
    "name",
];

/// The params of the built-in `docker` and `podman` runners.
const DOCKER_PARAMS: &[&str] = &[
    "image",
    "cmd",
    "user",
    "workdir",
    "network",
    "memory",
    "cpus",
    "pull",
    "privileged",
    "env",
];

/// The params of the built-in `docker` service type (a service from a container image).
const IMAGE_SERVICE_PARAMS: &[&str] = &[
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

/// The params of the built-in notification types' forge statuses.
const FORGE_PARAMS: &[&str] = &["token", "sha", "base_url", "target_url", "description"];

/// The reference binary's built-in notification types.
fn builtin_notifications() -> BTreeMap<String, RunnerRule> {
    let forge = |extra: &[&'static str], required: &[&'static str]| {
        let mut known = FORGE_PARAMS.to_vec();
        known.extend_from_slice(extra);
        RunnerRule::exactly(&known, required)
    };
    BTreeMap::from([
        (
            "webhook".into(),
            RunnerRule::exactly(&["url", "token", "headers"], &["url"]),
        ),
        (
            "slack".into(),
            RunnerRule::exactly(&["url", "channel", "username", "icon_emoji"], &["url"]),
        ),
        (
            "discord".into(),
            RunnerRule::exactly(&["url", "username", "avatar_url"], &["url"]),
        ),
        (
            "email".into(),
            RunnerRule::exactly(
                &[
                    "host", "port", "security", "username", "password", "from", "to", "subject",
                    "body",
                ],
                &["host", "from", "to"],
            ),
        ),
        (
            "github-check".into(),
            forge(
                &[
                    "repository",
                    "context",
                    "app_id",
                    "installation_id",
                    "private_key",
                ],
                &["repository"],
            )
            .one_of(&["token", "private_key"]),
        ),
        (
            "gitlab".into(),
            forge(&["project", "name"], &["token", "project"]),
        ),
        (
            "gitea".into(),
            forge(
                &["repository", "context"],
                &["token", "repository", "base_url"],
            ),
        ),
    ])
}

impl Default for Catalog {
    fn default() -> Self {
        let rt = |get,
                  put,
                  params: &'static [&'static str],
                  put_params: &'static [&'static str]| ResourceOps {
            get,
            put,
            arguments: &[],
            params: Some(params),
            put_params: Some(put_params),
        };
        Self {
            resource_types: BTreeMap::from([
                (
                    "git".into(),
                    ResourceOps {
                        arguments: &["url", "branch", "tag_filter", "tag", "ref"],
                        ..rt(
                            true,
                            true,
                            GIT_PARAMS,
                            &["repository", "branch", "tag", "rebase"],
                        )
                    },
                ),
                ("cron".into(), rt(true, false, &["schedule", "name"], &[])),
                ("fs".into(), rt(true, true, &["path", "name"], &["from"])),
                (
                    "artifact".into(),
                    rt(true, true, &["dir", "name"], &["from"]),
                ),
                (
                    "registry-image".into(),
                    rt(
                        true,
                        true,
                        &[
                            "repository",
                            "tag",
                            "tag_regex",
                            "username",
                            "password",
                            "token",
                            "insecure",
                            "format",
                            "name",
                        ],
                        &[
                            "build",
                            "dockerfile",
                            "build_args",
                            "target",
                            "image",
                            "tag",
                            "tags",
                            "tag_file",
                        ],
                    ),
                ),
            ]),
            // The same specs as the runners' own `Runner::params` and the resources'
            // `builtin_params` (the engine's registry test holds them together).
            runners: BTreeMap::from([
                ("exec".into(), RunnerRule::exactly(&["path"], &["path"])),
                (
                    "shell".into(),
                    RunnerRule::exactly(&["cmd", "file", "shell"], &[]).one_of(&["cmd", "file"]),
                ),
                (
                    "docker".into(),
                    RunnerRule::exactly(DOCKER_PARAMS, &["image", "cmd"]),
                ),
                (
                    "podman".into(),
                    RunnerRule::exactly(DOCKER_PARAMS, &["image", "cmd"]),
                ),
            ]),
            // `postgresql` is the PikoCI seed's name for `postgres`.
            service_types: vec![
                crate::IMAGE_SERVICE_TYPE.into(),
                "nats".into(),
                "postgres".into(),
                "postgresql".into(),
            ],
            // The same spec as `pipewright_services::param_spec` (the engine's registry test
            // holds the two together).
            service_params: BTreeMap::from([(
                crate::IMAGE_SERVICE_TYPE.into(),
                RunnerRule::exactly(IMAGE_SERVICE_PARAMS, &["image"]),
            )]),
            secret_types: vec!["env".into(), "file".into(), "vault".into()],
            // The same specs as `pipewright_notify::param_spec` (the engine's registry test
            // holds the two together).
            notification_types: builtin_notifications(),
        }
    }
}

impl Catalog {
    /// A catalog with no built-ins at all (every type must be declared inline or by path).
    pub fn empty() -> Self {
        Self {
            resource_types: BTreeMap::new(),
            runners: BTreeMap::new(),
            service_types: vec![],
            service_params: BTreeMap::new(),
            secret_types: vec![],
            notification_types: BTreeMap::new(),
        }
    }

    /// The built-in names of a block kind (`resource_type`, `runner_type`, …).
    pub fn names(&self, kind: TypeKind) -> Vec<&str> {
        match kind {
            TypeKind::Resource => self.resource_types.keys().map(String::as_str).collect(),
            TypeKind::Runner => self.runners.keys().map(String::as_str).collect(),
            TypeKind::Service => self.service_types.iter().map(String::as_str).collect(),
            TypeKind::Secret => self.secret_types.iter().map(String::as_str).collect(),
            TypeKind::Notification => self.notification_types.keys().map(String::as_str).collect(),
        }
    }

    /// True when `name` is a built-in of `kind`.
    pub fn has(&self, kind: TypeKind, name: &str) -> bool {
        self.names(kind).contains(&name)
    }
}

/// The five kinds of type declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// `resource_type`
    Resource,
    /// `runner_type`
    Runner,
    /// `service_type`
    Service,
    /// `secret_type`
    Secret,
    /// `notification_type`
    Notification,
}

impl TypeKind {
    /// The block keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            TypeKind::Resource => "resource_type",
            TypeKind::Runner => "runner_type",
            TypeKind::Service => "service_type",
            TypeKind::Secret => "secret_type",
            TypeKind::Notification => "notification_type",
        }
    }

    /// A short noun for messages (`resource type`, `runner`…).
    pub fn noun(self) -> &'static str {
        match self {
            TypeKind::Resource => "resource type",
            TypeKind::Runner => "runner",
            TypeKind::Service => "service type",
            TypeKind::Secret => "secret type",
            TypeKind::Notification => "notification type",
        }
    }
}
