//! The `registry-image` resource for [Pipewright](https://github.com/pipewright/pipewright):
//! container images watched in, pulled from and pushed to an OCI registry.
//!
//! - `check` speaks the registry HTTP API v2 (through `oci-client`): with `tag` (default
//!   `latest`) it reports each new digest behind that tag; with `tag_regex` it reports new tags
//!   matching it, oldest first, semantic versions ordered as versions.
//! - `get` pulls the exact digest into the local Docker engine (`format = "docker"`, the
//!   default, for `run "docker"`), or writes it as an OCI image layout in `oci/` without a daemon
//!   (`format = "oci"`). Either way `repository`, `tag`, `digest` and `image` (a reference to
//!   run) are written as files.
//! - `put` builds a Dockerfile through the Docker engine's build API (bollard), or takes an OCI
//!   image layout from the workspace, and pushes it under its tags; the version is the digest
//!   the registry serves.
//!
//! Credentials (`username`/`password`, or `token`) are params, so they come from secrets and
//! never reach a command line; they drive both basic auth and the registry token flow. TLS is
//! verified unless `insecure = true`.

mod engine;
mod oci;
mod settings;
mod tags;

pub use settings::{Credentials, Format, PUT_PARAMS, RESOURCE_PARAMS, Settings};
pub use tags::Tag;

use async_trait::async_trait;
use pipewright_core::{Ctx, Error, ErrorKind, Metadata, Params, Resource, Result, Version};
use std::path::{Component, Path, PathBuf};

/// The type name pipelines use: `resource "registry-image" "app" { … }`.
pub const TYPE_NAME: &str = "registry-image";

/// At most this many new tags are reported by one check (the newest of them).
const CHECK_LIMIT: usize = 100;

/// The `registry-image` resource.
#[derive(Debug, Clone)]
pub struct RegistryImage {
    settings: Settings,
}

impl RegistryImage {
    /// A resource configured by a `resource "registry-image"` block's params.
    pub fn from_params(params: &Params) -> Result<Self> {
        Ok(Self {
            settings: Settings::from_params(params)?,
        })
    }

    /// The parsed settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

fn invalid(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, m)
}

