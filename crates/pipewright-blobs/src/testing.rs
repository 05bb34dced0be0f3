//! The conformance suite every [`BlobStore`] passes: round trips, replacement, small blobs,
//! listing by prefix, the size cap, large streamed files, readers that never see half a blob,
//! and content addressing on top. Run it from a backend's test with [`run`].

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::{ContentStore, digest_key, sha256_file};
use pipewright_core::{BlobStore, SMALL_BLOB_MAX};
use std::path::PathBuf;
use std::sync::Arc;

/// Deterministic bytes that differ by `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Scratch(tempfile::TempDir);

impl Scratch {
    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Every check, against `store`, whose cap is `max_bytes` (at least 1 MiB; over 8 MiB makes
/// the large-file check use multipart uploads on S3).
pub async fn run(store: Arc<dyn BlobStore>, max_bytes: u64) {
    assert!(
        max_bytes >= 1 << 20,
        "the suite needs a cap of at least 1 MiB"
    );
    let s = Scratch(tempfile::tempdir().unwrap());
    round_trip(store.as_ref(), &s).await;
    replace(store.as_ref(), &s).await;
    small_blobs(store.as_ref(), &s).await;
    list(store.as_ref(), &s).await;
    invalid_keys(store.as_ref(), &s).await;
    cap(store.as_ref(), &s, max_bytes).await;
    large(store.as_ref(), &s, max_bytes).await;
    readers_never_see_half(store.clone(), &s).await;
    content(store, &s).await;
}

async fn round_trip(store: &dyn BlobStore, s: &Scratch) {
    let data = bytes(300_000, 1);
    let f = s.file("rt", &data);
    assert!(!store.contains("rt/one").await.unwrap());
    assert!(!store.get("rt/one", &s.path("nothing")).await.unwrap());
    assert!(!s.path("nothing").exists(), "a miss writes nothing");
    store.put("rt/one", &f).await.unwrap();
    assert!(store.contains("rt/one").await.unwrap());
    let out = s.path("rt-out");
    assert!(store.get("rt/one", &out).await.unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // An empty file is a blob too.
    let empty = s.file("empty", b"");
    store.put("rt/empty", &empty).await.unwrap();
    assert!(store.get("rt/empty", &out).await.unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), b"");
}

async fn replace(store: &dyn BlobStore, s: &Scratch) {
    let a = s.file("a", &bytes(1000, 2));
    let b = s.file("b", &bytes(2000, 3));
    store.put("replace/k", &a).await.unwrap();
    store.put("replace/k", &b).await.unwrap();
    let out = s.path("replace-out");
    assert!(store.get("replace/k", &out).await.unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), bytes(2000, 3));
}

async fn small_blobs(store: &dyn BlobStore, s: &Scratch) {
    assert_eq!(store.get_bytes("small/none").await.unwrap(), None);
    store.put_bytes("small/p", b"first").await.unwrap();
    store.put_bytes("small/p", b"second").await.unwrap();
    assert_eq!(
        store.get_bytes("small/p").await.unwrap().as_deref(),
        Some(&b"second"[..])
    );
    let e = store
        .put_bytes("small/big", &vec![0; SMALL_BLOB_MAX + 1])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
    let big = s.file("notsmall", &bytes(SMALL_BLOB_MAX + 10, 4));
    store.put("small/file", &big).await.unwrap();
    assert!(store.get_bytes("small/file").await.is_err());
}

async fn list(store: &dyn BlobStore, _s: &Scratch) {
    for k in ["ls/a/x/1", "ls/a/x/2", "ls/a/y/1", "ls/ab/z"] {
        store.put_bytes(k, k.as_bytes()).await.unwrap();
    }
    assert_eq!(
        store.list("ls/a/x/").await.unwrap(),
        ["ls/a/x/1", "ls/a/x/2"]
    );
    assert_eq!(
        store.list("ls/a/").await.unwrap(),
        ["ls/a/x/1", "ls/a/x/2", "ls/a/y/1"]
    );
    assert_eq!(
        store.list("ls/a").await.unwrap(),
        ["ls/a/x/1", "ls/a/x/2", "ls/a/y/1", "ls/ab/z"]
    );
    assert_eq!(store.list("ls/a/x/2").await.unwrap(), ["ls/a/x/2"]);
    assert!(store.list("ls/none/").await.unwrap().is_empty());
}

async fn invalid_keys(store: &dyn BlobStore, s: &Scratch) {
    let f = s.file("inv", b"x");
    for bad in ["", "/abs", "a/../b", "a//b", "sp ace"] {
        assert!(store.put(bad, &f).await.is_err(), "put {bad:?}");
        assert!(
            store.put_bytes(bad, b"x").await.is_err(),
            "put_bytes {bad:?}"
        );
        assert!(
            store.get(bad, &s.path("inv-out")).await.is_err(),
            "get {bad:?}"
        );
    }
}

async fn cap(store: &dyn BlobStore, s: &Scratch, max: u64) {
    let over = s.file("over", &bytes(max as usize + 1, 5));
    let e = store.put("cap/over", &over).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cap") && msg.contains(&max.to_string()),
        "{msg}"
    );
    assert!(!store.contains("cap/over").await.unwrap(), "nothing stored");
}

