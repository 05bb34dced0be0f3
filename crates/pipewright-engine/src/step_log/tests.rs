//! The step log with real processes and a slow consumer: every byte arrives, in order, and the
//! buffer never holds more than its capacity plus one chunk.

use super::*;
use crate::events::{ChannelSink, EventSink};
use async_trait::async_trait;
use pipewright_core::{Ctx, Event, StepRole};
use pipewright_runners::{ProcessSpec, run_process};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The most a pipe reader adds beyond the buffer's capacity: one read.
const CHUNK: usize = 64 * 1024;
const CHANNEL: usize = 4;

/// A bounded channel that takes nothing until it is opened: the slowest consumer.
struct Gated {
    inner: ChannelSink,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl EventSink for Gated {
    async fn emit(&self, event: Event) {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.emit(event).await;
    }
}

/// Receives slowly; returns the stdout text and the most events ever queued.
fn consumer(mut rx: mpsc::Receiver<Event>) -> tokio::task::JoinHandle<(String, usize)> {
    tokio::spawn(async move {
        let (mut out, mut expected, mut most) = (String::new(), 0u64, 0);
        while let Some(e) = rx.recv().await {
            most = most.max(rx.len() + 1);
            if let EventKind::Log {
                offset,
                data,
                stream: Stream::Stdout,
                ..
            } = e.kind
            {
                assert_eq!(offset, expected, "offsets are contiguous");
                expected += data.len() as u64;
                out.push_str(&data);
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        (out, most)
    })
}

/// Runs `script` with a step log as its sink; opens the sink once the reader has had to wait
/// for room, and `extra` later. Returns the output, the log's peak and the most events queued.
async fn run_chatty(script: &str, extra: Duration) -> (String, usize, usize) {
    let (inner, rx) = ChannelSink::new(CHANNEL);
    let (open, gate) = watch::channel(false);
    let sink = Arc::new(Gated { inner, open: gate });
    let emitter = Arc::new(Emitter::new("b".into(), sink));
    let step = StepId::new(["chatty"], StepRole::Step);
    let log = Arc::new(StepLog::new(emitter, step, 1));
    let received = consumer(rx);
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = Ctx::new();
    ctx.log = log.clone();
    let spec = ProcessSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        cwd: dir.path().to_owned(),
        ..ProcessSpec::default()
    };
    let task = tokio::spawn(async move { run_process(&ctx, &spec, Duration::from_secs(1)).await });
    while log.stats().1 == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(extra).await;
    let _ = open.send(true);
    let exit = task.await.unwrap().unwrap();
    assert!(exit.success());
    log.flush().await;
    let (peak, _) = log.stats();
    drop(log);
    let (out, most) = received.await.unwrap();
    (out, peak, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_gets_every_byte_of_a_chatty_task_in_order() {
    let (out, peak, most) = run_chatty("seq 1 300000", Duration::ZERO).await;
    let expected: String = (1..=300000).map(|n| format!("{n}\n")).collect();
    assert!(expected.len() > 5 * LOG_BUFFER_BYTES);
    assert_eq!(out.len(), expected.len());
    assert!(
        out == expected,
        "the output arrived changed or out of order"
    );
    assert!(
        peak <= LOG_BUFFER_BYTES + CHUNK,
        "{peak} bytes were queued, more than the buffer allows"
    );
    // `most` counts the event just received as well: the sender may refill its slot before
    // the consumer reads the queue's length.
    assert!(
        most <= CHANNEL + 1,
        "{most} events queued in a channel of {CHANNEL}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_while_its_reader_waits_loses_nothing() {
    // One pipe's worth more than the buffer: the reader has to wait for room with at most a
    // pipe's worth left, so the task exits while its reader waits. The reader must not be
    // taken for a pipe held open by a daemon and stopped (that takes 1.2 s).
    let n = LOG_BUFFER_BYTES + CHUNK;
    let script = format!("head -c {n} /dev/zero | tr '\\0' x");
    let (out, peak, _) = run_chatty(&script, Duration::from_millis(1500)).await;
    assert_eq!(out.len(), n);
    assert!(out.bytes().all(|b| b == b'x'));
    assert!(peak <= LOG_BUFFER_BYTES + CHUNK);
}
