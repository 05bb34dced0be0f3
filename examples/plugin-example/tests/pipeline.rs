//! The plug-ins as a user of the engine registers them: once, in the engine's registry, from
//! which validation takes its catalogue. A pipeline using both validates and runs; one that
//! misuses them is refused at load time.

use pipewright_config::{LoadOptions, load_str};
use pipewright_engine::{Engine, EngineOptions, Registry, RunOptions};
use pipewright_plugin_example::{NiceRunner, ReleaseDir};
use std::sync::Arc;
use std::time::Duration;

fn registry(releases: &std::path::Path) -> Registry {
    let mut r = Registry::with_builtins(Duration::from_secs(2));
    r.runner("nice", Arc::new(NiceRunner::new()));
    let root = releases.to_path_buf();
    r.resource_type(
        "releases",
        Arc::new(move |_decl: &pipewright_config::Resource| {
            Ok(Arc::new(ReleaseDir::new(root.clone())) as Arc<dyn pipewright_core::Resource>)
        }),
    );
    r
}

const PIPELINE: &str = r#"
resource "releases" "site" {}

job "publish" {
  task "build" {
    run "nice" { cmd = "mkdir -p out && echo v1 > out/index.html" }
  }
  put "releases" "site" {
    from = "out"
  }
}

job "check" {
  get "releases" "site" {
    passed = ["publish"]
  }
  task "read" {
    run "nice" { cmd = "grep -q v1 site/index.html" }
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn registered_once_the_plugins_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(&dir.path().join("releases"));
    let opts = LoadOptions {
        catalog: registry.catalog(),
        ..LoadOptions::default()
    };
    let loaded =
        load_str("site.hcl", PIPELINE, &opts).unwrap_or_else(|e| panic!("{}", e.render(false)));
    let engine = Engine::new(registry).with_options(EngineOptions {
        workspace_root: dir.path().join("ws"),
        ..EngineOptions::default()
    });
    let result = engine
        .run_pipeline(&loaded.pipeline, &[], &RunOptions::default())
        .await
        .unwrap();
    assert!(result.status.passes(), "{result:#?}");
    assert_eq!(result.builds.len(), 2);
    assert!(dir.path().join("releases/1/index.html").exists());
}

#[test]
fn without_the_registry_s_catalogue_the_plugins_are_unknown() {
    let err = load_str("site.hcl", PIPELINE, &LoadOptions::default())
        .unwrap_err()
        .render(false);
    assert!(err.contains("unknown runner `nice`"), "{err}");
}
