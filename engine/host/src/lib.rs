//! Kiln's plugin host: runs WASI component step plugins in wasmtime.
//!
//! One [`PluginHost`] per process owns the wasmtime `Engine` (pooling allocator, epoch
//! interruption), the linker, and the on-disk cache of compiled components. [`PluginHost::load`]
//! turns component bytes into a [`Plugin`] (compiled once per content digest, `InstancePre`
//! kept, `describe` called once). [`Plugin::run`] runs one step in a fresh store scoped to that
//! step's [`Grants`]. Dropping the future returned by `run` cancels the step.
//!
//! # What a step can reach
//! - the workspace, preopened at [`GUEST_WORKSPACE`], read-only unless
//!   [`Grants::workspace_write`]; nothing else of the filesystem;
//! - exactly the env vars of [`Invocation::env`], no arguments, no stdin;
//! - no network unless [`Grants::net`] lists `host:port` entries: then TCP connections to the
//!   addresses those resolve to when the step starts, on those ports only (no UDP, no listening);
//! - its log (the `log` import, stdout and stderr, line by line) and its outputs;
//! - the `git` interface, done by the host: clones into the workspace only with
//!   [`Grants::workspace_write`], network remotes only when [`Grants::net`] lists their
//!   `host:port`, credentials only from [`Invocation::secrets`] (by name);
//! - the `http` interface, for plugins that declare [`Capability::Http`]: requests (and
//!   redirects) only to the `host:port`s of [`Grants::net`], credentials and signing keys only
//!   from [`Invocation::secrets`] (by name).
//!
//! WASI sockets are opened to [`Grants::net`] only for plugins that declare
//! [`Capability::Network`]; the others reach the granted hosts only through host interfaces.
//!
//! # Limits
//! - memory: [`Invocation::memory_limit`], capped by [`HostConfig::memory_limit`] (the pool's
//!   slots are sized to it); growing past it ends the step with [`StepFailure::OutOfMemory`];
//! - time: [`Invocation::timeout`], enforced every [`EPOCH_TICK`] while wasm runs and by a timer
//!   while the guest waits on the host; the step ends with [`StepFailure::TimedOut`];
//! - log: [`MAX_LINE_BYTES`] per line, [`MAX_LOG_BYTES`] per step; outputs: [`MAX_OUTPUTS_BYTES`];
//! - instances: at most [`HostConfig::max_instances`] stores exist at once; further steps wait
//!   for a free slot before their timeout starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

mod access;
mod bindings;
mod cache;
mod cache_store;
mod engine;
mod git;
mod host;
mod http;
mod image;
mod log;
mod net;
mod outputs;
mod plugin;
mod registry;
mod state;

pub use engine::EPOCH_TICK;
pub use log::{MAX_LINE_BYTES, MAX_LOG_BYTES};
pub use outputs::MAX_OUTPUTS_BYTES;

/// Where the workspace appears inside the plugin.
pub const GUEST_WORKSPACE: &str = "/workspace";

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
    /// How many plugin instances may be alive at once (sizes the pooling allocator). Steps,
    /// `validate` and `describe` calls beyond it wait for a free slot.
    pub max_instances: u32,
    /// Default linear-memory cap of one step, in bytes, and the most any step may get (the
    /// pool's memory slots are this size). Between 1 MiB and 4 GiB.
    pub memory_limit: u64,
    /// The git layer behind the `git` interface (`None`: every git call is denied).
    pub git: Option<Arc<kiln_git::Git>>,
    /// The BuildKit behind the `image` interface (`None`: every image call is denied).
    pub oci: Option<Arc<kiln_oci::Builder>>,
    /// The client behind the `http` interface (`None`: every request is denied).
    pub http: Option<Arc<kiln_http::Client>>,
    /// The store behind the `cache` interface (`None`: every cache call is denied).
    pub cache: Option<Arc<kiln_cache::Cache>>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            max_instances: 64,
            memory_limit: 256 << 20,
            git: None,
            oci: None,
            http: None,
            cache: None,
        }
    }
}

/// A privilege a plugin asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    WorkspaceWrite,
    Network,
    Git,
    Buildkit,
    Registry,
    Http,
    Cache,
}

impl Capability {
    /// The name used in docs and messages (`workspace-write`, `network`).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::WorkspaceWrite => "workspace-write",
            Capability::Network => "network",
            Capability::Git => "git",
            Capability::Buildkit => "buildkit",
            Capability::Registry => "registry",
            Capability::Http => "http",
            Capability::Cache => "cache",
        }
    }
}

/// How the step cache may treat a plugin's steps (its description's `caching`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Caching {
    /// The automatic rule applies; `cache: true` is allowed.
    #[default]
    Auto,
    /// The plugin has side effects: never cached.
    Never,
}

impl Caching {
    pub fn as_str(self) -> &'static str {
        match self {
            Caching::Auto => "auto",
            Caching::Never => "never",
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
    pub caching: Caching,
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
    /// How its compiled form was obtained when it was first loaded in this host.
    pub loaded_from: LoadedFrom,
    pub(crate) prepared: Arc<plugin::Prepared>,
}

/// How a plugin's compiled form was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Compiled from the component bytes (and written to the disk cache, if any).
    Compiled,
    /// Read from the disk cache of compiled components.
    DiskCache,
}

/// Counters of a host's loads, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Components compiled by Cranelift.
    pub compiled: u64,
    /// Components read from the disk cache.
    pub disk_cache_hits: u64,
    /// Loads answered from memory (same bytes loaded before).
    pub memory_cache_hits: u64,
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
///
/// Called on the step's task while the plugin waits: it must not block (hand the line to a
/// channel or buffer). Lines are lossily decoded as UTF-8.
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
    /// The step's secrets by name: what host interfaces (git credentials) may read on the
    /// plugin's behalf. Values never enter the plugin through this.
    pub secrets: BTreeMap<String, String>,
    /// Wall-clock limit of the call; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Linear-memory cap; `None` for the host default. Capped at [`HostConfig::memory_limit`].
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
    if d.as_millis().is_multiple_of(1000) {
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

/// The process-wide plugin host. `Send + Sync`; share it behind an `Arc`.
pub struct PluginHost {
    shared: Arc<host::Shared>,
    loaded: std::sync::Mutex<host::LoadedMap>,
}
