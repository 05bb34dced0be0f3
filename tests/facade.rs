//! The facade crate exposes the workspace under one name.

use pipewright::config::{LoadOptions, StepKind, load_str};
use pipewright::core::{BuildStatus, Version};

#[test]
fn facade_reexports_core_and_config() {
    let src = "resource \"git\" \"app\" {\n  params { url = \"u\" }\n}\njob \"t\" {\n  get \"git\" \"app\" { version = { ref = \"abc\" } }\n}\n";
    let loaded = load_str("p.hcl", src, &LoadOptions::default()).unwrap();
    let StepKind::Get(g) = &loaded.pipeline.jobs["t"].steps[0].kind else {
        panic!("expected a get step")
    };
    assert_eq!(
        g.version,
        pipewright::config::VersionPolicy::Pinned(Version::from_pairs([("ref", "abc")]))
    );
    assert!(BuildStatus::Succeeded.passes());
}

/// Every built-in that validation names can be made by the facade's default registry.
#[cfg(feature = "engine")]
#[test]
fn every_builtin_named_by_validation_is_in_the_default_registry() {
    use pipewright::engine::Registry;
    let registry = Registry::with_builtins(std::time::Duration::from_secs(1));
    let catalog = registry.catalog();
    assert_eq!(catalog, pipewright::config::Catalog::default());
    let names: Vec<&str> = catalog.runners.keys().map(String::as_str).collect();
    assert_eq!(names, ["docker", "exec", "podman", "shell"]);
    let names: Vec<&str> = catalog.resource_types.keys().map(String::as_str).collect();
    assert_eq!(names, ["artifact", "cron", "fs", "git", "registry-image"]);
    assert_eq!(catalog.secret_types, ["env", "file", "vault"]);
    // A resource of each built-in type is made from its declaration.
    let src = r#"
resource "git" "g" {
  params { url = "https://example.com/r.git" }
}
resource "cron" "c" {
  params { schedule = "0 * * * *" }
}
resource "fs" "f" {
  params { path = "/tmp" }
}
resource "artifact" "a" {
  params { dir = "/tmp/pipewright-facade-artifacts" }
}
resource "registry-image" "i" {
  params { repository = "registry.example.com/team/app" }
}
job "j" {
  task "t" {
    run "shell" { cmd = "true" }
  }
}
"#;
    let loaded = load_str(
        "p.hcl",
        src,
        &LoadOptions {
            catalog,
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{}", e.render(false)));
    for r in loaded.pipeline.resources.values() {
        if let Err(e) = registry.resource(r) {
            panic!("{}: {e}", r.id);
        }
    }
}
