//! `pipewright blobs gc` on a directory store laid out as builds leave it: a cache pointer, an
//! artifact version, replaced content, and a pointer whose content is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn content(root: &Path, fill: &str) -> String {
    let hex = fill.repeat(32);
    let dir = root.join("sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), fill).unwrap();
    format!("sha256:{hex}")
}

fn pointer(root: &Path, key: &str, digest: &str) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{digest}\n")).unwrap();
}

fn gc(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipewright"))
        .args(["blobs", "gc", "--blobs"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn gc_removes_only_old_content_nothing_names_and_reports_dangling_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = content(root, "aa");
    let artifact = content(root, "bb");
    let replaced = content(root, "cc");
    pointer(root, "caches/p/test/deps", &cache);
    pointer(root, "artifacts/bundle/latest", &artifact);
    pointer(root, "artifacts/bundle/versions/1-x", &artifact);

    // Young content stays by default (--grace 1h).
    let out = gc(root, &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 unnamed blob kept for --grace, 0 removed"),
        "{text}"
    );

    let out = gc(root, &["--grace", "0s", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would remove sha256/cc/"), "{text}");
    assert!(text.contains("1 to remove"), "{text}");
    let replaced_path = root.join("sha256/cc").join("cc".repeat(32));
    assert!(replaced_path.exists(), "a dry run removes nothing");

    let out = gc(root, &["--grace", "0s"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 pointers, 2 named blobs kept"), "{text}");
    assert!(!replaced_path.exists());
    for d in [&cache, &artifact] {
        let hex = d.trim_start_matches("sha256:");
        assert!(
            root.join("sha256").join(&hex[..2]).join(hex).exists(),
            "{d}"
        );
    }
    let _ = replaced;

    // A pointer to missing content is reported, exit 1, and left as it is.
    pointer(
        root,
        "caches/p/build/deps",
        &format!("sha256:{}", "dd".repeat(32)),
    );
    let out = gc(root, &["--grace", "0s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`caches/p/build/deps` names sha256/dd/"),
        "{err}"
    );
    assert!(root.join("caches/p/build/deps").exists());
}

#[test]
fn gc_of_a_directory_that_does_not_exist_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = gc(&dir.path().join("typo"), &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("there is no blob store at"), "{err}");
}
