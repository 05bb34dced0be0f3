//! One check loop per resource: on its schedule (with jitter), at once on demand, slower while
//! it fails, and new versions handed to the triggers.

use crate::hub::{Hub, now_ms};
use pipewright_core::{CancellationToken, Schedule};
use pipewright_engine::RunOptions;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks `rid` of `pipeline` until `stop` (the pipeline was replaced or the server stops).
pub(crate) async fn check_loop(
    hub: Arc<Hub>,
    pipeline: String,
    rid: String,
    stop: CancellationToken,
) {
    let now = hub.check_signal(&pipeline, &rid);
    let mut failures = 0u32;
    // The first check soon after start, spread so many resources do not check at once.
    let mut wait = Duration::from_millis(rand::random_range(0..250));
    loop {
        hub.set_check_state(&pipeline, &rid, |c| {
            c.next_check_at_ms = Some(now_ms() + u64::try_from(wait.as_millis()).unwrap_or(0));
        });
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = now.notified() => {}
        }
        let Some(p) = hub.pipeline(&pipeline) else {
            return;
        };
        let Some(decl) = p.resources.get(&rid) else {
            return;
        };
        let schedule = decl.check_interval.clone().unwrap_or(Schedule::DEFAULT);
        let ok = check_once(&hub, &pipeline, &rid, &p, &stop).await;
        failures = if ok { 0 } else { failures.saturating_add(1) };
        wait = next_wait(&schedule, failures, hub.options.max_backoff);
    }
}

/// One check; true when it succeeded.
async fn check_once(
    hub: &Arc<Hub>,
    pipeline: &str,
    rid: &str,
    p: &pipewright_config::Pipeline,
    stop: &CancellationToken,
) -> bool {
    let opts = RunOptions {
        pipeline_name: pipeline.to_owned(),
        cancel: stop.child_token(),
        store: Some(Arc::new(hub.versions(pipeline))),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let result = hub.engine.check_resource(p, rid, &opts).await;
    let took = started.elapsed();
    hub.metrics.observe_check(took, result.is_ok());
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(outcome) => {
            hub.set_check_state(pipeline, rid, |c| {
                c.last_checked_at_ms = Some(now_ms());
                c.last_duration_ms = Some(took_ms);
                c.error = None;
                c.failures = 0;
            });
            if outcome.new_versions > 0 {
                tracing::info!(
                    pipeline,
                    resource = rid,
                    new = outcome.new_versions,
                    "new versions"
                );
                hub.on_new_versions(pipeline, rid).await;
            }
            true
        }
        Err(e) => {
            tracing::warn!(pipeline, resource = rid, error = %e, "check failed");
            hub.set_check_state(pipeline, rid, |c| {
                c.last_checked_at_ms = Some(now_ms());
                c.last_duration_ms = Some(took_ms);
                c.error = Some(e.to_string());
                c.failures = c.failures.saturating_add(1);
            });
            false
        }
    }
}

/// The wait before the next check: the schedule's interval (±10 %) or time to the next cron
/// occurrence; doubled for each failure in a row, up to `max_backoff` (never below the
/// interval itself).
pub(crate) fn next_wait(schedule: &Schedule, failures: u32, max_backoff: Duration) -> Duration {
    let base = match schedule {
        Schedule::Every(d) => *d,
        Schedule::Cron(expr) => cron_wait(expr).unwrap_or(Duration::from_secs(60)),
    };
    let backed = if failures == 0 {
        base
    } else {
        let factor = 1u32 << failures.min(10);
        base.saturating_mul(factor).min(max_backoff.max(base))
    };
    match schedule {
        Schedule::Every(_) => backed.mul_f64(rand::random_range(0.9..1.1)),
        // A cron time is a promise; only a little jitter after it.
        Schedule::Cron(_) => backed + Duration::from_millis(rand::random_range(0..500)),
    }
}

fn cron_wait(expr: &str) -> Option<Duration> {
    let cron = croner::parser::CronParser::new().parse(expr).ok()?;
    let now = chrono::Utc::now();
    let next = cron.find_next_occurrence(&now, false).ok()?;
    (next - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_jittered_and_failures_back_off_to_a_limit() {
        let every = Schedule::Every(Duration::from_secs(30));
        let max = Duration::from_secs(600);
        for _ in 0..100 {
            let w = next_wait(&every, 0, max);
            assert!(
                w >= Duration::from_secs(27) && w <= Duration::from_secs(33),
                "{w:?}"
            );
        }
        let w = next_wait(&every, 2, max);
        assert!(
            w >= Duration::from_secs(108) && w <= Duration::from_secs(132),
            "{w:?}"
        );
        let w = next_wait(&every, 30, max);
        assert!(w <= Duration::from_secs(660), "{w:?}");
    }

    #[test]
    fn cron_waits_until_the_next_occurrence() {
        let w = next_wait(
            &Schedule::Cron("* * * * *".into()),
            0,
            Duration::from_secs(600),
        );
        assert!(w <= Duration::from_secs(61), "{w:?}");
    }
}
