//! The durable store of `kiln serve`: runs, their steps and log lines, webhook events (with
//! delivery ids, for deduplication), notifications to send, workers. SQLite in WAL mode,
//! embedded (rusqlite with its bundled SQLite), schema versioned by `PRAGMA user_version`.
//!
//! Writes go to one writer thread that groups whatever is waiting into one transaction (group
//! commit): each caller's closure runs in its own savepoint, so one failing write does not undo
//! the others, and every caller is answered only after the commit is on disk (with
//! `synchronous = FULL` by default) — an HTTP handler that gets `Ok` may answer 2xx. Reads use a
//! small pool of other connections on blocking threads; WAL lets them run beside the writer.
//!
//! Several `kiln serve` processes may share one database file: every write transaction is
//! `BEGIN IMMEDIATE` (one writer at a time across processes, with a busy timeout), so a claim
//! (`UPDATE … WHERE state = 'queued' … RETURNING`) can never hand one run to two workers.

mod migrations;
mod model;
mod schedules;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::oneshot;

pub use model::*;
pub use schedules::*;

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most writes grouped into one transaction.
const MAX_BATCH: usize = 256;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store `{path}`: {message}\n  hint: {hint}")]
    Open {
        path: String,
        message: String,
        hint: String,
    },
    #[error(
        "the store `{path}` has schema version {found}, newer than this kiln knows ({known})\n  hint: run a newer kiln, or point `store.path` at another file"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: a stored value is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the store's writer has stopped")]
    Closed,
    /// A write transaction could not begin or commit (another process held the lock too long,
    /// the disk is full, ...).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// How durable a commit is before a write returns (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: survives power loss (the default).
    Full,
    /// WAL with fsync only at checkpoints: survives a crash of kiln, not of the machine.
    Normal,
}

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(Result<&mut rusqlite::Transaction<'_>, &str>) -> Reply + Send>;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: std::sync::mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
}

fn open_connection(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
        hint: "check that the directory exists and is writable".to_owned(),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Store {
    /// Open (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: e.to_string(),
                hint: format!("create `{}` or choose another `store.path`", dir.display()),
            })?;
        }
        let mut conn = open_connection(path, synchronous)?;
        migrations::migrate(&mut conn, path)?;
        // Checkpoints (copying the WAL into the database file, with fsyncs of both) would run
        // inside whichever commit crosses the threshold and stall every write waiting on it:
        // the writer never checkpoints; a thread of its own does, beside it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = open_connection(path, synchronous)?;
        std::thread::Builder::new()
            .name("kiln-store-checkpoint".into())
            .spawn(move || checkpoint(checkpointer))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot start the checkpoint thread: {e}"),
                hint: "the machine is out of threads".to_owned(),
            })?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("kiln-store-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot start the writer thread: {e}"),
                hint: "the machine is out of threads".to_owned(),
            })?;
        let readers = (0..2)
            .map(|_| open_connection(path, synchronous))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: tx,
                readers: Mutex::new(readers),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` in a write transaction (grouped with other waiting writes) and return its result
    /// once the transaction is committed. An error from `f` rolls back only `f`'s changes.
    pub async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<R, StoreError>>();
        let job: Job = Box::new(move |t: Result<&mut rusqlite::Transaction<'_>, &str>| {
            let result = match t {
                Err(message) => Err(StoreError::Unavailable(message.to_owned())),
                Ok(t) => match t.savepoint() {
                    Ok(mut sp) => {
                        sp.set_drop_behavior(rusqlite::DropBehavior::Rollback);
                        let r = f(&sp);
                        if r.is_ok() {
                            match sp.commit() {
                                Ok(()) => r,
                                Err(e) => Err(StoreError::Sqlite(e)),
                            }
                        } else {
                            r
                        }
                    }
                    Err(e) => Err(StoreError::Sqlite(e)),
                },
            };
            Box::new(move |committed: Result<(), String>| {
                let outcome = match committed {
                    Ok(()) => result,
                    Err(message) => Err(StoreError::Unavailable(message)),
                };
                let _ = tx.send(outcome);
            })
        });
        self.inner
            .writer
            .send(job)
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a read connection, on a blocking thread.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&inner.path, Synchronous::Normal)?,
            };
            let result = f(&conn);
            let mut pool = inner
                .readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if pool.len() < 8 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// The writer thread: take every job waiting (up to [`MAX_BATCH`]), run them in one
/// `BEGIN IMMEDIATE` transaction, commit, answer.
fn writer(mut conn: Connection, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let message = format!("cannot begin a write transaction: {e}");
                tracing::error!("{message}");
                for job in batch {
                    job(Err(&message))(Err(message.clone()));
                }
                continue;
            }
        };
        let replies: Vec<Reply> = batch.into_iter().map(|job| job(Ok(&mut tx))).collect();
        let committed = tx.commit().map_err(|e| format!("commit failed: {e}"));
        if let Err(e) = &committed {
            tracing::error!("store: {e}");
        }
        for reply in replies {
            reply(committed.clone());
        }
    }
}

/// Every second, copy what the WAL holds into the database file without blocking writers
/// (`PASSIVE`); when the WAL has grown past 64 MiB, wait for readers and truncate it.
fn checkpoint(conn: Connection) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let result: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        match result {
            Ok((_, log_pages, _)) if log_pages > 16_384 => {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("store checkpoint failed: {e}"),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 (UTC, milliseconds) of a Unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
