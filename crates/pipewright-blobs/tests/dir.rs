//! The conformance suite against a local directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_blobs::{BlobStore, DirBlobStore, testing};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_passes_the_conformance_suite() {
    let (_keep, dir) = testing::temp_dir();
    let store: Arc<dyn BlobStore> = Arc::new(DirBlobStore::new(&dir).with_max_bytes(2 << 20));
    testing::run(store, 2 << 20).await;
    // Nothing half-written is left behind.
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            assert!(!e.file_name().to_string_lossy().starts_with(".partial-"));
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_is_garbage_collected() {
    let (_keep, dir) = testing::temp_dir();
    testing::gc(Arc::new(DirBlobStore::new(&dir))).await;
}
