//! Checks of [`EventStore`](crate::EventStore): idempotent, fenced appends; reads after a
//! seq; the log text.

use super::{Start, broke, check, claimed_build, fresh_build, ok};
use crate::{EventRecord, Store, StoreError};
use pipewright_core::{BuildStatus, Event, EventKind, StepId, Stream};
use std::sync::Arc;

/// A non-log event at `seq`.
fn status_event(seq: u64) -> EventRecord {
    EventRecord {
        seq,
        body: serde_json::json!({ "seq": seq, "event": "build_status", "status": "running" }),
        log: None,
    }
}

/// A log event at `seq` carrying `text`, built from a typed event.
fn log_event(build: &str, seq: u64, text: &str) -> EventRecord {
    let event = Event {
        schema: pipewright_core::SCHEMA_VERSION,
        build_id: build.to_owned(),
        seq,
        at_ms: 0,
        kind: EventKind::Log {
            step: StepId::new(["unit"], pipewright_core::StepRole::Step),
            attempt: 1,
            stream: Stream::Stdout,
            offset: 0,
            data: text.to_owned(),
        },
    };
    EventRecord::from_event(&event).unwrap_or_else(|e| broke("events", e))
}

fn seqs(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

const APPEND: &str = "event append is idempotent";

/// A redelivered or overlapping batch, or one holding a seq twice, stores each seq once (the
/// first write wins); appends are fenced by attempt; concurrent redeliveries of one batch
/// store it once.
pub async fn append_idempotent(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, APPEND, "w").await;
    let batch: Vec<EventRecord> = (0..5).map(status_event).collect();
    check(
        APPEND,
        ok(APPEND, "append", s.append_events(id, 1, &batch).await) == 5,
        "5 new",
    );
    check(
        APPEND,
        ok(APPEND, "redeliver", s.append_events(id, 1, &batch).await) == 0,
        "dup",
    );
    let mut overlap: Vec<EventRecord> = (3..8).map(status_event).collect();
    overlap[0].body = serde_json::json!({ "seq": 3, "changed": true });
    let n = ok(APPEND, "overlap", s.append_events(id, 1, &overlap).await);
    check(
        APPEND,
        n == 3,
        format!("an overlapping batch stored {n} new events, want 3"),
    );
    let all = ok(APPEND, "events_after", s.events_after(id, None, 100).await);
    check(
        APPEND,
        seqs(&all) == (0..8).collect::<Vec<_>>(),
        format!("seqs {:?}", seqs(&all)),
    );
    check(
        APPEND,
        all.get(3) == batch.get(3),
        "a redelivered seq replaced the first write",
    );
    let twice: Vec<EventRecord> = (1..=2)
        .map(|copy| EventRecord {
            seq: 8,
            body: serde_json::json!({ "seq": 8, "copy": copy }),
            log: None,
        })
        .collect();
    let n = ok(APPEND, "a seq twice", s.append_events(id, 1, &twice).await);
    check(
        APPEND,
        n == 1,
        format!("a batch holding one seq twice stored {n} new events, want 1"),
    );
    let got = ok(
        APPEND,
        "events_after",
        s.events_after(id, Some(7), 10).await,
    );
    check(
        APPEND,
        got.first().map(|e| &e.body) == twice.first().map(|e| &e.body),
        "the second copy of a seq in one batch replaced the first",
    );
    check(
        APPEND,
        ok(APPEND, "empty batch", s.append_events(id, 1, &[]).await) == 0,
        "empty",
    );

    let stale = s.append_events(id, 0, &[status_event(100)]).await;
    check(
        APPEND,
        matches!(stale, Err(StoreError::Stale { .. })),
        format!("append by attempt 0 of a claimed build: expected stale, got {stale:?}"),
    );
    let missing = s
        .append_events(crate::BuildId(u64::MAX / 2), 0, &batch)
        .await;
    check(
        APPEND,
        matches!(missing, Err(StoreError::NotFound { .. })),
        format!("append to an unknown build: expected not found, got {missing:?}"),
    );

    let id = claimed_build(s, APPEND, "w").await;
    let batch: Arc<Vec<EventRecord>> = Arc::new((0..20).map(status_event).collect());
    let mut tasks = Vec::new();
    let start = Start::new(8);
    for _ in 0..8 {
        let (store, batch, start) = (store.clone(), batch.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.go(store.as_ref()).await;
            store.append_events(id, 1, &batch).await
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += ok(
            APPEND,
            "append",
            t.await.unwrap_or_else(|e| broke(APPEND, e)),
        );
    }
    check(
        APPEND,
        total == 20,
        format!("8 concurrent deliveries stored {total} events, want 20"),
    );
    let last = ok(APPEND, "last_event_seq", s.last_event_seq(id).await);
    check(APPEND, last == Some(19), format!("last seq {last:?}"));
}

const READ: &str = "events read after a seq";

/// Reads after a seq (Last-Event-ID) return the next events in order, up to the limit; a new
/// attempt's events continue after the last seq.
pub async fn read_after(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let fresh = fresh_build(s, READ).await;
    let none = ok(
        READ,
        "events_after",
        s.events_after(fresh.id, None, 10).await,
    );
    check(READ, none.is_empty(), "a new build has events");
    let last = ok(READ, "last_event_seq", s.last_event_seq(fresh.id).await);
    check(
        READ,
        last.is_none(),
        format!("a new build's last seq is {last:?}"),
    );

    let id = claimed_build(s, READ, "w").await;
    let late: Vec<EventRecord> = (6..10).map(status_event).collect();
    let early: Vec<EventRecord> = (0..6).map(status_event).collect();
    ok(READ, "append", s.append_events(id, 1, &late).await);
    ok(READ, "append", s.append_events(id, 1, &early).await);
    let cases = [
        (None, 3, vec![0, 1, 2]),
        (Some(2), 3, vec![3, 4, 5]),
        (Some(5), 100, vec![6, 7, 8, 9]),
        (Some(9), 10, vec![]),
        (Some(0), 0, vec![]),
    ];
    for (after, limit, want) in cases {
        let got = seqs(&ok(
            READ,
            "events_after",
            s.events_after(id, after, limit).await,
        ));
        check(
            READ,
            got == want,
            format!("after {after:?} limit {limit}: {got:?}, want {want:?}"),
        );
    }

    ok(READ, "requeue", s.requeue_build(id, 1).await);
    ok(READ, "claim", s.claim_build(id, 2, "w2").await);
    let next = ok(READ, "last_event_seq", s.last_event_seq(id).await).map_or(0, |l| l + 1);
    check(
        READ,
        next == 10,
        format!("attempt 2 continues at seq {next}, want 10"),
    );
    ok(
        READ,
        "append",
        s.append_events(id, 2, &[status_event(next)]).await,
    );
    let got = seqs(&ok(
        READ,
        "events_after",
        s.events_after(id, Some(9), 10).await,
    ));
    check(
        READ,
        got == [10],
        format!("attempt 2's events read {got:?}"),
    );
}

const LOG: &str = "log text";

/// The log text is the log chunks' text in seq order, whatever order the batches came in,
/// without the other events.
pub async fn log_text(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let id = claimed_build(s, LOG, "w").await;
    let b = id.to_string();
    let empty = ok(LOG, "log_text", s.log_text(id).await);
    check(
        LOG,
        empty.is_empty(),
        format!("a build without events has log {empty:?}"),
    );
    let second = vec![
        log_event(&b, 3, "line 2\n"),
        status_event(4),
        log_event(&b, 5, "li"),
        log_event(&b, 6, "ne 3 ***\n"),
    ];
    let first = vec![
        status_event(0),
        log_event(&b, 1, "line 1\n"),
        status_event(2),
    ];
    ok(LOG, "append", s.append_events(id, 1, &second).await);
    ok(LOG, "append", s.append_events(id, 1, &first).await);
    ok(LOG, "redeliver", s.append_events(id, 1, &second).await);
    let text = ok(LOG, "log_text", s.log_text(id).await);
    check(
        LOG,
        text == "line 1\nline 2\nline 3 ***\n",
        format!("log text {text:?}"),
    );
    ok(
        LOG,
        "finish",
        s.finish_build(id, 1, BuildStatus::Succeeded, None).await,
    );
    let tail = vec![log_event(&b, 7, "done\n")];
    ok(
        LOG,
        "append after finish",
        s.append_events(id, 1, &tail).await,
    );
    let text = ok(LOG, "log_text", s.log_text(id).await);
    check(
        LOG,
        text.ends_with("***\ndone\n"),
        format!("log text after finish {text:?}"),
    );
    let body = ok(LOG, "events_after", s.events_after(id, Some(0), 1).await);
    let kind = body
        .first()
        .and_then(|e| e.body.get("event"))
        .and_then(|v| v.as_str());
    check(
        LOG,
        kind == Some("log"),
        format!("a stored log event's body reads {kind:?}"),
    );
}
