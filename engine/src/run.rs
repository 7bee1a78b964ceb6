//! Run and StepRun: the record of one execution of a Plan, and the events that build it.
//!
//! A Run is what users see (CLI summary, `--json`, later the API and the store). Events flow one
//! way, from the scheduler to whoever listens (terminal progress, store, log streams).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// State of one step (or one matrix instance of a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    Cached,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
            StepState::Cancelled => "cancelled",
            StepState::Cached => "cached",
        }
    }

    /// Finished without a problem: dependents may run.
    pub fn is_success(self) -> bool {
        matches!(self, StepState::Succeeded | StepState::Cached)
    }
}

/// The record of one step instance (stored as JSON by `kiln serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    /// Instance id: `build`, or `image[app=web]` for a matrix instance.
    pub id: String,
    /// The step's `id:` in the pipeline.
    pub step: String,
    /// Matrix values of this instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<BTreeMap<String, Value>>,
    pub state: StepState,
    /// Tries made (0 if it never started).
    pub attempts: u32,
    /// RFC 3339 start time of the first attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Wall time from the first attempt's start to the end, retries and backoff included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub outputs: BTreeMap<String, Value>,
    /// Why it failed (secrets masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failed, but `continue-on-error` let the run go on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
    /// What the step cache did (absent when the run has no step cache or the step never
    /// started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::CacheRecord>,
}

impl StepRun {
    pub fn new(id: String, step: String, matrix: Option<BTreeMap<String, Value>>) -> Self {
        StepRun {
            id,
            step,
            matrix,
            state: StepState::Pending,
            attempts: 0,
            started_at: None,
            duration_ms: None,
            outputs: BTreeMap::new(),
            error: None,
            reason: None,
            continue_on_error: false,
            cache: None,
        }
    }
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: String,
    /// The pipeline's `name:`.
    pub pipeline: String,
    /// The pipeline file as given.
    pub file: String,
    pub state: RunState,
    pub started_at: String,
    pub duration_ms: u64,
    /// Host path of the run workspace.
    pub workspace: String,
    /// Every step instance, in pipeline order.
    pub steps: Vec<StepRun>,
    /// Step cache hits, misses, saves and uncacheable steps (all zero without a step cache).
    pub cache: crate::cache::CacheCounts,
}

/// Where a log line came from.
pub use kiln_host::LogStream;

/// What happens during a run, in order.
#[derive(Debug, Clone)]
pub enum Event {
    StepStarted {
        id: String,
        attempt: u32,
    },
    StepLog {
        id: String,
        stream: LogStream,
        line: String,
    },
    StepRetrying {
        id: String,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    StepFinished(Box<StepRun>),
    RunFinished(Box<Run>),
}

/// RFC 3339 timestamp of now (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
