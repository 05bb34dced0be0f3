//! The local Docker engine, through bollard: builds from a Dockerfile, pushes with the
//! resource's credentials, and pulls an exact digest for the `docker` runner.

use crate::settings::{Credentials, Settings};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, PushImageOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use pipewright_core::{Ctx, Error, ErrorKind, Result, Stream};
use std::collections::HashMap;
use std::path::Path;

/// What a build is asked for.
#[derive(Debug, Default)]
pub struct BuildSpec {
    /// The context directory.
    pub context: std::path::PathBuf,
    /// The Dockerfile, relative to the context.
    pub dockerfile: String,
    /// `--build-arg`s.
    pub build_args: HashMap<String, String>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
}

/// Connects to the local daemon (`DOCKER_HOST`, else `/var/run/docker.sock`).
pub async fn connect() -> Result<Docker> {
    let d = Docker::connect_with_local_defaults().map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot connect to the Docker daemon: {e}"),
        )
    })?;
    d.negotiate_version().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "cannot reach the Docker daemon (is dockerd running? `format = \"oci\"` gets \
                 images without one): {e}"
            ),
        )
    })
}

fn credentials(s: &Settings) -> Option<DockerCredentials> {
    let server = Some(s.registry.clone());
    match &s.credentials {
        Credentials::Anonymous => None,
        Credentials::Basic { username, password } => Some(DockerCredentials {
            username: Some(username.clone()),
            password: Some(password.clone()),
            serveraddress: server,
            ..DockerCredentials::default()
        }),
        Credentials::Bearer(t) => Some(DockerCredentials {
            registrytoken: Some(t.clone()),
            serveraddress: server,
            ..DockerCredentials::default()
        }),
    }
}

/// The daemon's message for a failed pull or push, made to name the registry and the user.
fn refused(s: &Settings, what: &str, message: &str) -> Error {
    let lower = message.to_ascii_lowercase();
    let kind = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        ErrorKind::Unauthorized
    } else {
        ErrorKind::Failed
    };
    let hint = if kind == ErrorKind::Unauthorized {
        ": check the username and password (or token) the resource is given"
    } else {
        ""
    };
    Error::new(
        kind,
        format!(
            "registry {} refused to let {} {what} `{}`: {}{hint}",
            s.registry,
            s.credentials.who(),
            s.repository,
            message.trim_start_matches("Docker stream error: ")
        ),
    )
}

/// The context directory as a tar stream for the daemon.
fn context_tar(dir: &Path) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("cannot pack the build context `{}`: {e}", dir.display()),
        )
    })?;
    b.into_inner().map_err(|e| {
        Error::new(
            ErrorKind::Other,
            format!("cannot pack the build context `{}`: {e}", dir.display()),
        )
    })
}

/// Builds `spec` as `name` (`repo:tag`), streaming the build's output into the step's log.
pub async fn build(d: &Docker, ctx: &Ctx, spec: &BuildSpec, name: &str) -> Result<()> {
    if !spec.context.join(&spec.dockerfile).is_file() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "there is no `{}` in the build context `{}`; set `dockerfile` or `build`",
                spec.dockerfile,
                spec.context.display()
            ),
        ));
    }
    let body = context_tar(&spec.context)?;
    let mut opts = BuildImageOptionsBuilder::new()
        .dockerfile(&spec.dockerfile)
        .t(name)
        .rm(true)
        .forcerm(true)
        .buildargs(&spec.build_args);
    if let Some(t) = &spec.target {
        opts = opts.target(t);
    }
    ctx.log.write(
        Stream::System,
        format!("building {name} from {}\n", spec.context.display()).as_bytes(),
    );
    let mut s = d.build_image(opts.build(), None, Some(bollard::body_full(body.into())));
    while let Some(item) = s.next().await {
        let info = item
            .map_err(|e| Error::new(ErrorKind::Failed, format!("the image build failed: {e}")))?;
        if let Some(line) = info.stream {
            ctx.log.write(Stream::Stdout, line.as_bytes());
        }
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(Error::new(
                ErrorKind::Failed,
                format!("the image build failed: {err}"),
            ));
        }
    }
    Ok(())
}

/// Tags local image `source` as `repository:tag`.
pub async fn tag(d: &Docker, source: &str, repository: &str, tag: &str) -> Result<()> {
    d.tag_image(
        source,
        Some(
            TagImageOptionsBuilder::new()
                .repo(repository)
                .tag(tag)
                .build(),
        ),
    )
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Failed,
            format!("cannot tag {source} as {repository}:{tag}: {e}"),
        )
    })
}

/// Pushes `repository:tag` with the resource's credentials.
pub async fn push(d: &Docker, ctx: &Ctx, s: &Settings, tag: &str) -> Result<()> {
    let name = s.engine_name();
    ctx.log
        .write(Stream::System, format!("pushing {name}:{tag}\n").as_bytes());
    let mut stream = d.push_image(
        &name,
        Some(PushImageOptionsBuilder::new().tag(tag).build()),
        credentials(s),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| refused(s, "push to", &e.to_string()))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(refused(s, "push to", &err));
        }
    }
    Ok(())
}

/// Pulls the image `digest` into the engine and tags it `repository:tag` for `run "docker"`.
pub async fn pull(d: &Docker, ctx: &Ctx, s: &Settings, digest: &str, tag: &str) -> Result<String> {
    let by_digest = format!("{}@{digest}", s.engine_name());
    ctx.log
        .write(Stream::System, format!("pulling {by_digest}\n").as_bytes());
    let mut stream = d.create_image(
        Some(
            CreateImageOptionsBuilder::new()
                .from_image(&by_digest)
                .build(),
        ),
        None,
        credentials(s),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| refused(s, "pull from", &e.to_string()))?;
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(refused(s, "pull from", &err));
        }
    }
    if !tag.is_empty() {
        self::tag(d, &by_digest, &s.engine_name(), tag).await?;
    }
    Ok(by_digest)
}
