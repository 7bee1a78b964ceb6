//! Rows of the store and the queries on them. Every function takes a `&Connection` and is
//! called inside [`super::Store::write`] or [`super::Store::read`]; a function that changes
//! several rows relies on running in one transaction (writes always do).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use crate::run::StepRun;

type Result<T> = std::result::Result<T, StoreError>;

/// Where to send a run's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Told when the run succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<String>,
    /// Told when the run fails for good (retries exhausted: it is in the fail queue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<String>,
}

/// A run to insert (state `queued`).
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub id: String,
    /// `api`, `build`, `github`, `gitlab`, `retry`.
    pub trigger: String,
    /// The pipeline's name when already known (inline YAML, webhooks), else empty.
    pub pipeline: String,
    pub pipeline_path: Option<String>,
    pub pipeline_yaml: Option<String>,
    pub repo_url: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub inputs: Value,
    pub event: Value,
    pub notify: Notify,
    pub concurrency_group: Option<String>,
    pub cancel_older: bool,
    pub max_attempts: u32,
    pub retry_of: Option<String>,
    pub reuse_from: Option<String>,
    pub event_id: Option<String>,
}

/// A stored run.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub seq: i64,
    pub id: String,
    pub state: String,
    pub trigger: String,
    pub pipeline: String,
    pub pipeline_path: Option<String>,
    pub pipeline_yaml: Option<String>,
    pub repo_url: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub inputs: Value,
    pub event: Value,
    pub notify: Notify,
    pub concurrency_group: Option<String>,
    pub cancel_older: bool,
    pub attempt: u32,
    pub max_attempts: u32,
    pub not_before: i64,
    pub claimed_by: Option<String>,
    pub lease_until: Option<i64>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub retry_of: Option<String>,
    pub reuse_from: Option<String>,
    pub failed_queue: bool,
    pub event_id: Option<String>,
}

impl RunRow {
    pub fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

const RUN_COLUMNS: &str = "seq, id, state, trigger, pipeline, pipeline_path, pipeline_yaml, repo_url, \
    git_ref, sha, inputs, event, notify, concurrency_group, cancel_older, attempt, max_attempts, \
    not_before, claimed_by, lease_until, cancel_requested, created_at, started_at, finished_at, \
    error, retry_of, reuse_from, failed_queue, event_id";

fn json_col(row: &Row<'_>, i: usize) -> rusqlite::Result<Value> {
    let text: String = row.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn run_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    let notify: Value = json_col(row, 12)?;
    Ok(RunRow {
        seq: row.get(0)?,
        id: row.get(1)?,
        state: row.get(2)?,
        trigger: row.get(3)?,
        pipeline: row.get(4)?,
        pipeline_path: row.get(5)?,
        pipeline_yaml: row.get(6)?,
        repo_url: row.get(7)?,
        git_ref: row.get(8)?,
        sha: row.get(9)?,
        inputs: json_col(row, 10)?,
        event: json_col(row, 11)?,
        notify: serde_json::from_value(notify).unwrap_or_default(),
        concurrency_group: row.get(13)?,
        cancel_older: row.get(14)?,
        attempt: row.get(15)?,
        max_attempts: row.get(16)?,
        not_before: row.get(17)?,
        claimed_by: row.get(18)?,
        lease_until: row.get(19)?,
        cancel_requested: row.get(20)?,
        created_at: row.get(21)?,
        started_at: row.get(22)?,
        finished_at: row.get(23)?,
        error: row.get(24)?,
        retry_of: row.get(25)?,
        reuse_from: row.get(26)?,
        failed_queue: row.get(27)?,
        event_id: row.get(28)?,
    })
}

/// Insert a queued run.
pub fn insert_run(conn: &Connection, run: &NewRun, now: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO runs (id, state, trigger, pipeline, pipeline_path, pipeline_yaml, repo_url, \
         git_ref, sha, inputs, event, notify, concurrency_group, cancel_older, max_attempts, \
         created_at, retry_of, reuse_from, event_id) \
         VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            run.id,
            run.trigger,
            run.pipeline,
            run.pipeline_path,
            run.pipeline_yaml,
            run.repo_url,
            run.git_ref,
            run.sha,
            serde_json::to_string(&run.inputs)?,
            serde_json::to_string(&run.event)?,
            serde_json::to_string(&run.notify)?,
            run.concurrency_group,
            run.cancel_older,
            run.max_attempts.max(1),
            now,
            run.retry_of,
            run.reuse_from,
            run.event_id,
        ],
    )?;
    Ok(())
}

