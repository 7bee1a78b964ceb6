//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Counters and the step-duration histogram are this process's (atomics, updated as events
//! arrive); the gauges of runs by state, queue depth and the fail queue are read from the
//! store at each scrape, so every worker on one store reports the same totals. Written by
//! hand: a dozen series do not need a metrics registry, and the format is small and stable.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::run::StepState;
use crate::store::Counts;

/// Upper bounds (seconds) of the step-duration histogram's buckets.
pub const STEP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

const STATES: &[StepState] = &[
    StepState::Succeeded,
    StepState::Failed,
    StepState::Skipped,
    StepState::Cancelled,
    StepState::Cached,
];

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// This process's counters.
pub struct Metrics {
    /// Per [`STATES`] entry: a histogram of step durations.
    steps: Mutex<Vec<Histogram>>,
    pub cache_hits: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub webhooks_duplicate: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub webhooks_ignored: AtomicU64,
    pub runs_started: AtomicU64,
    pub runs_running: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_failed_attempts: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            steps: Mutex::new(
                STATES
                    .iter()
                    .map(|_| Histogram {
                        buckets: vec![0; STEP_BUCKETS.len()],
                        ..Histogram::default()
                    })
                    .collect(),
            ),
            cache_hits: AtomicU64::new(0),
            webhooks_accepted: AtomicU64::new(0),
            webhooks_duplicate: AtomicU64::new(0),
            webhooks_rejected: AtomicU64::new(0),
            webhooks_ignored: AtomicU64::new(0),
            runs_started: AtomicU64::new(0),
            runs_running: AtomicU64::new(0),
            notifications_sent: AtomicU64::new(0),
            notifications_failed_attempts: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A step instance finished (a step the step cache answered counts as a cache hit).
    pub fn step_finished(&self, state: StepState, duration_ms: Option<u64>) {
        if state == StepState::Cached {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        let Some(i) = STATES.iter().position(|s| *s == state) else {
            return;
        };
        let secs = duration_ms.unwrap_or(0) as f64 / 1000.0;
        let mut steps = self
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = &mut steps[i];
        for (b, bound) in h.buckets.iter_mut().zip(STEP_BUCKETS) {
            if secs <= *bound {
                *b += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition text, with the store's `counts`.
    pub fn render(&self, counts: &Counts) -> String {
        let mut out = String::new();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);

        out.push_str("# HELP kiln_runs Runs in the store by state.\n# TYPE kiln_runs gauge\n");
        for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
            let n = counts
                .runs_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "kiln_runs{{state=\"{state}\"}} {n}");
        }
        gauge(
            &mut out,
            "kiln_queue_depth",
            "Queued runs that are due to start.",
            counts.queued_due,
        );
        gauge(
            &mut out,
            "kiln_fail_queue_runs",
            "Runs that failed after their last attempt (the fail queue).",
            counts.failed_queue,
        );
        gauge(
            &mut out,
            "kiln_webhook_events_pending",
            "Webhook events not yet turned into runs.",
            counts.events_pending,
        );
        gauge(
            &mut out,
            "kiln_notifications_pending",
            "Notifications waiting to be delivered.",
            counts.notifications_pending,
        );
        gauge(
            &mut out,
            "kiln_notifications_failed",
            "Notifications given up after their last attempt.",
            counts.notifications_failed,
        );
        gauge(
            &mut out,
            "kiln_worker_runs_running",
            "Runs this worker is running now.",
            i64::try_from(c(&self.runs_running)).unwrap_or(i64::MAX),
        );
        counter(
            &mut out,
            "kiln_worker_runs_started_total",
            "Run attempts this worker started.",
            c(&self.runs_started),
        );
        counter(
            &mut out,
            "kiln_step_cache_hits_total",
            "Steps answered from the step cache (state `cached`).",
            c(&self.cache_hits),
        );

        out.push_str("# HELP kiln_webhook_deliveries_total Webhook deliveries received, by result.\n# TYPE kiln_webhook_deliveries_total counter\n");
        for (result, v) in [
            ("accepted", &self.webhooks_accepted),
            ("duplicate", &self.webhooks_duplicate),
            ("rejected", &self.webhooks_rejected),
            ("ignored", &self.webhooks_ignored),
        ] {
            let _ = writeln!(
                out,
                "kiln_webhook_deliveries_total{{result=\"{result}\"}} {}",
                c(v)
            );
        }
        out.push_str("# HELP kiln_notifications_total Notification delivery attempts, by result.\n# TYPE kiln_notifications_total counter\n");
        let _ = writeln!(
            out,
            "kiln_notifications_total{{result=\"delivered\"}} {}",
            c(&self.notifications_sent)
        );
        let _ = writeln!(
            out,
            "kiln_notifications_total{{result=\"error\"}} {}",
            c(&self.notifications_failed_attempts)
        );

        out.push_str("# HELP kiln_step_duration_seconds Wall time of finished steps on this worker, by final state.\n# TYPE kiln_step_duration_seconds histogram\n");
        let steps = self
            .steps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (state, h) in STATES.iter().zip(steps.iter()) {
            let s = state.as_str();
            for (bound, n) in STEP_BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "kiln_step_duration_seconds_bucket{{state=\"{s}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "kiln_step_duration_seconds_bucket{{state=\"{s}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "kiln_step_duration_seconds_sum{{state=\"{s}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "kiln_step_duration_seconds_count{{state=\"{s}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_durations_fill_cumulative_buckets_and_cached_steps_count_as_hits() {
        let m = Metrics::default();
        m.step_finished(StepState::Succeeded, Some(30));
        m.step_finished(StepState::Succeeded, Some(2000));
        m.step_finished(StepState::Cached, Some(1));
        let text = m.render(&Counts {
            runs_by_state: vec![("queued".into(), 3)],
            queued_due: 2,
            ..Counts::default()
        });
        assert!(text.contains("kiln_runs{state=\"queued\"} 3\n"), "{text}");
        assert!(text.contains("kiln_runs{state=\"failed\"} 0\n"));
        assert!(text.contains("kiln_queue_depth 2\n"));
        assert!(text.contains("kiln_step_cache_hits_total 1\n"));
        assert!(
            text.contains("kiln_step_duration_seconds_bucket{state=\"succeeded\",le=\"0.05\"} 1\n")
        );
        assert!(
            text.contains("kiln_step_duration_seconds_bucket{state=\"succeeded\",le=\"2.5\"} 2\n")
        );
        assert!(text.contains("kiln_step_duration_seconds_count{state=\"succeeded\"} 2\n"));
        assert!(text.contains("kiln_step_duration_seconds_sum{state=\"succeeded\"} 2.03\n"));
    }
}