/// `rel` inside the workspace `src`; absolute paths and `..` are refused.
fn inside(src: &Path, rel: &str, param: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Err(invalid(format!(
            "`{param} = \"{rel}\"` must be a path inside the workspace, without `..`"
        )));
    }
    Ok(src.join(p))
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl RegistryImage {
    /// The tags a put pushes: `tag` (or the content of `tag_file`, or the resource's tag),
    /// then every entry of `tags`.
    async fn put_tags(&self, src: &Path, params: &Params) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Some(t) = params.get_str("tag").filter(|t| !t.is_empty()) {
            out.push(t);
        } else if let Some(f) = params.get_str("tag_file").filter(|t| !t.is_empty()) {
            let path = inside(src, &f, "tag_file")?;
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| invalid(format!("cannot read `tag_file = \"{f}\"`: {e}")))?;
            out.push(text.trim().to_owned());
        } else {
            out.push(self.settings.tag.clone());
        }
        match params.get("tags") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(a)) => {
                for v in a {
                    match v.as_str() {
                        Some(s) => out.push(s.to_owned()),
                        None => return Err(invalid(format!("`tags` holds strings, got {v}"))),
                    }
                }
            }
            Some(o) => return Err(invalid(format!("`tags` is a list of strings, got {o}"))),
        }
        if let Some(bad) = out.iter().find(|t| !valid_tag(t)) {
            return Err(invalid(format!(
                "`{bad}` is not a valid image tag (letters, digits, `_`, `.` and `-`, at most 128, \
                 not starting with `.` or `-`)"
            )));
        }
        out.dedup();
        Ok(out)
    }

    async fn build_and_push(
        &self,
        ctx: &Ctx,
        src: &Path,
        params: &Params,
        tags: &[String],
    ) -> Result<()> {
        let context = inside(
            src,
            &params.get_str("build").unwrap_or_else(|| ".".into()),
            "build",
        )?;
        let mut spec = engine::BuildSpec {
            context,
            dockerfile: params
                .get_str("dockerfile")
                .unwrap_or_else(|| "Dockerfile".into()),
            target: params.get_str("target").filter(|t| !t.is_empty()),
            ..engine::BuildSpec::default()
        };
        inside(src, &spec.dockerfile, "dockerfile")?;
        match params.get("build_args") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    spec.build_args.insert(k.clone(), v);
                }
            }
            Some(o) => return Err(invalid(format!("`build_args` is a map, got {o}"))),
        }
        let d = engine::connect().await?;
        let name = self.settings.engine_name();
        let first = tags.first().map(String::as_str).unwrap_or("latest");
        engine::build(&d, ctx, &spec, &format!("{name}:{first}")).await?;
        for t in tags.iter().skip(1) {
            engine::tag(&d, &format!("{name}:{first}"), &name, t).await?;
        }
        for t in tags {
            engine::push(&d, ctx, &self.settings, t).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for RegistryImage {
    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let reg = oci::Registry::new(&self.settings);
        let Some(re) = &self.settings.tag_regex else {
            let tag = &self.settings.tag;
            let Some(digest) = reg.digest_of(tag).await? else {
                return Ok(Vec::new());
            };
            if last.and_then(|v| v.get("digest")) == Some(digest.as_str()) {
                return Ok(Vec::new());
            }
            return Ok(vec![Version::from_pairs([
                ("tag", tag.as_str()),
                ("digest", digest.as_str()),
            ])]);
        };
        let matching = reg
            .tags()
            .await?
            .into_iter()
            .filter(|t| re.is_match(t))
            .map(|t| Tag::new(&t))
            .collect();
        let mut out = Vec::new();
        for t in tags::newer(matching, last.and_then(|v| v.get("tag")), CHECK_LIMIT) {
            // A tag deleted since the listing is skipped.
            if let Some(digest) = reg.digest_of(t.name()).await? {
                out.push(Version::from_pairs([
                    ("tag", t.name()),
                    ("digest", digest.as_str()),
                ]));
            }
        }
        Ok(out)
    }

    async fn get(&self, ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let digest = version
            .get("digest")
            .ok_or_else(|| invalid("a registry-image version needs a `digest` (`sha256:…`)"))?;
        let tag = version.get("tag").unwrap_or(&self.settings.tag).to_owned();
        let s = &self.settings;
        let image = match s.format {
            settings::Format::Docker => {
                let d = engine::connect().await?;
                engine::pull(&d, ctx, s, digest, &tag).await?
            }
            settings::Format::Oci => {
                oci::Registry::new(s)
                    .pull_layout(digest, &dest.join("oci"))
                    .await?;
                format!("{}@{digest}", s.repository)
            }
        };
        for (file, value) in [
            ("repository", s.repository.as_str()),
            ("tag", tag.as_str()),
            ("digest", digest),
            ("image", image.as_str()),
        ] {
            let path = dest.join(file);
            tokio::fs::write(&path, format!("{value}\n"))
                .await
                .map_err(|e| Error::new(ErrorKind::Other, format!("{}: {e}", path.display())))?;
        }
        let mut m = Metadata::new();
        m.push("repository", &s.repository);
        m.push("tag", tag);
        m.push("digest", digest);
        m.push("image", image);
        Ok(m)
    }

    async fn put(&self, ctx: &Ctx, src: &Path, params: &Params) -> Result<Vec<Version>> {
        let tags = self.put_tags(src, params).await?;
        let first = tags.first().cloned().unwrap_or_else(|| "latest".into());
        let reg = oci::Registry::new(&self.settings);
        let digest = match params.get_str("image").filter(|s| !s.is_empty()) {
            Some(layout) => {
                if params.get_str("build").is_some() {
                    return Err(invalid(
                        "set `build` (a Dockerfile's context) or `image` (an OCI layout), not both",
                    ));
                }
                let dir = inside(src, &layout, "image")?;
                reg.push_layout(&dir, &tags).await?
            }
            None => {
                // Refused credentials fail the step before a build that could take minutes.
                if let Err(e) = reg.tags().await
                    && e.kind() == ErrorKind::Unauthorized
                {
                    return Err(e);
                }
                self.build_and_push(ctx, src, params, &tags).await?;
                reg.digest_of(&first).await?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Failed,
                        format!(
                            "registry {} does not list {}:{first} after the push",
                            self.settings.registry, self.settings.repository
                        ),
                    )
                })?
            }
        };
        ctx.log.write(
            pipewright_core::Stream::System,
            format!("pushed {}:{first} as {digest}\n", self.settings.repository).as_bytes(),
        );
        Ok(vec![Version::from_pairs([
            ("tag", first.as_str()),
            ("digest", digest.as_str()),
        ])])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_registry_grammar() {
        for ok in ["latest", "1.2.3", "v1", "_x", "a-b.c_d"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"x".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

    #[test]
    fn workspace_paths_stay_inside() {
        let src = Path::new("/ws");
        assert_eq!(
            inside(src, "app/Dockerfile", "dockerfile").ok(),
            Some(PathBuf::from("/ws/app/Dockerfile"))
        );
        assert!(inside(src, "../etc", "build").is_err());
        assert!(inside(src, "/etc", "build").is_err());
    }
}