pub fn get_run(conn: &Connection, id: &str) -> Result<Option<RunRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
            [id],
            run_row,
        )
        .optional()?)
}

/// Filters of `GET /v1/runs` (newest first, keyset pagination on `seq`).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub state: Option<String>,
    pub repo: Option<String>,
    pub pipeline: Option<String>,
    pub failed_queue: bool,
    /// Only runs older than this `seq` (the previous page's cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

pub fn list_runs(conn: &Connection, f: &RunFilter) -> Result<Vec<RunRow>> {
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(s) = &f.state {
        args.push(Box::new(s.clone()));
        sql.push_str(&format!(" AND state = ?{}", args.len()));
    }
    if let Some(r) = &f.repo {
        args.push(Box::new(r.clone()));
        sql.push_str(&format!(" AND repo_url = ?{}", args.len()));
    }
    if let Some(p) = &f.pipeline {
        args.push(Box::new(p.clone()));
        let n = args.len();
        sql.push_str(&format!(" AND (pipeline = ?{n} OR pipeline_path = ?{n})"));
    }
    if f.failed_queue {
        sql.push_str(" AND failed_queue = 1");
    }
    if let Some(b) = f.before {
        args.push(Box::new(b));
        sql.push_str(&format!(" AND seq < ?{}", args.len()));
    }
    args.push(Box::new(i64::from(f.limit.clamp(1, 500))));
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
        run_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The step records of a run, in pipeline order.
pub fn steps_of(conn: &Connection, run_id: &str) -> Result<Vec<StepRun>> {
    let mut stmt =
        conn.prepare_cached("SELECT record FROM steps WHERE run_id = ?1 ORDER BY position, id")?;
    let rows = stmt.query_map([run_id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for text in rows {
        out.push(serde_json::from_str(&text?)?);
    }
    Ok(out)
}

pub fn upsert_step(conn: &Connection, run_id: &str, position: i64, step: &StepRun) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO steps (run_id, id, position, state, record) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (run_id, id) DO UPDATE SET state = excluded.state, record = excluded.record, \
         position = excluded.position",
    )?
    .execute(params![
        run_id,
        step.id,
        position,
        step.state.as_str(),
        serde_json::to_string(step)?
    ])?;
    Ok(())
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    /// The step instance, or `None` for lines of the run itself (prepare, retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `stdout`, `stderr`, `log` or `system`.
    pub stream: String,
    pub line: String,
}

pub fn append_logs(conn: &Connection, run_id: &str, lines: &[LogLine]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO logs (run_id, seq, at, step, stream, line) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for l in lines {
        stmt.execute(params![run_id, l.seq, l.at, l.step, l.stream, l.line])?;
    }
    Ok(())
}

pub fn logs_after(conn: &Connection, run_id: &str, after: i64, limit: u32) -> Result<Vec<LogLine>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, step, stream, line FROM logs WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![run_id, after, limit], |r| {
        Ok(LogLine {
            seq: r.get(0)?,
            at: r.get(1)?,
            step: r.get(2)?,
            stream: r.get(3)?,
            line: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub fn max_log_seq(conn: &Connection, run_id: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM logs WHERE run_id = ?1",
        [run_id],
        |r| r.get(0),
    )?)
}

/// Claim the oldest queued run that is due and whose concurrency group has nothing running
/// (or that cancels the older runs of its group, see [`enter_group`]): it becomes `running`, leased to `worker` until `now + lease_ms`. Atomic across processes
/// (the write transaction holds SQLite's write lock).
pub fn claim_run(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<RunRow>> {
    let id: Option<String> = conn
        .query_row(
            "UPDATE runs SET state = 'running', claimed_by = ?1, lease_until = ?2, \
             attempt = attempt + 1, started_at = COALESCE(started_at, ?3), cancel_requested = 0 \
             WHERE seq = (SELECT r.seq FROM runs r WHERE r.state = 'queued' AND r.not_before <= ?3 \
               AND (r.concurrency_group IS NULL OR r.cancel_older = 1 OR NOT EXISTS (SELECT 1 FROM runs o \
                    WHERE o.concurrency_group = r.concurrency_group AND o.state = 'running')) \
               ORDER BY r.not_before, r.seq LIMIT 1) \
             AND state = 'queued' RETURNING id",
            params![worker, now + lease_ms, now],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => get_run(conn, &id),
        None => Ok(None),
    }
}

/// Give a claimed run back to the queue without counting the attempt (its concurrency group
/// is busy).
pub fn release_run(conn: &Connection, id: &str, worker: &str, not_before: i64) -> Result<()> {
    conn.execute(
        "UPDATE runs SET state = 'queued', claimed_by = NULL, lease_until = NULL, \
         attempt = MAX(attempt - 1, 0), not_before = ?3 \
         WHERE id = ?1 AND claimed_by = ?2 AND state = 'running'",
        params![id, worker, not_before],
    )?;
    Ok(())
}

/// What the worker learned while preparing a run (the pipeline file read, the commit resolved).
pub fn set_prepared(
    conn: &Connection,
    id: &str,
    pipeline: &str,
    pipeline_yaml: &str,
    sha: Option<&str>,
) -> Result<()> {
    conn.execute(
        "UPDATE runs SET pipeline = ?2, pipeline_yaml = ?3, sha = COALESCE(?4, sha) WHERE id = ?1",
        params![id, pipeline, pipeline_yaml, sha],
    )?;
    Ok(())
}

/// Whether a claimed run may go on in its concurrency group. In one transaction: the group is
/// recorded; with `cancel_older`, older runs of the group are cancelled (queued ones at once,
/// running ones asked to stop); then, if another run of the group is running, the caller must
/// release this one and try later.
pub fn enter_group(
    conn: &Connection,
    id: &str,
    seq: i64,
    group: &str,
    cancel_older: bool,
    now: i64,
) -> Result<bool> {
    conn.execute(
        "UPDATE runs SET concurrency_group = ?2, cancel_older = ?3 WHERE id = ?1",
        params![id, group, cancel_older],
    )?;
    if cancel_older {
        conn.execute(
            "UPDATE runs SET state = 'cancelled', finished_at = ?3, \
             error = 'cancelled: a newer run of its concurrency group started' \
             WHERE concurrency_group = ?1 AND seq < ?2 AND state = 'queued'",
            params![group, seq, now],
        )?;
        conn.execute(
            "UPDATE runs SET cancel_requested = 1 \
             WHERE concurrency_group = ?1 AND seq < ?2 AND state = 'running'",
            params![group, seq],
        )?;
    }
    let busy: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE concurrency_group = ?1 AND state = 'running' AND id != ?2)",
        params![group, id],
        |r| r.get(0),
    )?;
    Ok(!busy)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Succeeded,
    Cancelled(String),
    /// `retryable`: whether another attempt may help (not for a pipeline that does not parse).
    Failed {
        error: String,
        retryable: bool,
    },
}

/// What [`finish_run`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The run has its final state.
    Final(String),
    /// Queued again for attempt `attempt + 1` at `not_before`.
    Retrying { attempt: u32, not_before: i64 },
    /// The worker no longer held the run (its lease expired and another worker took it).
    LostClaim,
}

