//! Scheduled pipelines: the server's `schedules.pipelines` name pipelines in repositories, and
//! each pipeline's `on.schedule` says when. Every `schedules.tick` the worker works out, per
//! cron expression, the latest slot due and takes it in the store together with the run it
//! starts (`store::tick_schedule`): several servers on one store start a slot once, a new
//! schedule waits for its next slot, and after downtime only the latest missed slot runs.
//!
//! The cron expressions are read from the repository (through the git mirror cache) when the
//! server starts and again every `schedules.refresh`; a pipeline that cannot be fetched or
//! parsed keeps the expressions last read, and the server log says why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};

use super::Worker;
use crate::server::config::ScheduledPipeline;
use crate::store::{self, NewRun, now_ms};

/// What was last read of one scheduled pipeline.
struct Known {
    read_at: Instant,
    name: String,
    crons: Vec<(String, kiln_pipeline::cron::Cron)>,
}

/// Minutes since the epoch -> RFC 3339.
fn slot_time(slot: i64) -> String {
    let secs = u64::try_from(slot.saturating_mul(60)).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

impl Worker {
    pub(super) async fn schedule_loop(self: Arc<Self>) {
        if self.config.schedules.is_empty() {
            return;
        }
        let mut known: HashMap<String, Known> = HashMap::new();
        loop {
            for entry in &self.config.schedules {
                let stale = known
                    .get(&entry.name)
                    .is_none_or(|k| k.read_at.elapsed() >= self.config.schedule_refresh);
                if stale {
                    match self.read_schedule(entry).await {
                        Ok(k) => {
                            if k.crons.is_empty() {
                                tracing::warn!(
                                    schedule = %entry.name,
                                    "`{}` has no `on.schedule`: nothing is scheduled",
                                    entry.pipeline
                                );
                            }
                            known.insert(entry.name.clone(), k);
                        }
                        Err(e) => {
                            tracing::warn!(schedule = %entry.name, "cannot read the scheduled pipeline: {e}");
                            if let Some(k) = known.get_mut(&entry.name) {
                                // Keep what was read; try again at the next refresh.
                                k.read_at = Instant::now();
                            }
                        }
                    }
                }
                let Some(k) = known.get(&entry.name) else {
                    continue;
                };
                for (text, cron) in &k.crons {
                    self.tick(entry, &k.name, text, cron).await;
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.schedule_tick) => {}
            }
        }
    }

    /// Take the due slot of one expression, if it is ours to take, and queue its run.
    async fn tick(
        &self,
        entry: &ScheduledPipeline,
        pipeline: &str,
        text: &str,
        cron: &kiln_pipeline::cron::Cron,
    ) {
        let now = now_ms();
        let minute = now.div_euclid(60_000);
        let due = cron.latest_at_or_before(minute);
        let key = format!("{} {text}", entry.name);
        let entry2 = entry.clone();
        let (pipeline, text2) = (pipeline.to_owned(), text.to_owned());
        let max_attempts = self.config.max_attempts;
        let make_run = move |slot: i64| {
            let inputs = Value::Object(entry2.inputs.clone());
            NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                trigger: "schedule".to_owned(),
                pipeline,
                pipeline_path: Some(entry2.pipeline.clone()),
                repo_url: Some(entry2.repo.clone()),
                git_ref: entry2.git_ref.clone(),
                event: json!({
                    "kind": "schedule",
                    "ref": entry2.git_ref,
                    "schedule": { "name": entry2.name, "cron": text2, "slot": slot_time(slot) },
                    "inputs": inputs,
                }),
                inputs,
                max_attempts,
                ..NewRun::default()
            }
        };
        match self
            .store
            .write(move |c| store::tick_schedule(c, &key, due, minute, now, make_run))
            .await
        {
            Ok(Some((slot, run))) => {
                tracing::info!(schedule = %entry.name, cron = %text, slot = %slot_time(slot), run = %run, "scheduled run queued");
                self.bump();
                self.wake_runs.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(schedule = %entry.name, "cannot take a schedule slot: {e}"),
        }
    }

    /// Fetch the repository at the entry's ref and read the pipeline's `on.schedule`.
    async fn read_schedule(&self, entry: &ScheduledPipeline) -> Result<Known, String> {
        let scratch = self
            .config
            .data_dir
            .join("scratch")
            .join(format!("schedule-{}", uuid::Uuid::now_v7().simple()));
        let _cleanup = super::run::RemoveOnDrop(scratch.clone());
        let name = entry.name.clone();
        let progress = move |line: &str| tracing::debug!(schedule = %name, "{line}");
        let commit = super::run::fetch(
            &self.git,
            &entry.repo,
            entry.git_ref.clone(),
            &scratch,
            progress,
        )
        .await
        .map_err(|(m, _)| m)?;
        let path = scratch.join(entry.pipeline.trim_start_matches('/'));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read `{}` at `{}`: {e}; hint: check `schedules.pipelines[].pipeline` (relative to the repository root)",
                entry.pipeline, commit.sha
            )
        })?;
        let (pipeline, diags) = kiln_pipeline::parse(&entry.pipeline, &text);
        let pipeline = match pipeline {
            Some(p) if !kiln_pipeline::has_errors(&diags) => p,
            _ => return Err(kiln_pipeline::render(&diags)),
        };
        Ok(Known {
            read_at: Instant::now(),
            name: pipeline.name.value.clone(),
            crons: pipeline
                .on
                .schedule
                .iter()
                .map(|s| (s.cron.value.clone(), s.parsed.clone()))
                .collect(),
        })
    }
}
