//! The built-in resources through the plug-in kit's resource suite: git against a real
//! repository the test commits to, fs on a real directory, artifact on a local store and cron
//! on a two-second schedule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use chrono::Utc;
use pipewright_core::{Params, Resource};
use pipewright_resources::{ArtifactResource, CronResource, FsResource, GitResource};
use pipewright_testing::resource::{FixtureResult, ResourceFixture, check_resource};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn read_marker(dir: &Path) -> FixtureResult<String> {
    Ok(std::fs::read_to_string(dir.join("marker"))?
        .trim()
        .to_owned())
}

fn git(dir: &Path, args: &[&str]) -> FixtureResult<()> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// A bare `origin` and a working clone that commits and pushes a `marker` file.
struct GitFixture {
    origin: PathBuf,
    work: PathBuf,
    n: u32,
}

impl GitFixture {
    fn new(root: &Path) -> Self {
        let origin = root.join("origin.git");
        let work = root.join("work");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "--quiet", "--bare", "-b", "main"]).unwrap();
        git(
            root,
            &["clone", "--quiet", origin.to_str().unwrap(), "work"],
        )
        .unwrap();
        git(&work, &["checkout", "--quiet", "-b", "main"]).unwrap();
        Self { origin, work, n: 0 }
    }

    fn commit(dir: &Path, marker: &str) -> FixtureResult<()> {
        std::fs::write(dir.join("marker"), format!("{marker}\n"))?;
        git(dir, &["add", "marker"])?;
        git(dir, &["commit", "--quiet", "-m", marker])
    }
}

#[async_trait]
impl ResourceFixture for GitFixture {
    async fn new_version(&mut self) -> FixtureResult<String> {
        self.n += 1;
        let marker = format!("commit-{}", self.n);
        Self::commit(&self.work, &marker)?;
        git(&self.work, &["push", "--quiet", "origin", "HEAD:main"])?;
        Ok(marker)
    }

    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        read_marker(dir)
    }

    async fn prepare_put(&mut self, src: &Path) -> FixtureResult<(Params, String)> {
        git(
            src,
            &[
                "clone",
                "--quiet",
                self.origin.to_str().unwrap_or_default(),
                ".",
            ],
        )?;
        Self::commit(src, "pushed")?;
        let mut params = Params::new();
        params.insert("branch", "main");
        Ok((params, "pushed".into()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn git_conforms() {
    let root = tempfile::tempdir().unwrap();
    let mut fixture = GitFixture::new(root.path());
    let mut params = Params::new();
    params.insert("url", fixture.origin.display().to_string());
    params.insert("branch", "main");
    let resource = GitResource::from_params(&params, &root.path().join("cache")).unwrap();
    check_resource(&resource, &mut fixture).await;
}

/// Rewrites a `marker` file in the resource's directory.
struct FsFixture {
    dir: PathBuf,
    n: u32,
}

#[async_trait]
impl ResourceFixture for FsFixture {
    fn keeps_history(&self) -> bool {
        false
    }

    async fn new_version(&mut self) -> FixtureResult<String> {
        self.n += 1;
        let marker = format!("content-{}", self.n);
        std::fs::write(self.dir.join("marker"), &marker)?;
        Ok(marker)
    }

    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        read_marker(dir)
    }

    async fn prepare_put(&mut self, src: &Path) -> FixtureResult<(Params, String)> {
        std::fs::write(src.join("marker"), "put")?;
        let mut params = Params::new();
        params.insert("from", ".");
        Ok((params, "put".into()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_conforms() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("watched");
    std::fs::create_dir(&dir).unwrap();
    let resource = FsResource::new(&dir);
    check_resource(&resource, &mut FsFixture { dir, n: 0 }).await;
}

/// Puts artifacts through a second resource on the same store.
struct ArtifactFixture {
    other: ArtifactResource,
    n: u32,
}

fn artifact_src(src: &Path, marker: &str) -> FixtureResult<Params> {
    std::fs::create_dir_all(src.join("out"))?;
    std::fs::write(src.join("out/marker"), marker)?;
    let mut params = Params::new();
    params.insert("from", "out");
    Ok(params)
}

#[async_trait]
impl ResourceFixture for ArtifactFixture {
    async fn new_version(&mut self) -> FixtureResult<String> {
        self.n += 1;
        let marker = format!("artifact-{}", self.n);
        let src = tempfile::tempdir()?;
        let params = artifact_src(src.path(), &marker)?;
        self.other
            .put(&pipewright_core::Ctx::new(), src.path(), &params)
            .await?;
        Ok(marker)
    }

    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        read_marker(dir)
    }

    async fn prepare_put(&mut self, src: &Path) -> FixtureResult<(Params, String)> {
        Ok((artifact_src(src, "put")?, "put".into()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_conforms() {
    let root = tempfile::tempdir().unwrap();
    let mut params = Params::new();
    params.insert("dir", root.path().join("store").display().to_string());
    let resource = ArtifactResource::from_params(&params).unwrap();
    let mut fixture = ArtifactFixture {
        other: ArtifactResource::from_params(&params).unwrap(),
        n: 0,
    };
    check_resource(&resource, &mut fixture).await;
}

/// The same, in a shared blob store: two resources of the same name over one store see each
/// other's versions, as two workers do; content lands under `sha256/`.
#[tokio::test(flavor = "multi_thread")]
async fn artifact_in_a_blob_store_conforms() {
    let root = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn pipewright_core::BlobStore> = std::sync::Arc::new(
        pipewright_blobs::DirBlobStore::new(root.path().join("blobs")),
    );
    let params = Params::new();
    let resource = ArtifactResource::in_blobs(store.clone(), &params, "bin");
    let mut fixture = ArtifactFixture {
        other: ArtifactResource::in_blobs(store.clone(), &params, "bin"),
        n: 0,
    };
    check_resource(&resource, &mut fixture).await;
    let content = store.list("sha256/").await.unwrap();
    let versions = store.list("artifacts/bin/versions/").await.unwrap();
    assert!(!content.is_empty() && !versions.is_empty());
    assert!(store.contains("artifacts/bin/latest").await.unwrap());
    // Another name is another set of versions.
    let other = ArtifactResource::in_blobs(store, &params, "other");
    assert!(
        other
            .check(&pipewright_core::Ctx::new(), None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Waits for the next tick of the resource's schedule (plus a margin, so the check that follows
/// sees the same tick).
struct CronFixture {
    cron: CronResource,
}

#[async_trait]
impl ResourceFixture for CronFixture {
    fn keeps_history(&self) -> bool {
        false
    }

    async fn new_version(&mut self) -> FixtureResult<String> {
        let now = Utc::now();
        let tick = self.cron.tick_at_or_before(now)?;
        let next = tick + chrono::Duration::seconds(2);
        let wait = (next - now).to_std().unwrap_or_default() + Duration::from_millis(200);
        tokio::time::sleep(wait).await;
        Ok(self.cron.tick_at_or_before(Utc::now())?.to_rfc3339())
    }

    fn marker(&self, dir: &Path) -> FixtureResult<String> {
        Ok(std::fs::read_to_string(dir.join("time"))?.trim().to_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_conforms() {
    let mut params = Params::new();
    params.insert("schedule", "*/2 * * * * *");
    let resource = CronResource::from_params(&params).unwrap();
    let mut fixture = CronFixture {
        cron: resource.clone(),
    };
    check_resource(&resource, &mut fixture).await;
}