/// Server-wide settings the queue applies when a run ends.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Delay before attempt 2; doubles for each later one.
    pub backoff_ms: i64,
    pub max_backoff_ms: i64,
    /// Notified for every run, besides the run's own `notify`.
    pub notify: Notify,
}

impl Policy {
    /// Delay before the attempt after `attempt`.
    pub fn delay(&self, attempt: u32) -> i64 {
        let factor = 1i64 << attempt.saturating_sub(1).min(30);
        self.backoff_ms
            .saturating_mul(factor)
            .min(self.max_backoff_ms.max(self.backoff_ms))
    }
}

/// End the current attempt of a run claimed by `worker`: final state, or back to the queue
/// with backoff when it failed and attempts remain; a run that fails for good goes to the
/// fail queue. Notifications are queued in the same transaction.
pub fn finish_run(
    conn: &Connection,
    id: &str,
    worker: &str,
    finish: &Finish,
    policy: &Policy,
    now: i64,
) -> Result<Finished> {
    let Some(run) = get_run(conn, id)? else {
        return Ok(Finished::LostClaim);
    };
    if run.state != "running" || run.claimed_by.as_deref() != Some(worker) {
        return Ok(Finished::LostClaim);
    }
    finish_claimed(conn, &run, finish, policy, now)
}

