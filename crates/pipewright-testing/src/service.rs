//! The [`Service`] conformance suite.
//!
//! The suite drives a service the way the engine does: `start`, then `ready` polled at the
//! service's [`Service::ready_policy`] interval (or the engine's defaults,
//! [`DEFAULT_POLL`] and [`DEFAULT_READY_TIMEOUT`]) until it answers `true` or the timeout
//! passes, then `exports`, and `stop` whatever happened. The rules:
//!
//! - **ready policy honoured**: a policy's interval is above zero and not longer than its
//!   timeout, and the service is ready within that timeout; `ready` never errors while the
//!   service is starting normally.
//! - **stop always called**: the engine calls `stop` in every state, so `stop` succeeds on a
//!   service that was never started, after a normal run, and a second time.
//! - **stop frees what it holds**: after `stop`, a `PORT` the service exported (on its `HOST`,
//!   default 127.0.0.1) no longer accepts connections, and `ready` no longer answers `true`.
//!
//! The suite takes a factory, because each rule needs a fresh service.

use crate::log::RecordingSink;
use pipewright_core::{Ctx, Result, Service, Stream};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The engine's readiness poll interval when a service has no policy.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);
/// The engine's readiness timeout when a service has no policy.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a freed port may take to close after `stop` returns.
const PORT_GRACE: Duration = Duration::from_secs(5);

const POLICY: &str = "ready policy honoured";
const STOP: &str = "stop always called";
const FREED: &str = "stop frees what it holds";

fn broke(rule: &str, detail: impl std::fmt::Display) -> ! {
    panic!("service rule `{rule}` broke: {detail}")
}

/// Runs every service rule against services made by `factory`.
pub async fn check_service(factory: &(dyn Fn() -> Result<Arc<dyn Service>> + Send + Sync)) {
    let make = |rule: &str| match factory() {
        Ok(s) => s,
        Err(e) => broke(rule, format!("the factory failed ({}): {e}", e.kind())),
    };

    // Stop on a service that never started.
    let fresh = make(STOP);
    if let Err(e) = fresh.stop(&Ctx::new()).await {
        broke(
            STOP,
            format!("stop of a service that was never started failed: {e}"),
        );
    }

    let service = make(POLICY);
    let (interval, timeout) = policy(service.as_ref());
    let log = RecordingSink::new();
    let ctx = Ctx::new().with_log(log.clone());
    let outcome = start_and_wait(service.as_ref(), &ctx, interval, timeout).await;
    let exports = if outcome.is_ok() {
        service.exports()
    } else {
        BTreeMap::new()
    };
    // Whatever happened, stop it, as the engine does; then report.
    let stopped = service.stop(&Ctx::new().with_log(log.clone())).await;
    if let Err(why) = outcome {
        broke(
            POLICY,
            format!(
                "{why}; service stderr: {:?}",
                tail(&log.text(Stream::Stderr))
            ),
        );
    }
    if let Err(e) = stopped {
        broke(STOP, format!("stop after a normal run failed: {e}"));
    }
    if let Err(e) = service.stop(&Ctx::new()).await {
        broke(STOP, format!("a second stop failed: {e}"));
    }
    assert_freed(service.as_ref(), &exports).await;
}

fn policy(service: &dyn Service) -> (Duration, Duration) {
    match service.ready_policy() {
        None => (DEFAULT_POLL, DEFAULT_READY_TIMEOUT),
        Some((i, t)) if i.is_zero() || i > t => broke(
            POLICY,
            format!(
                "the policy's interval ({i:?}) must be above zero and at most its timeout ({t:?})"
            ),
        ),
        Some(p) => p,
    }
}

/// `start`, then `ready` every `interval` until `true`; an `Err` describes what went wrong.
async fn start_and_wait(
    service: &dyn Service,
    ctx: &Ctx,
    interval: Duration,
    timeout: Duration,
) -> std::result::Result<(), String> {
    service
        .start(ctx)
        .await
        .map_err(|e| format!("start failed ({}): {e}", e.kind()))?;
    let started = Instant::now();
    let mut probes = 0u32;
    loop {
        probes += 1;
        match service.ready(ctx).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("ready probe {probes} errored ({}): {e}", e.kind())),
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "not ready within its timeout of {timeout:?} ({probes} probes, every {interval:?})"
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

async fn assert_freed(service: &dyn Service, exports: &BTreeMap<String, String>) {
    if let Ok(true) = service.ready(&Ctx::new()).await {
        broke(FREED, "ready still answers true after stop");
    }
    let Some(port) = exports.get("PORT") else {
        return;
    };
    let Ok(port) = port.parse::<u16>() else {
        broke(
            FREED,
            format!("the exported PORT `{port}` is not a port number"),
        );
    };
    let host = exports.get("HOST").map_or("127.0.0.1", String::as_str);
    let until = Instant::now() + PORT_GRACE;
    while tokio::net::TcpStream::connect((host, port)).await.is_ok() {
        if Instant::now() >= until {
            broke(
                FREED,
                format!("{host}:{port} still accepts connections {PORT_GRACE:?} after stop"),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}