async fn large(store: &dyn BlobStore, s: &Scratch, max: u64) {
    let data = bytes(max as usize, 6);
    let f = s.file("large", &data);
    drop(data);
    store.put("large/one", &f).await.unwrap();
    let out = s.path("large-out");
    assert!(store.get("large/one", &out).await.unwrap());
    assert_eq!(
        sha256_file(&out).await.unwrap(),
        sha256_file(&f).await.unwrap()
    );
}

/// One task replaces a blob over and over while another reads it: every read is one of the
/// two contents, whole.
async fn readers_never_see_half(store: Arc<dyn BlobStore>, s: &Scratch) {
    let a = s.file("half-a", &bytes(400_000, 7));
    let b = s.file("half-b", &bytes(600_000, 8));
    let (ha, hb) = (
        sha256_file(&a).await.unwrap(),
        sha256_file(&b).await.unwrap(),
    );
    store.put("half/k", &a).await.unwrap();
    let writer = {
        let store = store.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for i in 0..10 {
                let f = if i % 2 == 0 { &b } else { &a };
                store.put("half/k", f).await.unwrap();
            }
        })
    };
    let out = s.path("half-out");
    let mut reads = 0;
    while !writer.is_finished() || reads < 5 {
        // A read racing a replacement may fail, but must never succeed with half a blob.
        if let Ok(true) = store.get("half/k", &out).await {
            let h = sha256_file(&out).await.unwrap();
            assert!(h == ha || h == hb, "read {reads} saw a mix: {h}");
        }
        reads += 1;
    }
    writer.await.unwrap();
}

async fn content(store: Arc<dyn BlobStore>, s: &Scratch) {
    let c = ContentStore::new(store.as_ref());
    let f = s.file("content", &bytes(200_000, 9));
    let same = s.file("content-again", &bytes(200_000, 9));
    let d1 = c.put_file(&f).await.unwrap();
    let d2 = c.put_file(&same).await.unwrap();
    assert_eq!(d1, d2, "the same content, the same digest");
    assert_eq!(d1, sha256_file(&f).await.unwrap());
    let key = digest_key(&d1).unwrap();
    assert!(store.contains(&key).await.unwrap());
    let out = s.path("content-out");
    assert!(c.get(&d1, &out).await.unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), bytes(200_000, 9));

    assert_eq!(c.pointer("refs/none").await.unwrap(), None);
    assert_eq!(c.get_named("refs/none", &out).await.unwrap(), None);
    c.set_pointer("refs/latest", &d1).await.unwrap();
    assert_eq!(
        c.pointer("refs/latest").await.unwrap().as_deref(),
        Some(d1.as_str())
    );
    let other = s.file("content-other", b"other");
    let d3 = c.put_named("refs/latest", &other).await.unwrap();
    assert_eq!(
        c.get_named("refs/latest", &out).await.unwrap().as_deref(),
        Some(d3.as_str())
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"other");

    // Content that does not match its address is refused and not left behind.
    let forged = s.file("forged", b"not what the digest says");
    let fake = format!("sha256:{}", "ab".repeat(32));
    store
        .put(&digest_key(&fake).unwrap(), &forged)
        .await
        .unwrap();
    let bad = s.path("forged-out");
    let e = c.get(&fake, &bad).await.unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(!bad.exists());
    // A pointer to content that is gone says so.
    c.set_pointer("refs/dangling", &format!("sha256:{}", "cd".repeat(32)))
        .await
        .unwrap();
    assert!(c.get_named("refs/dangling", &out).await.is_err());
    assert!(c.pointer("small/p").await.is_err(), "not a pointer");
}