fn finish_claimed(
    conn: &Connection,
    run: &RunRow,
    finish: &Finish,
    policy: &Policy,
    now: i64,
) -> Result<Finished> {
    let id = run.id.as_str();
    match finish {
        Finish::Failed { error, retryable } if *retryable && run.attempt < run.max_attempts => {
            let not_before = now + policy.delay(run.attempt);
            conn.execute(
                "UPDATE runs SET state = 'queued', claimed_by = NULL, lease_until = NULL, \
                 not_before = ?2, error = ?3, reuse_from = id WHERE id = ?1",
                params![id, not_before, error],
            )?;
            Ok(Finished::Retrying {
                attempt: run.attempt,
                not_before,
            })
        }
        _ => {
            let (state, error, failed_queue) = match finish {
                Finish::Succeeded => ("succeeded", None, false),
                Finish::Cancelled(reason) => ("cancelled", Some(reason.clone()), false),
                Finish::Failed { error, .. } => ("failed", Some(error.clone()), true),
            };
            conn.execute(
                "UPDATE runs SET state = ?2, error = ?3, failed_queue = ?4, finished_at = ?5, \
                 lease_until = NULL WHERE id = ?1",
                params![id, state, error, failed_queue, now],
            )?;
            let urls: Vec<&String> = match state {
                "succeeded" => run
                    .notify
                    .on_success
                    .iter()
                    .chain(&policy.notify.on_success)
                    .collect(),
                "failed" => run
                    .notify
                    .on_failure
                    .iter()
                    .chain(&policy.notify.on_failure)
                    .collect(),
                _ => Vec::new(),
            };
            let mut seen = std::collections::BTreeSet::new();
            for url in urls {
                if !seen.insert(url) {
                    continue;
                }
                let kind = format!("run.{state}");
                let body = serde_json::json!({
                    "event": kind,
                    "run": {
                        "id": id,
                        "state": state,
                        "pipeline": run.pipeline,
                        "repo_url": run.repo_url,
                        "ref": run.git_ref,
                        "sha": run.sha,
                        "attempts": run.attempt,
                        "error": error,
                        "inputs": run.inputs,
                        "url": format!("/v1/runs/{id}"),
                    }
                });
                conn.execute(
                    "INSERT INTO notifications (id, run_id, url, kind, body, state, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
                    params![
                        uuid::Uuid::now_v7().to_string(),
                        id,
                        url,
                        kind,
                        serde_json::to_string(&body)?,
                        now
                    ],
                )?;
            }
            Ok(Finished::Final(state.to_owned()))
        }
    }
}

/// What `POST /v1/runs/{id}/cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued: it is cancelled now.
    Cancelled,
    /// It is running: its worker stops it within a second or so.
    Requested,
    AlreadyFinished(String),
    NotFound,
}

