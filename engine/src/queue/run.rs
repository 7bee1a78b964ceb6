//! One attempt of a claimed run: prepare (pipeline text, plan, concurrency group, secrets),
//! run it with the scheduler, record everything in the store, end the attempt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::run::{Event, RunState, StepRun, StepState};
use crate::scheduler::{HostExecutor, PreviousResults, RunOptions, execute};
use crate::store::{self, Finish, Finished, LogLine, RunRow, now_ms};

/// Most events written to the store in one transaction.
const EVENT_BATCH: usize = 512;

/// How an attempt ended before the queue's policy applies.
enum Outcome {
    Done(Finish),
    /// The concurrency group is busy: back to the queue, not an attempt.
    Wait,
}

impl Worker {
    pub(super) async fn execute(self: Arc<Self>, run: RunRow, cancel: CancellationToken) {
        let id = run.id.clone();
        let seq = match self
            .store
            .read({
                let id = id.clone();
                move |c| store::max_log_seq(c, &id)
            })
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(run = %id, "cannot read the run's log: {e}");
                0
            }
        };
        let log = RunLog::new(self.clone(), id.clone(), seq);
        log.system(format!(
            "attempt {} of {} on worker `{}`",
            run.attempt, run.max_attempts, self.id
        ));
        let outcome = self.attempt(&run, &log, cancel).await;
        log.flush().await;
        match outcome {
            Outcome::Wait => {
                let (worker, rid) = (self.id.clone(), id.clone());
                let at = now_ms() + 1000;
                if let Err(e) = self
                    .store
                    .write(move |c| store::release_run(c, &rid, &worker, at))
                    .await
                {
                    tracing::error!(run = %id, "cannot release the run: {e}");
                }
            }
            Outcome::Done(finish) => {
                let (worker, rid, policy) = (self.id.clone(), id.clone(), self.policy());
                let f = finish.clone();
                match self
                    .store
                    .write(move |c| store::finish_run(c, &rid, &worker, &f, &policy, now_ms()))
                    .await
                {
                    Ok(Finished::Retrying {
                        attempt,
                        not_before,
                    }) => {
                        let delay = (not_before - now_ms()).max(0);
                        log.system(format!(
                            "attempt {attempt} failed; the run is queued again and starts in {}",
                            humantime::format_duration(Duration::from_millis(
                                u64::try_from(delay / 1000 * 1000).unwrap_or(0)
                            ))
                        ));
                        log.flush().await;
                    }
                    Ok(Finished::Final(state)) => {
                        tracing::info!(run = %id, state = %state, "run finished");
                        if !self.config.keep_workspaces {
                            let _ = std::fs::remove_dir_all(self.workspace(&id));
                        }
                    }
                    Ok(Finished::LostClaim) => tracing::warn!(
                        run = %id,
                        "the run was taken over by another worker (lease expired); its result here is dropped"
                    ),
                    Err(e) => tracing::error!(run = %id, "cannot record the end of the run: {e}"),
                }
            }
        }
    }

    async fn attempt(&self, run: &RunRow, log: &RunLog, cancel: CancellationToken) -> Outcome {
        let failed =
            |error: String, retryable: bool| Outcome::Done(Finish::Failed { error, retryable });
        // 1. The pipeline's text: as stored, or read from the repository at the commit.
        let scratch = self
            .config
            .data_dir
            .join("scratch")
            .join(format!("{}-{}", run.id, run.attempt));
        let _cleanup = RemoveOnDrop(scratch.clone());
        let mut sha = run.sha.clone();
        let (display, text, base_dir) = match (
            &run.pipeline_yaml,
            &run.pipeline_path,
            &run.repo_url,
        ) {
            (Some(text), path, _) => (
                path.clone().unwrap_or_else(|| "inline.yaml".to_owned()),
                text.clone(),
                self.workspace(&run.id),
            ),
            (None, Some(path), Some(url)) => {
                log.system(format!(
                    "fetching `{}` at `{}` to read `{path}`",
                    kiln_git::redact(url),
                    run.sha
                        .as_deref()
                        .or(run.git_ref.as_deref())
                        .unwrap_or("HEAD")
                ));
                let reference = run.sha.clone().or_else(|| run.git_ref.clone());
                let progress_log = log.clone();
                let progress = move |line: &str| progress_log.system(line.to_owned());
                match fetch(&self.git, url, reference, &scratch, progress).await {
                    Ok(commit) => {
                        sha = Some(commit.sha.clone());
                        let file = scratch.join(path.trim_start_matches('/'));
                        match std::fs::read_to_string(&file) {
                            Ok(text) => {
                                let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
                                (path.clone(), text, base)
                            }
                            Err(e) => {
                                return failed(
                                    format!(
                                        "cannot read pipeline `{path}` at `{}`: {e}; hint: check the path (relative to the repository root)",
                                        commit.sha
                                    ),
                                    false,
                                );
                            }
                        }
                    }
                    Err((message, retryable)) => return failed(message, retryable),
                }
            }
            _ => {
                return failed(
                    "the run names no pipeline (neither inline YAML nor a path in a repository)"
                        .to_owned(),
                    false,
                );
            }
        };

        // 2. Parse and plan.
        let loaded = crate::cli::load_text(&display, &text, &base_dir, &self.host).await;
        let diagnostics = kiln_pipeline::render(&loaded.diagnostics);
        for line in diagnostics.lines() {
            log.system(line.to_owned());
        }
        let resolved = match loaded.resolved {
            Some(r) if !loaded.has_errors() => r,
            _ => {
                return failed(
                    format!("the pipeline cannot run:\n{}", diagnostics.trim_end()),
                    false,
                );
            }
        };
        let name = resolved.plan.pipeline.name.value.clone();
        {
            let (rid, name, text, sha) = (run.id.clone(), name.clone(), text.clone(), sha.clone());
            if let Err(e) = self
                .store
                .write(move |c| store::set_prepared(c, &rid, &name, &text, sha.as_deref()))
                .await
            {
                return failed(format!("cannot record the pipeline: {e}"), true);
            }
        }

        // 3. Concurrency group: the request's, else the pipeline's `concurrency:`.
        let git = git_facts(run, sha.as_deref());
        let group = match (&run.concurrency_group, &resolved.plan.pipeline.concurrency) {
            (Some(g), _) => Some((g.clone(), run.cancel_older)),
            (None, Some(c)) => {
                let mut roots = serde_json::Map::new();
                roots.insert("event".into(), run.event.clone());
                roots.insert("git".into(), git.clone());
                roots.insert("vars".into(), json!(self.config.vars));
                roots.insert("run".into(), json!({ "id": run.id }));
                let scope = kiln_expr::Scope {
                    roots,
                    status: kiln_expr::Status::default(),
                };
                match c.group.value.eval(&scope) {
                    Ok(v) => Some((kiln_expr::to_display_string(&v), c.cancel_in_progress)),
                    Err(e) => {
                        return failed(format!("cannot evaluate `concurrency.group`: {e}"), false);
                    }
                }
            }
            (None, None) => None,
        };
        if let Some((group, older)) = group {
            log.system(format!("concurrency group `{group}`"));
            let (rid, seq) = (run.id.clone(), run.seq);
            match self
                .store
                .write(move |c| store::enter_group(c, &rid, seq, &group, older, now_ms()))
                .await
            {
                Ok(true) => {}
                Ok(false) => return Outcome::Wait,
                Err(e) => return failed(format!("cannot check the concurrency group: {e}"), true),
            }
        }

        // 4. Secrets.
        let needed = resolved.plan.secret_names();
        let missing: Vec<String> = needed
            .iter()
            .filter(|n| !self.config.secrets.contains_key(*n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !missing.is_empty() {
            return failed(
                format!(
                    "the pipeline needs secrets the server does not have: {}; hint: list them in `secrets.env` (or `KILN_SECRETS`) or the secrets file",
                    missing.join(", ")
                ),
                false,
            );
        }
        let secrets: BTreeMap<String, String> = self
            .config
            .secrets
            .iter()
            .filter(|(k, _)| needed.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        // 5. Workspace, and what may be reused from an earlier attempt or run.
        let (workspace, previous) = self.reuse(run, log).await;
        if let Err(e) = std::fs::create_dir_all(&workspace) {
            return failed(
                format!("cannot create the workspace `{}`: {e}", workspace.display()),
                true,
            );
        }

        // 6. Run.
        let mut event = run.event.clone();
        if let Value::Object(map) = &mut event {
            map.entry("inputs").or_insert_with(|| run.inputs.clone());
        }
        let options = RunOptions {
            run_id: run.id.clone(),
            jobs: self.config.jobs,
            fail_fast: true,
            workspace: workspace.canonicalize().unwrap_or(workspace),
            event,
            git,
            secrets,
            memory_limit: Some(self.config.memory_limit_mb.saturating_mul(1 << 20)),
            previous,
            cache: self.step_cache.clone(),
            vars: self.config.vars.clone(),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_events(log.clone(), resolved.plan.clone(), rx));
        let executor = Arc::new(HostExecutor {
            plugins: resolved.plugins,
        });
        let finished = execute(resolved.plan.clone(), executor, options, tx, cancel.clone()).await;
        let _ = recorder.await;
        match finished.state {
            RunState::Succeeded => Outcome::Done(Finish::Succeeded),
            RunState::Cancelled => Outcome::Done(Finish::Cancelled(
                "cancelled while running (by request, by a newer run of its concurrency group, or at shutdown)"
                    .to_owned(),
            )),
            _ => {
                let failed_steps: Vec<String> = finished
                    .steps
                    .iter()
                    .filter(|s| s.state == StepState::Failed && !s.continue_on_error)
                    .map(|s| match &s.error {
                        Some(e) => format!("step `{}` failed: {e}", s.id),
                        None => format!("step `{}` failed", s.id),
                    })
                    .collect();
                let error = if failed_steps.is_empty() {
                    "the run failed".to_owned()
                } else {
                    failed_steps.join("\n")
                };
                Outcome::Done(Finish::Failed {
                    error,
                    retryable: true,
                })
            }
        }
    }

    /// The workspace of this attempt and the step results it may take over: an earlier attempt
    /// of the same run, or the run `POST /v1/runs/{id}/retry` named — when its workspace is on
    /// this worker (the files reused steps wrote must be there).
    async fn reuse(&self, run: &RunRow, log: &RunLog) -> (PathBuf, Option<Arc<PreviousResults>>) {
        let own = self.workspace(&run.id);
        let Some(from) = &run.reuse_from else {
            return (own, None);
        };
        let from_workspace = self.workspace(from);
        if !from_workspace.is_dir() {
            log.system(format!(
                "the workspace of run `{from}` is not on this worker: every step runs again"
            ));
            return (own, None);
        }
        let from_id = from.clone();
        let steps = match self.store.read(move |c| store::steps_of(c, &from_id)).await {
            Ok(s) => s,
            Err(e) => {
                log.system(format!(
                    "cannot read the steps of run `{from}`: {e}; every step runs again"
                ));
                return (own, None);
            }
        };
        let previous = PreviousResults::new(from.clone(), steps);
        if previous.is_empty() {
            return (from_workspace, None);
        }
        log.system(format!(
            "{} step(s) of run `{from}` may be reused; steps that failed and everything after them run again",
            previous.len()
        ));
        (from_workspace, Some(Arc::new(previous)))
    }
}

pub(super) struct RemoveOnDrop(pub(super) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Clone `url` at `reference` into `dest` through the mirror cache (on a blocking thread).
/// The error says whether trying again may help.
pub(super) async fn fetch(
    git: &Arc<kiln_git::Git>,
    url: &str,
    reference: Option<String>,
    dest: &Path,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<kiln_git::Commit, (String, bool)> {
    let remote_url = kiln_git::RemoteUrl::parse(url).map_err(|e| (e.to_string(), false))?;
    let git = git.clone();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let options = kiln_git::CloneOptions {
            remote: kiln_git::Remote::new(remote_url),
            reference,
            dest,
            depth: None,
            submodules: false,
            authorize: &|_| Ok(()),
        };
        git.clone_repo(&options, &progress, &kiln_git::Cancel::default())
            .map_err(|e| (e.to_string(), e.retryable()))
    })
    .await
    .map_err(|e| (format!("the fetch task ended abnormally: {e}"), true))?
}

/// `git` in expressions: the repository, commit and ref the run is for.
fn git_facts(run: &RunRow, sha: Option<&str>) -> Value {
    let r = run.git_ref.as_deref();
    let branch = r
        .and_then(|r| {
            r.strip_prefix("refs/heads/")
                .or(Some(r).filter(|r| !r.starts_with("refs/")))
        })
        .map(str::to_owned);
    let tag = r
        .and_then(|r| r.strip_prefix("refs/tags/"))
        .map(str::to_owned);
    json!({
        "url": run.repo_url,
        "sha": sha,
        "ref": r,
        "branch": if tag.is_some() { None } else { branch },
        "tag": tag,
    })
}

/// The run's log and step records, written to the store in batches.
#[derive(Clone)]
pub(super) struct RunLog {
    inner: Arc<RunLogInner>,
}

struct RunLogInner {
    worker: Arc<Worker>,
    run_id: String,
    state: std::sync::Mutex<RunLogState>,
}

#[derive(Default)]
struct RunLogState {
    seq: i64,
    lines: Vec<LogLine>,
    steps: Vec<(i64, StepRun)>,
}

impl RunLog {
    fn new(worker: Arc<Worker>, run_id: String, seq: i64) -> RunLog {
        RunLog {
            inner: Arc::new(RunLogInner {
                worker,
                run_id,
                state: std::sync::Mutex::new(RunLogState {
                    seq,
                    ..RunLogState::default()
                }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunLogState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A line of the run itself (not of a step).
    pub(super) fn system(&self, line: String) {
        self.line(None, "system", line);
    }

    fn line(&self, step: Option<String>, stream: &str, line: String) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        s.lines.push(LogLine {
            seq,
            at: now_ms(),
            step,
            stream: stream.to_owned(),
            line,
        });
    }

    fn step(&self, position: i64, record: StepRun) {
        self.lock().steps.push((position, record));
    }

    fn pending(&self) -> usize {
        let s = self.lock();
        s.lines.len() + s.steps.len()
    }

    /// Write what is buffered, in one transaction.
    pub(super) async fn flush(&self) {
        let (lines, steps) = {
            let mut s = self.lock();
            (std::mem::take(&mut s.lines), std::mem::take(&mut s.steps))
        };
        if lines.is_empty() && steps.is_empty() {
            return;
        }
        let id = self.inner.run_id.clone();
        let result = self
            .inner
            .worker
            .store
            .write(move |c| {
                store::append_logs(c, &id, &lines)?;
                for (position, step) in &steps {
                    store::upsert_step(c, &id, *position, step)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::error!(run = %self.inner.run_id, "cannot store log lines and steps: {e}");
        }
        self.inner.worker.bump();
    }
}

fn stream_name(s: crate::run::LogStream) -> &'static str {
    use crate::run::LogStream;
    match s {
        LogStream::Debug => "debug",
        LogStream::Info => "info",
        LogStream::Warn => "warn",
        LogStream::Error => "error",
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    }
}

/// Consume the scheduler's events: step records and log lines into the store, in batches.
async fn record_events(
    log: RunLog,
    plan: Arc<crate::plan::Plan>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    let steps: Vec<String> = plan
        .pipeline
        .steps
        .iter()
        .map(|s| s.id.value.clone())
        .collect();
    let position = |step: &str| -> i64 {
        steps
            .iter()
            .position(|s| s == step)
            .and_then(|p| i64::try_from(p).ok())
            .unwrap_or(i64::MAX)
    };
    let step_of = |instance: &str| instance.split('[').next().unwrap_or(instance).to_owned();
    let metrics = log.inner.worker.metrics.clone();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                Event::StepStarted { id, attempt } => {
                    let step = step_of(&id);
                    let mut record = StepRun::new(id.clone(), step.clone(), None);
                    record.state = StepState::Running;
                    record.attempts = attempt;
                    record.started_at = Some(crate::run::now_rfc3339());
                    if attempt == 1 {
                        log.line(Some(id), "system", "started".to_owned());
                    } else {
                        log.line(Some(id), "system", format!("attempt {attempt} started"));
                    }
                    log.step(position(&step), record);
                }
                Event::StepLog { id, stream, line } => {
                    log.line(Some(id), stream_name(stream), line);
                }
                Event::StepRetrying {
                    id,
                    attempt,
                    delay_ms,
                    error,
                } => log.line(
                    Some(id),
                    "system",
                    format!("attempt {attempt} failed: {error}; retrying in {delay_ms} ms"),
                ),
                Event::StepFinished(record) => {
                    metrics.step_finished(record.state, record.duration_ms);
                    let mut line = record.state.as_str().to_owned();
                    if let Some(ms) = record.duration_ms {
                        line.push_str(&format!(" in {ms} ms"));
                    }
                    if let Some(e) = record.error.as_ref().or(record.reason.as_ref()) {
                        line.push_str(&format!(": {e}"));
                    }
                    log.line(Some(record.id.clone()), "system", line);
                    let p = position(&record.step);
                    log.step(p, *record);
                }
                Event::RunFinished(run) => {
                    for record in run.steps {
                        let p = position(&record.step);
                        log.step(p, record);
                    }
                    log.system(format!(
                        "run {} in {} ms",
                        run.state.as_str(),
                        run.duration_ms
                    ));
                }
            }
            if log.pending() < EVENT_BATCH {
                next = rx.try_recv().ok();
            }
        }
        log.flush().await;
    }
    log.flush().await;
}
