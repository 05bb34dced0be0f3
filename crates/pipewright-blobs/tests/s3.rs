//! The conformance suite against a real S3-compatible server (`moto_server`), with a prefix
//! and without, multipart uploads included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_blobs::object_store::aws::AmazonS3Builder;
use pipewright_blobs::{BlobStore, BlobUrl, S3BlobStore, S3Options, testing};
use pipewright_testing::servers::{Moto, require};
use std::sync::Arc;

fn store(moto: &Moto, url: &str, max: u64) -> S3BlobStore {
    let BlobUrl::S3(location) =
        BlobUrl::parse(&format!("{url}?endpoint={}", moto.endpoint())).unwrap()
    else {
        panic!("not s3")
    };
    let credentials = AmazonS3Builder::new()
        .with_access_key_id(Moto::ACCESS_KEY_ID)
        .with_secret_access_key(Moto::SECRET_ACCESS_KEY);
    S3BlobStore::from_builder(
        credentials,
        S3Options {
            location,
            max_bytes: max,
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_compatible_store_passes_the_conformance_suite() {
    if !require("moto_server", "python3 -m pip install 'moto[server]'") {
        return;
    }
    let moto = Moto::start().unwrap();
    moto.create_bucket("pipewright-ci").unwrap();
    // Over 8 MiB: the large file goes up in parts.
    let max = 9 << 20;
    let prefixed = store(&moto, "s3://pipewright-ci/pipewright/blobs", max);
    assert_eq!(
        prefixed.describe(),
        format!("s3://pipewright-ci/pipewright/blobs at {}", moto.endpoint())
    );
    testing::run(Arc::new(prefixed) as Arc<dyn BlobStore>, max).await;
    let bare = store(&moto, "s3://pipewright-ci", 2 << 20);
    testing::run(Arc::new(bare) as Arc<dyn BlobStore>, 2 << 20).await;
    testing::gc(Arc::new(store(&moto, "s3://pipewright-ci/gc", max))).await;

    // A missing bucket is an error that names it, not a miss.
    let missing = store(&moto, "s3://nobucket", max);
    let e = missing.put_bytes("k", b"x").await.unwrap_err();
    assert!(e.to_string().contains('k'), "{e}");
}