pub fn request_cancel(conn: &Connection, id: &str, now: i64) -> Result<CancelOutcome> {
    let Some(run) = get_run(conn, id)? else {
        return Ok(CancelOutcome::NotFound);
    };
    match run.state.as_str() {
        "queued" => {
            conn.execute(
                "UPDATE runs SET state = 'cancelled', finished_at = ?2, error = 'cancelled before it started' \
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now],
            )?;
            Ok(CancelOutcome::Cancelled)
        }
        "running" => {
            conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?1", [id])?;
            Ok(CancelOutcome::Requested)
        }
        other => Ok(CancelOutcome::AlreadyFinished(other.to_owned())),
    }
}

/// The worker is alive: record it, extend the leases of what it holds, and return the ids of
/// its running runs that were asked to stop.
pub fn heartbeat(conn: &Connection, worker: &str, now: i64, lease_ms: i64) -> Result<Vec<String>> {
    conn.execute(
        "INSERT INTO workers (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        params![worker, now],
    )?;
    for table in ["runs", "events", "notifications"] {
        let running = if table == "runs" {
            "running"
        } else {
            "pending"
        };
        conn.execute(
            &format!(
                "UPDATE {table} SET lease_until = ?2 WHERE claimed_by = ?1 AND state = '{running}'"
            ),
            params![worker, now + lease_ms],
        )?;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM runs WHERE claimed_by = ?1 AND state = 'running' AND cancel_requested = 1",
    )?;
    let ids = stmt.query_map([worker], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Runs whose worker is gone: those `running` with an expired lease, and (at start-up) those
/// this same worker held before it restarted. Each one's attempt ends as failed with the
/// reason, and it is retried per the policy (reusing the steps that had finished) or lands in
/// the fail queue. Returns the ids recovered.
pub fn recover_runs(
    conn: &Connection,
    own_worker: Option<&str>,
    policy: &Policy,
    now: i64,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'running' \
         AND (lease_until < ?1 OR (?2 IS NOT NULL AND claimed_by = ?2))"
    ))?;
    let runs = stmt
        .query_map(params![now, own_worker], run_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(stmt);
    let mut ids = Vec::new();
    for run in runs {
        let worker = run.claimed_by.clone().unwrap_or_default();
        let error = format!(
            "attempt {} was interrupted: worker `{worker}` stopped while running it",
            run.attempt
        );
        let next = append_system_log(conn, &run.id, &error, now)?;
        let _ = next;
        conn.execute(
            "UPDATE steps SET state = 'cancelled', record = json_set(record, '$.state', 'cancelled', '$.reason', ?2) \
             WHERE run_id = ?1 AND state IN ('running', 'pending')",
            params![run.id, "its worker stopped"],
        )?;
        finish_claimed(
            conn,
            &run,
            &Finish::Failed {
                error,
                retryable: true,
            },
            policy,
            now,
        )?;
        ids.push(run.id);
    }
    Ok(ids)
}

/// Append one line of the run itself (not of a step) after its last line.
pub fn append_system_log(conn: &Connection, run_id: &str, line: &str, now: i64) -> Result<i64> {
    let seq = max_log_seq(conn, run_id)? + 1;
    append_logs(
        conn,
        run_id,
        &[LogLine {
            seq,
            at: now,
            step: None,
            stream: "system".to_owned(),
            line: line.to_owned(),
        }],
    )?;
    Ok(seq)
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub runs_by_state: Vec<(String, i64)>,
    pub queued_due: i64,
    pub failed_queue: i64,
    pub events_pending: i64,
    pub notifications_pending: i64,
    pub notifications_failed: i64,
}

pub fn counts(conn: &Connection, now: i64) -> Result<Counts> {
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM runs GROUP BY state")?;
    let runs_by_state = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<i64> {
        Ok(conn.query_row(sql, p, |r| r.get(0))?)
    };
    Ok(Counts {
        runs_by_state,
        queued_due: one(
            "SELECT COUNT(*) FROM runs WHERE state = 'queued' AND not_before <= ?1",
            &[&now],
        )?,
        failed_queue: one("SELECT COUNT(*) FROM runs WHERE failed_queue = 1", &[])?,
        events_pending: one("SELECT COUNT(*) FROM events WHERE state = 'pending'", &[])?,
        notifications_pending: one(
            "SELECT COUNT(*) FROM notifications WHERE state = 'pending'",
            &[],
        )?,
        notifications_failed: one(
            "SELECT COUNT(*) FROM notifications WHERE state = 'failed'",
            &[],
        )?,
    })
}

// ---- webhook events ------------------------------------------------------------------------

/// A stored webhook event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub id: String,
    pub provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    pub kind: String,
    #[serde(skip)]
    pub payload: Value,
    pub state: String,
    pub attempts: u32,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Ids of the runs it started.
    pub runs: Value,
    /// `[{pipeline, reason}]`: pipelines it did not start, and why.
    pub skipped: Value,
}

