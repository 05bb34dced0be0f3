//! Prometheus metrics (`/metrics`); every name starts with `pipewright_`.

use pipewright_core::BuildStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    created: Counter,
    finished: Family<Labels, Counter>,
    queue_depth: Gauge,
    check_seconds: Histogram,
    check_errors: Counter,
    dispatch_seconds: Histogram,
    http: Family<Labels, Counter>,
    event_batches: Counter,
    events: Counter,
    webhooks: Family<Labels, Counter>,
    workers: Gauge,
    worker_running: Family<Labels, Gauge>,
    worker_heartbeat_age: Family<Labels, Gauge<f64, AtomicU64>>,
}

/// One worker as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerGauge {
    /// Its name (its token's name).
    pub name: String,
    /// Builds it holds now.
    pub running: usize,
    /// Seconds since its last claim, heartbeat or announcement.
    pub heartbeat_age_seconds: f64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pipewright");
        let created = Counter::default();
        registry.register("builds_created", "Builds created", created.clone());
        let finished = Family::<Labels, Counter>::default();
        registry.register(
            "builds_finished",
            "Builds that ended, by status",
            finished.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Build attempts waiting in the queue",
            queue_depth.clone(),
        );
        let check_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "check_duration_seconds",
            "How long resource checks take",
            check_seconds.clone(),
        );
        let check_errors = Counter::default();
        registry.register(
            "check_errors",
            "Resource checks that failed",
            check_errors.clone(),
        );
        let dispatch_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "dispatch_latency_seconds",
            "From a build's dispatch to a worker's claim of it",
            dispatch_seconds.clone(),
        );
        let http = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests, by method and status",
            http.clone(),
        );
        let event_batches = Counter::default();
        registry.register(
            "event_batches",
            "Batches of build events written to the store (one write each)",
            event_batches.clone(),
        );
        let events = Counter::default();
        registry.register(
            "events",
            "Build events written to the store",
            events.clone(),
        );
        let webhooks = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by forge and result",
            webhooks.clone(),
        );
        let workers = Gauge::default();
        registry.register(
            "workers",
            "Workers seen in the last minute",
            workers.clone(),
        );
        let worker_running = Family::<Labels, Gauge>::default();
        registry.register(
            "worker_running_builds",
            "Builds each worker holds now",
            worker_running.clone(),
        );
        let worker_heartbeat_age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "worker_last_heartbeat_age_seconds",
            "Seconds since each worker's last claim, heartbeat or announcement",
            worker_heartbeat_age.clone(),
        );
        Self {
            workers,
            worker_running,
            worker_heartbeat_age,
            webhooks,
            event_batches,
            events,
            registry,
            created,
            finished,
            queue_depth,
            check_seconds,
            check_errors,
            dispatch_seconds,
            http,
        }
    }

    pub(crate) fn webhook(&self, forge: &str, result: pipewright_api::WebhookResult) {
        let result = serde_json::to_value(result)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.webhooks
            .get_or_create(&vec![
                ("forge".into(), forge.into()),
                ("result".into(), result),
            ])
            .inc();
    }

    pub(crate) fn build_created(&self) {
        self.created.inc();
    }

    pub(crate) fn build_finished(&self, status: BuildStatus) {
        self.finished
            .get_or_create(&vec![("status".into(), status.as_str().into())])
            .inc();
    }

    pub(crate) fn set_queue_depth(&self, depth: u64) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub(crate) fn observe_check(&self, took: Duration, ok: bool) {
        self.check_seconds.observe(took.as_secs_f64());
        if !ok {
            self.check_errors.inc();
        }
    }

    pub(crate) fn observe_dispatch(&self, took: Duration) {
        self.dispatch_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn events_stored(&self, n: usize) {
        self.event_batches.inc();
        self.events.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Batches of events written so far, and the events in them.
    pub fn event_writes(&self) -> (u64, u64) {
        (self.event_batches.get(), self.events.get())
    }

    pub(crate) fn http_request(&self, method: &str, status: u16) {
        self.http
            .get_or_create(&vec![
                ("method".into(), method.into()),
                ("status".into(), status.to_string()),
            ])
            .inc();
    }

    /// Replaces the per-worker gauges with `workers` (a worker no longer seen drops out).
    pub fn set_workers(&self, workers: &[WorkerGauge]) {
        self.worker_running.clear();
        self.worker_heartbeat_age.clear();
        self.workers
            .set(i64::try_from(workers.len()).unwrap_or(i64::MAX));
        for w in workers {
            let labels = vec![("worker".to_owned(), w.name.clone())];
            self.worker_running
                .get_or_create(&labels)
                .set(i64::try_from(w.running).unwrap_or(i64::MAX));
            self.worker_heartbeat_age
                .get_or_create(&labels)
                .set(w.heartbeat_age_seconds);
        }
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_gauges_show_the_workers_seen_and_drop_the_gone() {
        let m = Metrics::new();
        m.set_workers(&[
            WorkerGauge {
                name: "w1".into(),
                running: 2,
                heartbeat_age_seconds: 0.25,
            },
            WorkerGauge {
                name: "w2".into(),
                running: 0,
                heartbeat_age_seconds: 3.5,
            },
        ]);
        let text = m.render();
        for line in [
            "pipewright_workers 2",
            "pipewright_worker_running_builds{worker=\"w1\"} 2",
            "pipewright_worker_running_builds{worker=\"w2\"} 0",
            "pipewright_worker_last_heartbeat_age_seconds{worker=\"w1\"} 0.25",
            "pipewright_worker_last_heartbeat_age_seconds{worker=\"w2\"} 3.5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.set_workers(&[WorkerGauge {
            name: "w2".into(),
            running: 1,
            heartbeat_age_seconds: 0.5,
        }]);
        let text = m.render();
        assert!(!text.contains("w1"), "{text}");
        assert!(text.contains("pipewright_worker_running_builds{worker=\"w2\"} 1"));
        assert!(text.contains("pipewright_workers 1"));
    }
}