/// A path under a fresh temporary directory kept for the test's life.
pub fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("blobs");
    (d, p)
}

/// Garbage collection against an empty `store`: content no pointer names goes once older than
/// the grace period, named and young content stays, a dry run removes nothing, and pointers
/// (also dangling ones) are never touched.
pub async fn gc(store: Arc<dyn BlobStore>) {
    use crate::{GcOptions, collect_garbage};
    use std::time::Duration;
    assert!(
        store.list("").await.unwrap().is_empty(),
        "gc needs an empty store"
    );
    let s = Scratch(tempfile::tempdir().unwrap());
    let c = ContentStore::new(store.as_ref());
    let kept = c
        .put_named("caches/p/j/deps", &s.file("kept", b"named content"))
        .await
        .unwrap();
    let version = c
        .put_file(&s.file("version", b"an artifact"))
        .await
        .unwrap();
    store
        .put_bytes("artifacts/a/versions/1-x", version.as_bytes())
        .await
        .unwrap();
    let orphan = c
        .put_file(&s.file("orphan", b"replaced cache"))
        .await
        .unwrap();
    let orphan_key = digest_key(&orphan).unwrap();
    c.set_pointer("refs/dangling", &format!("sha256:{}", "ef".repeat(32)))
        .await
        .unwrap();
    assert!(store.modified(&orphan_key).await.unwrap().is_some());
    assert_eq!(store.modified("sha256/00/none").await.unwrap(), None);

    // Within the grace period nothing goes.
    let young = collect_garbage(store.as_ref(), GcOptions::default())
        .await
        .unwrap();
    assert_eq!(young.young, 1, "{young:?}");
    assert!(young.removed.is_empty(), "{young:?}");
    assert_eq!(young.pointers, 3, "{young:?}");
    assert_eq!(young.referenced, 2, "{young:?}");
    assert_eq!(young.dangling.len(), 1, "{young:?}");

    let now = GcOptions {
        grace: Duration::ZERO,
        dry_run: true,
    };
    let dry = collect_garbage(store.as_ref(), now).await.unwrap();
    assert_eq!(dry.removed, vec![orphan_key.clone()]);
    assert!(
        store.contains(&orphan_key).await.unwrap(),
        "a dry run removes nothing"
    );

    let done = collect_garbage(
        store.as_ref(),
        GcOptions {
            dry_run: false,
            ..now
        },
    )
    .await
    .unwrap();
    assert_eq!(done.removed, vec![orphan_key.clone()]);
    assert!(!store.contains(&orphan_key).await.unwrap());
    assert!(!store.delete(&orphan_key).await.unwrap(), "already gone");
    for key in [&kept, &version] {
        assert!(store.contains(&digest_key(key).unwrap()).await.unwrap());
    }
    assert!(store.contains("refs/dangling").await.unwrap());
    let again = collect_garbage(
        store.as_ref(),
        GcOptions {
            dry_run: false,
            ..now
        },
    )
    .await
    .unwrap();
    assert!(again.removed.is_empty(), "{again:?}");
}
