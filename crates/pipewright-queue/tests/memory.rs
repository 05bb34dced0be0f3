//! The conformance suite against [`MemoryQueue`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pipewright_queue::{MemoryQueue, Queue, testing};
use std::sync::Arc;

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let q: Arc<dyn Queue> = Arc::new(MemoryQueue::with_ack_wait(testing::ACK_WAIT));
            testing::$check(q).await;
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

#[tokio::test]
async fn close_wakes_a_waiting_receiver() {
    let q = MemoryQueue::new();
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.receive(&[]).await.map(|_| ()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    q.close();
    assert_eq!(
        waiting.await.unwrap(),
        Err(pipewright_queue::QueueError::Closed)
    );
}
