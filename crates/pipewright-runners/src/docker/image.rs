//! The Engine API side of the settings: the host config and the image.

use crate::settings::{CONTAINER_WORKDIR, PullPolicy, Settings};
use bollard::Docker;
use bollard::models::HostConfig;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use pipewright_core::{Ctx, Error, ErrorKind, Result, Stream};

impl Settings {
    /// The host side of the container: the workspace and `-v` mounts, limits, network, init.
    pub(crate) fn host_config(&self, host_dir: &str) -> HostConfig {
        let mut binds = vec![format!("{host_dir}:{CONTAINER_WORKDIR}")];
        binds.extend(self.binds.iter().cloned());
        HostConfig {
            binds: Some(binds),
            memory: self.memory,
            // Swap equal to memory: a hog is killed instead of swapping the host to death.
            memory_swap: self.memory,
            nano_cpus: self.nano_cpus,
            network_mode: self.network.clone(),
            privileged: Some(self.privileged),
            tmpfs: (!self.tmpfs.is_empty()).then(|| self.tmpfs.clone()),
            extra_hosts: (!self.extra_hosts.is_empty()).then(|| self.extra_hosts.clone()),
            shm_size: self.shm_size,
            cap_add: (!self.cap_add.is_empty()).then(|| self.cap_add.clone()),
            // An init as PID 1 forwards signals and reaps zombies: a shell as PID 1 ignores
            // SIGTERM, so every stop would wait out the whole grace period.
            init: Some(true),
            ..HostConfig::default()
        }
    }
}

/// Makes sure `image` is present according to `policy`.
pub(crate) async fn ensure_image(
    d: &Docker,
    ctx: &Ctx,
    image: &str,
    policy: PullPolicy,
) -> Result<()> {
    let present = d.inspect_image(image).await.is_ok();
    match (policy, present) {
        (PullPolicy::Never, false) => Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "image `{image}` is not present and `pull = \"never\"`; build or load it first"
            ),
        )),
        (PullPolicy::IfNotPresent, true) | (PullPolicy::Never, true) => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("reg:5000/app:1.2"), ("reg:5000/app", "1.2"));
        assert_eq!(split_tag("reg:5000/app"), ("reg:5000/app", "latest"));
    }
}
