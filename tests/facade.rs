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