const EVENT_COLUMNS: &str = "id, provider, delivery, kind, payload, state, attempts, created_at, finished_at, error, runs, skipped";

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        provider: r.get(1)?,
        delivery: r.get(2)?,
        kind: r.get(3)?,
        payload: json_col(r, 4)?,
        state: r.get(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        finished_at: r.get(8)?,
        error: r.get(9)?,
        runs: json_col(r, 10)?,
        skipped: json_col(r, 11)?,
    })
}

/// Result of storing a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New(String),
    /// The same provider and delivery id was stored before: the id of that event.
    Duplicate(String),
}

/// Store a webhook event to process, unless its delivery id was seen before.
pub fn insert_event(
    conn: &Connection,
    provider: &str,
    delivery: Option<&str>,
    kind: &str,
    payload: &str,
    now: i64,
) -> Result<Inserted> {
    let id = uuid::Uuid::now_v7().to_string();
    let n = conn
        .prepare_cached(
            "INSERT INTO events (id, provider, delivery, kind, payload, state, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6) ON CONFLICT (provider, delivery) DO NOTHING",
        )?
        .execute(params![id, provider, delivery, kind, payload, now])?;
    if n == 1 {
        return Ok(Inserted::New(id));
    }
    let existing: String = conn.query_row(
        "SELECT id FROM events WHERE provider = ?1 AND delivery = ?2",
        params![provider, delivery],
        |r| r.get(0),
    )?;
    Ok(Inserted::Duplicate(existing))
}

pub fn get_event(conn: &Connection, id: &str) -> Result<Option<EventRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
            [id],
            event_row,
        )
        .optional()?)
}

/// Claim the oldest due pending event (or one whose worker's lease expired).
pub fn claim_event(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<EventRow>> {
    let id: Option<String> = conn
        .query_row(
            "UPDATE events SET claimed_by = ?1, lease_until = ?2, attempts = attempts + 1 \
             WHERE seq = (SELECT seq FROM events WHERE state = 'pending' AND not_before <= ?3 \
               AND (claimed_by IS NULL OR lease_until < ?3) ORDER BY seq LIMIT 1) \
             RETURNING id",
            params![worker, now + lease_ms, now],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => get_event(conn, &id),
        None => Ok(None),
    }
}

/// An event was processed: insert its runs and record what it did, in one transaction.
pub fn finish_event(
    conn: &Connection,
    id: &str,
    runs: &[NewRun],
    skipped: &Value,
    now: i64,
) -> Result<()> {
    for run in runs {
        insert_run(conn, run, now)?;
    }
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    conn.execute(
        "UPDATE events SET state = 'done', finished_at = ?2, runs = ?3, skipped = ?4, error = NULL, \
         claimed_by = NULL, lease_until = NULL WHERE id = ?1",
        params![id, now, serde_json::to_string(&ids)?, serde_json::to_string(skipped)?],
    )?;
    Ok(())
}

/// Processing an event failed: try again at `retry_at`, or give up.
pub fn fail_event(
    conn: &Connection,
    id: &str,
    error: &str,
    retry_at: Option<i64>,
    now: i64,
) -> Result<()> {
    match retry_at {
        Some(at) => conn.execute(
            "UPDATE events SET error = ?2, not_before = ?3, claimed_by = NULL, lease_until = NULL WHERE id = ?1",
            params![id, error, at],
        )?,
        None => conn.execute(
            "UPDATE events SET state = 'failed', error = ?2, finished_at = ?3, claimed_by = NULL, \
             lease_until = NULL WHERE id = ?1",
            params![id, error, now],
        )?,
    };
    Ok(())
}

// ---- notifications -------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: String,
    pub run_id: String,
    pub url: String,
    pub kind: String,
    pub body: String,
    pub attempts: u32,
}

