//! The step log with real processes and a slow consumer: every byte arrives, in order, and the
//! buffer never holds more than its capacity plus one chunk.

use super::*;
use crate::events::ChannelSink;
use pipewright_core::{Ctx, Event, StepRole};
use pipewright_runners::{ProcessSpec, run_process};
use std::time::Duration;
use tokio::sync::mpsc;

/// The most a pipe reader adds beyond the buffer's capacity: one read.
const CHUNK: usize = 64 * 1024;
const CHANNEL: usize = 4;

fn chatty_log() -> (Arc<StepLog>, mpsc::Receiver<Event>) {
    let (sink, rx) = ChannelSink::new(CHANNEL);
    let emitter = Arc::new(Emitter::new("b".into(), Arc::new(sink)));
    let step = StepId::new(["chatty"], StepRole::Step);
    (Arc::new(StepLog::new(emitter, step, 1)), rx)
}

/// Receives slowly once `go` fires; returns the stdout text and the most events ever queued.
fn consumer(
    mut rx: mpsc::Receiver<Event>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<(String, usize)> {
    tokio::spawn(async move {
        let _ = go.await;
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

/// Runs `script` with `log` as its sink; releases the consumer once the buffer is full (so the
/// reader has had to wait) and `extra` later.
async fn run_chatty(script: &str, extra: Duration) -> (String, usize, usize) {
    let (log, rx) = chatty_log();
    let (go, gate) = tokio::sync::oneshot::channel();
    let received = consumer(rx, gate);
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
    while log.peak() < LOG_BUFFER_BYTES {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(extra).await;
    let _ = go.send(());
    let exit = task.await.unwrap().unwrap();
    assert!(exit.success());
    log.flush().await;
    let peak = log.peak();
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
    assert!(
        most <= CHANNEL,
        "{most} events queued in a channel of {CHANNEL}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_while_its_reader_waits_loses_nothing() {
    // The task writes more than the buffer holds and exits while its pipe reader waits for
    // room; the reader is not mistaken for a pipe held open by a daemon and aborted.
    let (out, peak, _) = run_chatty(
        "head -c 300000 /dev/zero | tr '\\0' x",
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(out.len(), 300000);
    assert!(out.bytes().all(|b| b == b'x'));
    assert!(peak <= LOG_BUFFER_BYTES + CHUNK);
}
