//! The worker side of `kiln serve`: takes queued runs, webhook events and notifications from
//! the store, one claim at a time, and does them.
//!
//! Data flow: the API only writes to the store; this worker claims from it (atomically, so two
//! workers on one store never take the same run), prepares the run (fetches the repository,
//! reads and plans the pipeline), runs it with the scheduler, and writes the scheduler's events
//! (step states, log lines, the outcome) back to the store, which the API reads.
//!
//! A worker holds a lease on what it claimed and renews it with a heartbeat; a run whose lease
//! ran out (its worker died) is recovered by any worker: its attempt ends as failed with the
//! reason and it is retried per the policy, reusing the steps that had finished. At start-up a
//! worker recovers at once what it held before it restarted (its id is kept in the data dir,
//! which one process at a time may use).

mod events;
mod notify;
mod run;
mod schedule;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::server::config::Config;
use crate::server::metrics::Metrics;
use crate::store::{self, Policy, Store, now_ms};

pub use events::{Normalized, normalize};

/// Shared by the worker's loops and the API (to wake it and to cancel local runs).
pub struct Worker {
    pub id: String,
    pub store: Store,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    host: Arc<kiln_host::PluginHost>,
    git: Arc<kiln_git::Git>,
    /// The step cache shared by this worker's runs (`None` when the store is unusable: every
    /// step then runs, and the log at start-up says why).
    step_cache: Option<Arc<crate::cache::StepCache>>,
    /// Wakes the run loop (a run was queued or a slot freed).
    pub wake_runs: Notify,
    /// Wakes the event loop (a webhook event was stored).
    pub wake_events: Notify,
    /// Wakes the notification loop.
    pub wake_notify: Notify,
    /// Sent after each batch of log lines or step changes is committed (followers re-read).
    pub changed: tokio::sync::watch::Sender<u64>,
    running: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        id: String,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Worker>, String> {
        let slots = config.max_runs.saturating_mul(config.jobs);
        let host = crate::cli::new_host_with(
            slots,
            Some(config.memory_limit_mb.saturating_mul(1 << 20)),
            config.allow_local_repos,
        )
        .map_err(|e| format!("cannot start the plugin host: {e}"))?;
        let git = Arc::new(crate::dirs::git(config.allow_local_repos));
        let step_cache = match crate::dirs::cache_store() {
            Ok(store) => Some(Arc::new(crate::cache::StepCache::new(Arc::new(store)))),
            Err(e) => {
                tracing::warn!(error = %e, "the step cache is off");
                None
            }
        };
        let (changed, _) = tokio::sync::watch::channel(0u64);
        Ok(Arc::new(Worker {
            id,
            store,
            config,
            metrics,
            host,
            git,
            step_cache,
            wake_runs: Notify::new(),
            wake_events: Notify::new(),
            wake_notify: Notify::new(),
            changed,
            running: Mutex::new(HashMap::new()),
            shutdown,
        }))
    }

    pub fn policy(&self) -> Policy {
        Policy {
            backoff_ms: millis(self.config.backoff),
            max_backoff_ms: millis(self.config.max_backoff),
            notify: self.config.notify.clone(),
        }
    }

    fn lease_ms(&self) -> i64 {
        millis(self.config.lease)
    }

    /// Where run `id` keeps its workspace on this worker.
    pub fn workspace(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("runs").join(id).join("workspace")
    }

    /// Cancelled when the server stops (log followers end, loops stop claiming).
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancel run `id` if this worker runs it.
    pub fn cancel_local(&self, id: &str) -> bool {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match running.get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    fn running_count(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub(crate) fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Recover what this worker held before a restart, then start every loop.
    pub async fn start(self: &Arc<Self>) -> Result<(), String> {
        let policy = self.policy();
        let own = self.id.clone();
        let recovered = self
            .store
            .write(move |c| store::recover_runs(c, Some(&own), &policy, now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        if !recovered.is_empty() {
            tracing::warn!(
                runs = recovered.len(),
                "recovered runs interrupted by the last stop of this worker"
            );
        }
        tokio::spawn(self.clone().run_loop());
        tokio::spawn(self.clone().event_loop());
        tokio::spawn(self.clone().notify_loop());
        tokio::spawn(self.clone().heartbeat_loop());
        tokio::spawn(self.clone().schedule_loop());
        Ok(())
    }

    async fn run_loop(self: Arc<Self>) {
        loop {
            while self.running_count() < self.config.max_runs && !self.shutdown.is_cancelled() {
                let worker = self.id.clone();
                let lease = self.lease_ms();
                match self
                    .store
                    .write(move |c| store::claim_run(c, &worker, now_ms(), lease))
                    .await
                {
                    Ok(Some(run)) => {
                        // Not a child of `shutdown`: a stopping server leaves its runs to be
                        // recovered (and resumed) at the next start, not cancelled.
                        let token = CancellationToken::new();
                        self.running
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(run.id.clone(), token.clone());
                        self.metrics.runs_started.fetch_add(1, Ordering::Relaxed);
                        self.metrics.runs_running.fetch_add(1, Ordering::Relaxed);
                        let me = self.clone();
                        tokio::spawn(async move {
                            let id = run.id.clone();
                            me.clone().execute(run, token).await;
                            me.running
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .remove(&id);
                            me.metrics.runs_running.fetch_sub(1, Ordering::Relaxed);
                            me.bump();
                            me.wake_runs.notify_one();
                            me.wake_notify.notify_one();
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("cannot claim a run: {e}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake_runs.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let every =
            (self.config.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let worker = self.id.clone();
            let lease = self.lease_ms();
            match self
                .store
                .write(move |c| store::heartbeat(c, &worker, now_ms(), lease))
                .await
            {
                Ok(cancel) => {
                    for id in cancel {
                        self.cancel_local(&id);
                    }
                }
                Err(e) => tracing::error!("heartbeat failed: {e}"),
            }
            let policy = self.policy();
            match self
                .store
                .write(move |c| store::recover_runs(c, None, &policy, now_ms()))
                .await
            {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(
                        runs = ids.len(),
                        "recovered runs whose worker stopped renewing its lease"
                    );
                    self.bump();
                    self.wake_runs.notify_one();
                    self.wake_notify.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::error!("recovery failed: {e}"),
            }
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The id of the worker using `data_dir`, made once and kept in `data_dir/worker-id`.
pub fn worker_id(data_dir: &std::path::Path) -> Result<String, String> {
    let path = data_dir.join("worker-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        _ => {}
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kiln".to_owned());
    let id = format!(
        "{host}-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    std::fs::write(&path, &id).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    Ok(id)
}