pub fn claim_notification(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<NotificationRow>> {
    Ok(conn
        .query_row(
            "UPDATE notifications SET claimed_by = ?1, lease_until = ?2, attempts = attempts + 1 \
             WHERE seq = (SELECT seq FROM notifications WHERE state = 'pending' AND not_before <= ?3 \
               AND (claimed_by IS NULL OR lease_until < ?3) ORDER BY not_before, seq LIMIT 1) \
             RETURNING id, run_id, url, kind, body, attempts",
            params![worker, now + lease_ms, now],
            |r| {
                Ok(NotificationRow {
                    id: r.get(0)?,
                    run_id: r.get(1)?,
                    url: r.get(2)?,
                    kind: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// A delivery attempt ended: delivered, retry at `retry_at`, or given up.
pub fn notification_attempted(
    conn: &Connection,
    id: &str,
    outcome: std::result::Result<(), (String, Option<i64>)>,
    now: i64,
) -> Result<()> {
    match outcome {
        Ok(()) => conn.execute(
            "UPDATE notifications SET state = 'delivered', delivered_at = ?2, claimed_by = NULL, \
             lease_until = NULL, last_error = NULL WHERE id = ?1",
            params![id, now],
        )?,
        Err((error, Some(at))) => conn.execute(
            "UPDATE notifications SET last_error = ?2, not_before = ?3, claimed_by = NULL, \
             lease_until = NULL WHERE id = ?1",
            params![id, error, at],
        )?,
        Err((error, None)) => conn.execute(
            "UPDATE notifications SET state = 'failed', last_error = ?2, claimed_by = NULL, \
             lease_until = NULL WHERE id = ?1",
            params![id, error],
        )?,
    };
    Ok(())
}

/// Notifications of a run, for `GET /v1/runs/{id}`.
pub fn notifications_of(conn: &Connection, run_id: &str) -> Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT url, kind, state, attempts, last_error, delivered_at FROM notifications \
         WHERE run_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([run_id], |r| {
        let delivered: Option<i64> = r.get(5)?;
        Ok(serde_json::json!({
            "url": r.get::<_, String>(0)?,
            "event": r.get::<_, String>(1)?,
            "state": r.get::<_, String>(2)?,
            "attempts": r.get::<_, u32>(3)?,
            "last_error": r.get::<_, Option<String>>(4)?,
            "delivered_at": delivered.map(super::rfc3339),
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, Synchronous};

    fn new_run(id: &str, group: Option<&str>) -> NewRun {
        NewRun {
            id: id.to_owned(),
            trigger: "api".to_owned(),
            pipeline_yaml: Some("name: t\nsteps: []\n".to_owned()),
            inputs: serde_json::json!({}),
            event: serde_json::json!({}),
            concurrency_group: group.map(str::to_owned),
            max_attempts: 2,
            ..NewRun::default()
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("kiln.db"), Synchronous::Normal).expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn a_run_is_claimed_once_and_a_busy_group_waits() {
        let (_dir, store) = store();
        store
            .write(|c| {
                insert_run(c, &new_run("a", Some("g")), 1)?;
                insert_run(c, &new_run("b", Some("g")), 2)?;
                insert_run(c, &new_run("c", None), 3)
            })
            .await
            .expect("insert");
        let first = store
            .write(|c| claim_run(c, "w1", 10, 1000))
            .await
            .expect("claim")
            .expect("a run");
        assert_eq!((first.id.as_str(), first.attempt), ("a", 1));
        // `b` shares the busy group `g`: the next claim skips it.
        let second = store
            .write(|c| claim_run(c, "w2", 10, 1000))
            .await
            .expect("claim")
            .expect("a run");
        assert_eq!(second.id, "c");
        assert!(
            store
                .write(|c| claim_run(c, "w2", 10, 1000))
                .await
                .expect("claim")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_failed_attempt_is_retried_with_backoff_then_lands_in_the_fail_queue() {
        let (_dir, store) = store();
        let policy = Policy {
            backoff_ms: 100,
            max_backoff_ms: 1000,
            notify: Notify {
                on_success: vec![],
                on_failure: vec!["http://127.0.0.1:9/fail".into()],
            },
        };
        store
            .write(|c| insert_run(c, &new_run("a", None), 1))
            .await
            .expect("insert");
        let fail = Finish::Failed {
            error: "boom".into(),
            retryable: true,
        };
        let p = policy.clone();
        let f = fail.clone();
        let first = store
            .write(move |c| {
                claim_run(c, "w", 10, 1000)?;
                finish_run(c, "a", "w", &f, &p, 20)
            })
            .await
            .expect("finish");
        assert_eq!(
            first,
            Finished::Retrying {
                attempt: 1,
                not_before: 120
            }
        );
        // Not due yet.
        assert!(
            store
                .write(|c| claim_run(c, "w", 50, 1000))
                .await
                .expect("claim")
                .is_none()
        );
        let p = policy.clone();
        let second = store
            .write(move |c| {
                claim_run(c, "w", 200, 1000)?.expect("due");
                finish_run(c, "a", "w", &fail, &p, 210)
            })
            .await
            .expect("finish");
        assert_eq!(second, Finished::Final("failed".into()));
        let run = store
            .read(|c| get_run(c, "a"))
            .await
            .expect("read")
            .expect("run");
        assert!(run.failed_queue);
        assert_eq!(run.attempt, 2);
        let n = store
            .write(|c| claim_notification(c, "w", 1000, 1000))
            .await
            .expect("claim")
            .expect("a notification");
        assert_eq!(n.kind, "run.failed");
        assert_eq!(n.url, "http://127.0.0.1:9/fail");
    }

    #[tokio::test]
    async fn a_delivery_id_is_stored_once() {
        let (_dir, store) = store();
        let a = store
            .write(|c| insert_event(c, "github", Some("d1"), "push", "{}", 1))
            .await
            .expect("insert");
        let b = store
            .write(|c| insert_event(c, "github", Some("d1"), "push", "{}", 2))
            .await
            .expect("insert");
        let Inserted::New(id) = a else {
            panic!("first is new")
        };
        assert_eq!(b, Inserted::Duplicate(id));
        let c = store
            .write(|c| insert_event(c, "gitlab", Some("d1"), "push", "{}", 3))
            .await
            .expect("insert");
        assert!(matches!(c, Inserted::New(_)));
    }

    #[tokio::test]
    async fn runs_of_a_stopped_worker_are_recovered_and_requeued() {
        let (_dir, store) = store();
        let policy = Policy {
            backoff_ms: 0,
            max_backoff_ms: 0,
            notify: Notify::default(),
        };
        store
            .write(|c| insert_run(c, &new_run("a", None), 1))
            .await
            .expect("insert");
        store
            .write(|c| claim_run(c, "old", 10, 100))
            .await
            .expect("claim");
        let p = policy.clone();
        // The lease has not expired and it is another worker's: nothing to do.
        let none = store
            .write(move |c| recover_runs(c, Some("new"), &p, 50))
            .await
            .expect("recover");
        assert!(none.is_empty());
        let p = policy.clone();
        let ids = store
            .write(move |c| recover_runs(c, Some("new"), &p, 500))
            .await
            .expect("recover");
        assert_eq!(ids, vec!["a".to_owned()]);
        let run = store
            .read(|c| get_run(c, "a"))
            .await
            .expect("read")
            .expect("run");
        assert_eq!(run.state, "queued");
        assert_eq!(run.reuse_from.as_deref(), Some("a"));
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains("interrupted")
        );
    }
}
