//! Kiln's plugin host: runs WASI component step plugins in wasmtime.
//!
//! SKELETON: the public API below is the contract the engine codes against; the
//! implementation is being written.
//!
//! One [`PluginHost`] per process owns the wasmtime `Engine` (pooling allocator, epoch
//! interruption), the linker, and the on-disk cache of compiled components. [`PluginHost::load`]
//! turns component bytes into a [`Plugin`] (compiled once per content digest, `InstancePre`
//! kept, `describe` called once). [`Plugin::run`] runs one step in a fresh store scoped to that
//! step's [`Grants`]. Dropping the future returned by `run` cancels the step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Errors of the host itself (as opposed to a step's failure).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot start the plugin host: {0}")]
    Setup(String),
    #[error("`{origin}` is not a valid plugin component: {reason}")]
    InvalidComponent { origin: String, reason: String },
    #[error("plugin `{origin}` failed while describing itself: {reason}")]
    Describe { origin: String, reason: String },
    #[error("plugin `{origin}` failed in validate: {reason}")]
    Validate { origin: String, reason: String },
}

/// Settings of the host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached (`None`: no disk cache).
    pub cache_dir: Option<PathBuf>,
    /// How many plugin instances may be alive at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Default linear-memory cap of one step, in bytes.
    pub memory_limit: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            max_instances: 64,
            memory_limit: 256 << 20,
        }
    }
}

/// A privilege a plugin asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    WorkspaceWrite,
    Network,
}

impl Capability {
    /// The name used in docs and messages (`workspace-write`, `network`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::WorkspaceWrite => "workspace-write",
            Capability::Network => "network",
        }
    }
}

/// What a plugin says about itself (its `describe` export).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config_schema: Value,
    /// Outputs it may set; empty means any.
    pub outputs: Vec<String>,
    pub capabilities: Vec<Capability>,
}

/// One problem a plugin's `validate` found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// JSON Pointer into the config.
    pub pointer: String,
    pub message: String,
}

/// A loaded plugin, cheap to share between steps.
pub struct Plugin {
    /// Where it came from, for messages: a built-in name or a path.
    pub origin: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub info: PluginInfo,
}

/// The privileges one step grants its plugin.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Preopen the workspace read-write (read-only otherwise).
    pub workspace_write: bool,
    /// `host:port` entries the plugin may connect to (names are resolved when the step starts).
    /// Empty: no sockets and no name lookups at all.
    pub net: Vec<String>,
}

/// Where a line of the step's log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

/// Receives the step's log lines as they happen (one call per line, without the newline).
pub trait LogSink: Send + Sync {
    fn line(&self, stream: LogStream, text: &str);
}

/// One step to run.
pub struct Invocation {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    /// The resolved `with:` object.
    pub config: Value,
    pub event: Value,
    /// Host directory preopened as the guest's `/workspace`.
    pub workspace: PathBuf,
    pub grants: Grants,
    /// Exactly the env vars the plugin sees (nothing of the host's env).
    pub env: Vec<(String, String)>,
    /// Wall-clock limit of the call; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Linear-memory cap; `None` for the host default.
    pub memory_limit: Option<u64>,
    pub log: Arc<dyn LogSink>,
}

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepFailure {
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
    /// The guest trapped (unreachable, panic with `panic=abort`, out of bounds, ...).
    #[error("plugin crashed: {0}")]
    Trapped(String),
    #[error("timed out after {}", humanize(*.0))]
    TimedOut(Duration),
    #[error("ran out of memory: the step is limited to {} MiB", .0 >> 20)]
    OutOfMemory(u64),
    /// The plugin broke the contract (invalid output JSON or name, ...).
    #[error("plugin misbehaved: {0}")]
    Protocol(String),
    /// The host could not set the step up (workspace missing, ...).
    #[error("{0}")]
    Host(String),
}

impl StepFailure {
    /// Whether `retry:` applies: configuration and permission problems will not fix themselves.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            StepFailure::InvalidConfig(_) | StepFailure::Denied(_) | StepFailure::Protocol(_)
        )
    }
}

fn humanize(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Outputs set before the step ended (also on failure).
    pub outputs: BTreeMap<String, Value>,
    pub result: Result<(), StepFailure>,
}

/// The process-wide plugin host.
pub struct PluginHost {
    _config: HostConfig,
}

impl PluginHost {
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        Ok(PluginHost { _config: config })
    }

    /// Load a component: compile it (or read the compiled form from the disk cache), prepare
    /// its instantiation, and call `describe`.
    pub async fn load(&self, origin: &str, bytes: &[u8]) -> Result<Arc<Plugin>, HostError> {
        let _ = bytes;
        Err(HostError::Setup(format!("not implemented yet: {origin}")))
    }
}

impl Plugin {
    /// Ask the plugin to check a config (unresolved `${{ }}` left as strings).
    pub async fn validate(&self, config: &Value) -> Result<Vec<ConfigProblem>, HostError> {
        let _ = config;
        Ok(Vec::new())
    }

    /// Run one step in a fresh instance. Never panics on anything the plugin does.
    pub async fn run(&self, invocation: Invocation) -> StepOutcome {
        let _ = invocation;
        StepOutcome {
            outputs: BTreeMap::new(),
            result: Err(StepFailure::Host("not implemented".into())),
        }
    }
}
