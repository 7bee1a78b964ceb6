//! Schema migrations, applied in order inside one transaction at open. `PRAGMA user_version`
//! is the number of migrations applied; a database newer than this binary is refused.
//! Never edit a migration that has shipped: add a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Every migration, oldest first.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, logs, webhook events, notifications, workers.
    r#"
CREATE TABLE runs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    state             TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    trigger           TEXT NOT NULL,
    pipeline          TEXT NOT NULL DEFAULT '',
    pipeline_path     TEXT,
    pipeline_yaml     TEXT,
    repo_url          TEXT,
    git_ref           TEXT,
    sha               TEXT,
    inputs            TEXT NOT NULL DEFAULT '{}',
    event             TEXT NOT NULL DEFAULT '{}',
    notify            TEXT NOT NULL DEFAULT '{}',
    concurrency_group TEXT,
    cancel_older      INTEGER NOT NULL DEFAULT 0,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    not_before        INTEGER NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    lease_until       INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    error             TEXT,
    retry_of          TEXT,
    reuse_from        TEXT,
    failed_queue      INTEGER NOT NULL DEFAULT 0,
    event_id          TEXT
);
CREATE INDEX runs_by_state ON runs (state, not_before);
CREATE INDEX runs_by_group ON runs (concurrency_group, state);
CREATE INDEX runs_by_claim ON runs (claimed_by, state);
CREATE INDEX runs_failed_queue ON runs (failed_queue, seq);

CREATE TABLE steps (
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    id       TEXT NOT NULL,
    position INTEGER NOT NULL,
    state    TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
) WITHOUT ROWID;

CREATE TABLE logs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    step   TEXT,
    stream TEXT NOT NULL,
    line   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    provider    TEXT NOT NULL,
    delivery    TEXT,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,
    claimed_by  TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    error       TEXT,
    runs        TEXT NOT NULL DEFAULT '[]',
    skipped     TEXT NOT NULL DEFAULT '[]',
    UNIQUE (provider, delivery)
);
CREATE INDEX events_by_state ON events (state, not_before);

CREATE TABLE notifications (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    run_id       TEXT NOT NULL,
    url          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   INTEGER NOT NULL DEFAULT 0,
    claimed_by   TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX notifications_by_state ON notifications (state, not_before);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // 2: the slots of scheduled pipelines already fired (or the first one seen), so that
    // several servers on one store start each slot once and a restart does not fire a backlog.
    r#"
CREATE TABLE schedule_slots (
    schedule   TEXT PRIMARY KEY,
    last_slot  INTEGER NOT NULL,
    run_id     TEXT,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
];

/// Bring the database at `path` up to the newest schema.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
    }
    tx.commit()?;
    Ok(())
}
