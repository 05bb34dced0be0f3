//! The example plug-ins through the conformance suites of `pipewright-testing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use pipewright_core::{Params, TaskSpec};
use pipewright_plugin_example::{NiceRunner, ReleaseDir};
use pipewright_testing::RunnerSuite;
use pipewright_testing::resource::{FixtureResult, ResourceFixture, check_resource};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn nice_runner_conforms() {
    let runner = NiceRunner::new().with_grace(Duration::from_millis(300));
    RunnerSuite::new(&runner, |script| {
        let mut params = Params::new();
        params.insert("cmd", script);
        TaskSpec {
            name: "conformance".into(),
            params,
            ..TaskSpec::default()
        }
    })
    .run_all()
    .await;
}

/// Publishes releases by making the next numbered folder, as a release job would.
struct Releases {
    root: PathBuf,
    n: u64,
}

#[async_trait]
impl ResourceFixture for Releases {
    async fn new_version(&mut self) -> FixtureResult<String> {
        self.n += 1;
        let dir = self.root.join(self.n.to_string());
        std::fs::create_dir_all(&dir)?;
        let marker = format!("release-{}", self.n);
        std::fs::write(dir.join("NOTES"), &marker)?;
        Ok(marker)
    }

    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        Ok(std::fs::read_to_string(dir.join("NOTES"))?)
    }

    async fn prepare_put(&mut self, src: &Path) -> FixtureResult<(Params, String)> {
        std::fs::create_dir(src.join("dist"))?;
        std::fs::write(src.join("dist/NOTES"), "from a put")?;
        let mut params = Params::new();
        params.insert("from", "dist");
        Ok((params, "from a put".into()))
    }
}

#[tokio::test]
async fn release_dir_conforms() {
    let root = tempfile::tempdir().unwrap();
    let resource = ReleaseDir::new(root.path());
    let mut fixture = Releases {
        root: root.path().to_path_buf(),
        n: 0,
    };
    check_resource(&resource, &mut fixture).await;
}
