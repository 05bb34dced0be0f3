//! The conformance suite every [`Queue`] runs (enabled by the `testing` feature).
//!
//! Each check is an async function taking a fresh queue whose ack wait is [`ACK_WAIT`], and
//! panics with the rule it found broken. Run them on a multi-thread Tokio runtime.
//!
//! - **fifo**: messages come out in the order they went in, bodies intact.
//! - **dedup**: an id published twice is delivered once.
//! - **tags**: a message needing tags waits for a receiver advertising all of them; one with
//!   no tags goes to anyone.
//! - **redelivery**: a delivery neither acknowledged nor kept alive comes back after the ack
//!   wait, its delivery count one higher.
//! - **progress**: a delivery kept alive with `progress` is not redelivered.
//! - **ack**: an acknowledged delivery never comes back.
//! - **nak**: a delivery given back comes back after the delay.
//! - **competing receivers**: many receivers share the messages, each delivered once.

use crate::{Message, Queue};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The ack wait each check's queue must be made with.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

fn msg(id: &str, tags: &[&str]) -> Message {
    Message {
        id: id.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        body: format!("body of {id}").into_bytes(),
    }
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|t| (*t).to_owned()).collect()
}

/// Whether a receive with `tags` gets something within `within`.
async fn gets_nothing(q: &Arc<dyn Queue>, t: &[&str], within: Duration) -> bool {
    let t = tags(t);
    tokio::time::timeout(within, q.receive(&t)).await.is_err()
}

async fn take(q: &Arc<dyn Queue>, t: &[&str]) -> crate::Delivery {
    let t = tags(t);
    match tokio::time::timeout(Duration::from_secs(10), q.receive(&t)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => panic!("receive failed: {e}"),
        Err(_) => panic!("nothing was delivered within 10s"),
    }
}

async fn publish(q: &Arc<dyn Queue>, m: Message) -> bool {
    match q.publish(m).await {
        Ok(new) => new,
        Err(e) => panic!("publish failed: {e}"),
    }
}

/// Messages come out in the order they went in, bodies intact.
pub async fn fifo(q: Arc<dyn Queue>) {
    for i in 1..=3 {
        assert!(publish(&q, msg(&format!("fifo:{i}"), &[])).await);
    }
    for i in 1..=3 {
        let d = take(&q, &[]).await;
        assert_eq!(
            d.message,
            msg(&format!("fifo:{i}"), &[]),
            "fifo: out of order or changed"
        );
        assert_eq!(d.deliveries, 1, "fifo: a first delivery counts 1");
        d.ack()
            .await
            .unwrap_or_else(|e| panic!("fifo: ack failed: {e}"));
    }
}

/// An id published twice is delivered once.
pub async fn dedup(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("dedup:1", &[])).await);
    assert!(
        !publish(&q, msg("dedup:1", &[])).await,
        "dedup: the second publish reported new"
    );
    let d = take(&q, &[]).await;
    d.ack()
        .await
        .unwrap_or_else(|e| panic!("dedup: ack failed: {e}"));
    assert!(
        gets_nothing(&q, &[], Duration::from_millis(500)).await,
        "dedup: delivered twice"
    );
}

/// A message needing tags waits for a receiver with all of them.
pub async fn tag_routing(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("tags:gpu", &["gpu"])).await);
    assert!(
        gets_nothing(&q, &[], Duration::from_millis(500)).await,
        "tags: an untagged receiver took a gpu message"
    );
    assert!(
        gets_nothing(&q, &["linux"], Duration::from_millis(300)).await,
        "tags: the wrong tag took it"
    );
    let d = take(&q, &["linux", "gpu"]).await;
    assert_eq!(d.message.id, "tags:gpu");
    d.ack()
        .await
        .unwrap_or_else(|e| panic!("tags: ack failed: {e}"));
    assert!(publish(&q, msg("tags:any", &[])).await);
    let d = take(&q, &["gpu"]).await;
    assert_eq!(
        d.message.id, "tags:any",
        "tags: a message with no tags goes to anyone"
    );
    d.ack()
        .await
        .unwrap_or_else(|e| panic!("tags: ack failed: {e}"));
}

/// An unacknowledged delivery comes back after the ack wait.
pub async fn redelivery(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("redeliver:1", &[])).await);
    let first = take(&q, &[]).await;
    assert!(
        gets_nothing(&q, &[], ACK_WAIT / 2).await,
        "redelivery: delivered again before the ack wait"
    );
    let again = take(&q, &[]).await;
    assert_eq!(again.message.id, "redeliver:1");
    assert_eq!(
        again.deliveries,
        first.deliveries + 1,
        "redelivery: the count did not grow"
    );
    again
        .ack()
        .await
        .unwrap_or_else(|e| panic!("redelivery: ack failed: {e}"));
}

/// A delivery kept alive with `progress` is not redelivered.
pub async fn progress(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("progress:1", &[])).await);
    let d = take(&q, &[]).await;
    let other = {
        let q = q.clone();
        tokio::spawn(async move { gets_nothing(&q, &[], ACK_WAIT * 2).await })
    };
    for _ in 0..8 {
        tokio::time::sleep(ACK_WAIT / 4).await;
        d.progress()
            .await
            .unwrap_or_else(|e| panic!("progress: failed: {e}"));
    }
    assert!(
        other.await.unwrap_or(false),
        "progress: redelivered while kept alive"
    );
    d.ack()
        .await
        .unwrap_or_else(|e| panic!("progress: ack failed: {e}"));
}

/// An acknowledged delivery never comes back.
pub async fn ack(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("ack:1", &[])).await);
    take(&q, &[])
        .await
        .ack()
        .await
        .unwrap_or_else(|e| panic!("ack: failed: {e}"));
    assert!(
        gets_nothing(&q, &[], ACK_WAIT + ACK_WAIT / 2).await,
        "ack: came back"
    );
}

/// A delivery given back comes back after the delay.
pub async fn nak(q: Arc<dyn Queue>) {
    assert!(publish(&q, msg("nak:1", &[])).await);
    let d = take(&q, &[]).await;
    d.nak(Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("nak: failed: {e}"));
    let t = tags(&[]);
    let again =
        tokio::time::timeout(ACK_WAIT / 2 + Duration::from_millis(500), q.receive(&t)).await;
    let again = match again {
        Ok(Ok(d)) => d,
        other => panic!("nak: not redelivered soon after the delay: {other:?}"),
    };
    assert_eq!(again.message.id, "nak:1");
    again
        .ack()
        .await
        .unwrap_or_else(|e| panic!("nak: ack failed: {e}"));
}

/// Many receivers share the messages; each is delivered once.
pub async fn competing_receivers(q: Arc<dyn Queue>) {
    let n = 40;
    for i in 0..n {
        assert!(publish(&q, msg(&format!("compete:{i}"), &[])).await);
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let t = tags(&[]);
            while let Ok(Ok(d)) =
                tokio::time::timeout(Duration::from_millis(800), q.receive(&t)).await
            {
                got.push(d.message.id.clone());
                d.ack()
                    .await
                    .unwrap_or_else(|e| panic!("compete: ack failed: {e}"));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        all.len(),
        n,
        "compete: {} deliveries of {n} messages",
        all.len()
    );
    assert_eq!(
        distinct.len(),
        n,
        "compete: some message was delivered twice"
    );
}
