//! One registry: what validation accepts is what the engine can run, and a plug-in registered
//! once is known to both.

use async_trait::async_trait;
use pipewright_config::{Catalog, LoadOptions, load_str};
use pipewright_core::{
    Ctx, ExitStatus, ParamSpec, Params, Resource, ResourceCapabilities, Result, Runner, TaskSpec,
    Version, Workspace,
};
use pipewright_engine::{Engine, EngineOptions, Registry, RunOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn the_builtin_catalog_is_the_registry_s() {
    let derived = Registry::with_builtins(Duration::from_secs(1)).catalog();
    assert_eq!(derived, Catalog::default());
    for t in ["git", "cron", "fs", "artifact", "registry-image"] {
        assert!(derived.resource_types.contains_key(t), "{t}");
    }
    assert!(!derived.resource_types["cron"].put);
    let git = derived.resource_types["git"];
    assert!(git.params.is_some_and(|p| p.contains(&"ignore_paths")));
    assert!(git.put_params.is_some_and(|p| p.contains(&"repository")));
}

/// Writes a marker file named by its `name` param.
struct Touch;

#[async_trait]
impl Runner for Touch {
    fn params(&self) -> ParamSpec {
        ParamSpec::exactly(&["name"], &["name"])
    }
    async fn run(&self, _ctx: &Ctx, task: &TaskSpec, ws: &Workspace) -> Result<ExitStatus> {
        let name = task.params.get_str("name").unwrap_or_default();
        tokio::fs::write(ws.dir.join(name), b"x").await?;
        Ok(ExitStatus::SUCCESS)
    }
}

/// A resource that can only be read: one fixed version.
struct ReadOnly;

#[async_trait]
impl Resource for ReadOnly {
    fn capabilities(&self) -> ResourceCapabilities {
        let mut c = ResourceCapabilities::ALL;
        c.put = false;
        c
    }
    async fn check(&self, _ctx: &Ctx, _last: Option<&Version>) -> Result<Vec<Version>> {
        Ok(vec![Version::from_pairs([("v", "1")])])
    }
    async fn get(
        &self,
        _ctx: &Ctx,
        _version: &Version,
        dest: &Path,
    ) -> Result<pipewright_core::Metadata> {
        tokio::fs::create_dir_all(dest).await?;
        tokio::fs::write(dest.join("data"), b"1").await?;
        Ok(pipewright_core::Metadata::default())
    }
    async fn put(&self, _ctx: &Ctx, _src: &Path, _params: &Params) -> Result<Vec<Version>> {
        Err(pipewright_core::Error::new(
            pipewright_core::ErrorKind::Unsupported,
            "read-only",
        ))
    }
}

struct ReadOnlyFactory;

impl pipewright_engine::ResourceFactory for ReadOnlyFactory {
    fn create(&self, _decl: &pipewright_config::Resource) -> Result<Arc<dyn Resource>> {
        Ok(Arc::new(ReadOnly))
    }
    fn capabilities(&self) -> ResourceCapabilities {
        ReadOnly.capabilities()
    }
    fn params(&self) -> Option<pipewright_engine::ResourceParams> {
        Some(pipewright_engine::ResourceParams {
            resource: &["path"],
            put: &[],
        })
    }
}

fn registry() -> Registry {
    let mut r = Registry::with_builtins(Duration::from_secs(1));
    r.runner("touch", Arc::new(Touch));
    r.resource_type("readonly", Arc::new(ReadOnlyFactory));
    r
}

#[tokio::test]
async fn a_plugin_registered_once_validates_and_runs() {
    let registry = registry();
    let opts = LoadOptions {
        catalog: registry.catalog(),
        ..LoadOptions::default()
    };
    let src = r#"
resource "readonly" "data" {}
job "j" {
  get "readonly" "data" {}
  task "mark" {
    run "touch" { name = "marker" }
  }
  task "check" {
    run "shell" { cmd = "test -f marker && test -f data/data" }
  }
}
"#;
    let loaded = load_str("p.hcl", src, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(registry).with_options(EngineOptions {
        workspace_root: dir.path().to_path_buf(),
        ..EngineOptions::default()
    });
    let b = engine
        .run_job(&loaded.pipeline, "j", &RunOptions::default())
        .await
        .unwrap();
    assert!(b.status.passes(), "{b:?}");
}

#[test]
fn declared_params_and_capabilities_are_checked_at_load_time() {
    let opts = LoadOptions {
        catalog: registry().catalog(),
        ..LoadOptions::default()
    };
    let src = r#"
resource "readonly" "data" {}
job "j" {
  task "mark" {
    run "touch" { nme = "marker" }
  }
  put "readonly" "data" {}
}
"#;
    let err = load_str("p.hcl", src, &opts).unwrap_err().render(false);
    assert!(
        err.contains("the `touch` runner has no parameter `nme`"),
        "{err}"
    );
    assert!(err.contains("did you mean `name`?"), "{err}");
    assert!(err.contains("resource type `readonly` cannot put"), "{err}");
    let typo = "resource \"readonly\" \"data\" {\n  params { pth = \"x\" }\n}\n";
    let err = load_str("p.hcl", typo, &opts).unwrap_err().render(false);
    assert!(
        err.contains("resource `readonly.data` has no parameter `pth`"),
        "{err}"
    );
    assert!(
        err.contains("p.hcl:2:18") && err.contains("did you mean `path`?"),
        "{err}"
    );
    // Without the registry's catalogue the runner is unknown: one registration is the point.
    let err = load_str("p.hcl", src, &LoadOptions::default())
        .unwrap_err()
        .render(false);
    assert!(err.contains("unknown runner `touch`"), "{err}");
}
