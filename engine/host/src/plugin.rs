//! Calling a plugin: `describe` (at load), `validate` (at plan time) and `run` (one step), each
//! in a fresh store, and turning whatever ended the call into a [`StepFailure`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::SemaphorePermit;
use tracing::Instrument;
use wasmtime::Store;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::access::StepAccess;
use crate::bindings::{self, Step, StepPre};
use crate::git::GitScope;
use crate::host::Shared;
use crate::http::HttpScope;
use crate::image::ImageScope;
use crate::log::{CapturedOutput, StepLog, TracingSink};
use crate::net::NetAllowList;
use crate::outputs::Outputs;
use crate::state::{StepState, on_epoch_tick};
use crate::{
    Capability, ConfigProblem, GUEST_WORKSPACE, HostError, Invocation, LogStream, Plugin,
    PluginInfo, StepFailure, StepOutcome,
};

/// Time limit of `describe` and `validate`: they must only look at data.
const SANDBOX_TIMEOUT: Duration = Duration::from_secs(5);
/// Memory cap of `describe` and `validate` (at most the host's cap).
const SANDBOX_MEMORY: u64 = 128 << 20;
/// How long after its deadline a step blocked in a host call (where epochs are not checked)
/// is dropped by the timer instead.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// Longest message taken from a plugin (an error, a config problem); the rest is cut.
const MAX_MESSAGE_BYTES: usize = 16 << 10;
/// Most config problems taken from one `validate` call.
const MAX_PROBLEMS: usize = 100;

/// A compiled plugin ready to instantiate.
pub(crate) struct Prepared {
    shared: Arc<Shared>,
    pre: StepPre<StepState>,
    declared_outputs: Arc<[String]>,
    /// What the plugin declared in `describe`; some host interfaces only serve these.
    capabilities: Arc<[Capability]>,
}

/// How a call into the guest ended.
enum CallEnd<T> {
    Returned(T),
    Failed {
        error: wasmtime::Error,
        instantiating: bool,
    },
    /// The timer fired while the guest was waiting on the host.
    Deadline,
}

impl Prepared {
    pub(crate) fn new(shared: Arc<Shared>, pre: StepPre<StepState>) -> Self {
        Prepared {
            shared,
            pre,
            declared_outputs: Arc::from(Vec::new()),
            capabilities: Arc::from(Vec::new()),
        }
    }

    /// Remembers what `describe` said: the outputs and capabilities the plugin declares.
    pub(crate) fn with_declared(self, info: &PluginInfo) -> Self {
        Prepared {
            declared_outputs: Arc::from(info.outputs.clone()),
            capabilities: Arc::from(info.capabilities.clone()),
            ..self
        }
    }

    fn declares(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Wait for a free instance slot.
    async fn slot(&self) -> Result<SemaphorePermit<'_>, String> {
        self.shared
            .slots
            .acquire()
            .await
            .map_err(|_| "the plugin host is shutting down".to_owned())
    }

    fn store(&self, state: StepState) -> Store<StepState> {
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch_tick);
        store
    }

    fn host_memory_limit(&self) -> u64 {
        self.shared.config.memory_limit
    }

    /// A store for `describe`/`validate`: no filesystem, env, network; output to tracing.
    fn sandbox(&self, origin: &str) -> (Store<StepState>, u64) {
        let log = StepLog::new(Arc::new(TracingSink {
            origin: origin.to_owned(),
        }));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(CapturedOutput::new(LogStream::Stdout, log.clone()))
            .stderr(CapturedOutput::new(LogStream::Stderr, log.clone()));
        NetAllowList::deny_all(&mut wasi);
        let memory = SANDBOX_MEMORY.min(self.host_memory_limit());
        let state = StepState::new(
            wasi.build(),
            memory,
            log,
            Outputs::new(Arc::from(Vec::new())),
            Some(Instant::now() + SANDBOX_TIMEOUT),
        );
        (self.store(state), memory)
    }

    /// Call `describe` once and check what it says.
    pub(crate) async fn describe(&self, origin: &str) -> Result<PluginInfo, HostError> {
        let failed = |reason: String| HostError::Describe {
            origin: origin.to_owned(),
            reason,
        };
        let _slot = self.slot().await.map_err(failed)?;
        let (mut store, memory) = self.sandbox(origin);
        let end = call(
            &self.pre,
            &mut store,
            Some(SANDBOX_TIMEOUT),
            move |step, store| Box::pin(async move { step.call_describe(store).await }),
        )
        .await;
        let state = store.into_data();
        match end {
            CallEnd::Returned(info) => info_from(info).map_err(failed),
            end => Err(failed(
                failure(end, &state, Some(SANDBOX_TIMEOUT), memory, &[]).to_string(),
            )),
        }
    }

    async fn validate(
        &self,
        origin: &str,
        config: &Value,
    ) -> Result<Vec<ConfigProblem>, HostError> {
        let failed = |reason: String| HostError::Validate {
            origin: origin.to_owned(),
            reason,
        };
        let _slot = self.slot().await.map_err(failed)?;
        let (mut store, memory) = self.sandbox(origin);
        let config = config.to_string();
        let end = call(
            &self.pre,
            &mut store,
            Some(SANDBOX_TIMEOUT),
            move |step, store| Box::pin(async move { step.call_validate(store, &config).await }),
        )
        .await;
        let state = store.into_data();
        match end {
            CallEnd::Returned(Ok(())) => Ok(Vec::new()),
            CallEnd::Returned(Err(problems)) => Ok(problems
                .into_iter()
                .take(MAX_PROBLEMS)
                .map(|p| ConfigProblem {
                    pointer: bounded(p.pointer),
                    message: bounded(p.message),
                })
                .collect()),
            end => Err(failed(
                failure(end, &state, Some(SANDBOX_TIMEOUT), memory, &[]).to_string(),
            )),
        }
    }

    async fn run(&self, inv: Invocation) -> StepOutcome {
        let started = Instant::now();
        tracing::debug!("step started");
        let outcome = self.run_step(inv).await;
        match &outcome.result {
            Ok(()) => tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                outputs = outcome.outputs.len(),
                "step succeeded"
            ),
            Err(failure) => tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                %failure,
                "step failed"
            ),
        }
        outcome
    }

    async fn run_step(&self, inv: Invocation) -> StepOutcome {
        let host_failure = |message: String| StepOutcome {
            outputs: BTreeMap::new(),
            result: Err(StepFailure::Host(message)),
        };
        let log = StepLog::new(inv.log.clone());
        let stdout = CapturedOutput::new(LogStream::Stdout, log.clone());
        let stderr = CapturedOutput::new(LogStream::Stderr, log.clone());
        let mut wasi = WasiCtxBuilder::new();
        // Workspace file operations run on the step's own thread instead of a `spawn_blocking`
        // round trip each: reading 50,000 small files (nx-affected on a large monorepo) takes
        // 1.2 s instead of 6.8 s. A step already occupies its thread while its guest computes.
        wasi.allow_blocking_current_thread(true);
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&inv.env);
        // Sockets only for plugins that ask for them; `git`, `http`, ... plugins reach the
        // granted hosts through the host, which checks each remote and request.
        if inv.grants.net.is_empty() || !self.declares(Capability::Network) {
            NetAllowList::deny_all(&mut wasi);
        } else {
            let entries = inv.grants.net.clone();
            match tokio::task::spawn_blocking(move || NetAllowList::resolve(&entries)).await {
                Ok(Ok(allowed)) => allowed.apply(&mut wasi),
                Ok(Err(message)) => return host_failure(message),
                Err(e) => return host_failure(format!("cannot resolve the network grants: {e}")),
            }
        }
        let perms = if inv.grants.workspace_write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        if let Err(e) = wasi.preopened_dir(&inv.workspace, GUEST_WORKSPACE, perms) {
            return host_failure(format!(
                "cannot open the workspace `{}`: {e:#}",
                inv.workspace.display()
            ));
        }
        let context = bindings::StepContext {
            run_id: inv.run_id.clone(),
            step_id: inv.step_id.clone(),
            attempt: inv.attempt,
            config: inv.config.to_string(),
            event: inv.event.to_string(),
            workspace: GUEST_WORKSPACE.to_owned(),
        };
        let memory = inv.memory_limit.map_or(self.host_memory_limit(), |m| {
            m.min(self.host_memory_limit())
        });

        let _slot = match self.slot().await {
            Ok(slot) => slot,
            Err(message) => return host_failure(message),
        };
        let access = Arc::new(StepAccess {
            workspace: inv.workspace.clone(),
            workspace_write: inv.grants.workspace_write,
            net: inv
                .grants
                .net
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            secrets: inv.secrets.clone(),
            log: log.clone(),
        });
        let git = self.shared.config.git.clone().map(|git| GitScope {
            git,
            access: access.clone(),
        });
        let image = self.shared.config.oci.clone().map(|builder| ImageScope {
            builder,
            access: access.clone(),
        });
        let registry = Some(crate::registry::RegistryScope {
            access: access.clone(),
            declared: self.declares(Capability::Registry),
        });
        let http = self.shared.config.http.clone().map(|client| HttpScope {
            client,
            access: access.clone(),
            declared: self.declares(Capability::Http),
        });
        let cache = self
            .shared
            .config
            .cache
            .clone()
            .map(|cache| crate::cache_store::CacheScope { cache, access });
        let mut state = StepState::new(
            wasi.build(),
            memory,
            log,
            Outputs::new(self.declared_outputs.clone()),
            inv.timeout.map(|t| Instant::now() + t),
        );
        state.git = git;
        state.image = image;
        state.registry = registry;
        state.http = http;
        state.cache = cache;
        let mut store = self.store(state);
        let end = call(&self.pre, &mut store, inv.timeout, move |step, store| {
            Box::pin(async move { step.call_run(store, &context).await })
        })
        .await;
        stdout.finish();
        stderr.finish();
        let state = store.into_data();
        let result = match end {
            CallEnd::Returned(guest) if !state.timed_out && !state.limiter.memory_exhausted => {
                match state.outputs.violation() {
                    Some(violation) => Err(StepFailure::Protocol(violation)),
                    None => guest.map_err(|e| match e {
                        bindings::StepError::InvalidConfig(m) => {
                            StepFailure::InvalidConfig(bounded(m))
                        }
                        bindings::StepError::Denied(m) => StepFailure::Denied(bounded(m)),
                        bindings::StepError::Failed(m) => StepFailure::Failed(bounded(m)),
                    }),
                }
            }
            end => Err(failure(end, &state, inv.timeout, memory, &stderr.tail())),
        };
        StepOutcome {
            outputs: state.outputs.into_values(),
            result,
        }
    }
}

/// Instantiate and call one export, bounded by `timeout` also while the guest waits on the
/// host (where the epoch callback does not run).
async fn call<'a, T>(
    pre: &'a StepPre<StepState>,
    store: &'a mut Store<StepState>,
    timeout: Option<Duration>,
    export: impl for<'s> FnOnce(
        Step,
        &'s mut Store<StepState>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = wasmtime::Result<T>> + Send + 's>,
    >,
) -> CallEnd<T> {
    let run = async {
        let step = match pre.instantiate_async(&mut *store).await {
            Ok(step) => step,
            Err(error) => {
                return CallEnd::Failed {
                    error,
                    instantiating: true,
                };
            }
        };
        match export(step, store).await {
            Ok(value) => CallEnd::Returned(value),
            Err(error) => CallEnd::Failed {
                error,
                instantiating: false,
            },
        }
    };
    match timeout {
        Some(limit) => tokio::time::timeout(limit + DEADLINE_GRACE, run)
            .await
            .unwrap_or(CallEnd::Deadline),
        None => run.await,
    }
}

/// Why a call did not return normally.
fn failure<T>(
    end: CallEnd<T>,
    state: &StepState,
    timeout: Option<Duration>,
    memory: u64,
    stderr_tail: &[String],
) -> StepFailure {
    if state.timed_out || matches!(end, CallEnd::Deadline) {
        return StepFailure::TimedOut(timeout.unwrap_or_default());
    }
    if state.limiter.memory_exhausted {
        return StepFailure::OutOfMemory(memory);
    }
    let CallEnd::Failed {
        error,
        instantiating,
    } = end
    else {
        return StepFailure::Host("the plugin returned in an unexpected state".into());
    };
    // The last lines of stderr usually say why (a panic message, for example). Rust's hint
    // about backtraces is noise here.
    let tail: Vec<&str> = stderr_tail
        .iter()
        .map(String::as_str)
        .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let stderr = if tail.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {})", tail.join(" / "))
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return StepFailure::Failed(format!(
            "the plugin exited with status {} instead of returning{stderr}",
            exit.0
        ));
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        let trap = trap.to_string();
        let trap = trap.strip_prefix("wasm trap: ").unwrap_or(&trap);
        return StepFailure::Trapped(format!("{trap}{stderr}"));
    }
    if instantiating {
        return StepFailure::Host(format!("cannot instantiate the plugin: {error:#}"));
    }
    StepFailure::Trapped(format!("{error:#}{stderr}"))
}

/// A plugin-provided message cut to [`MAX_MESSAGE_BYTES`], so that it fits a log or a store row.
fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("… [truncated]");
    }
    message
}

/// Check a plugin's description and convert it.
fn info_from(info: bindings::PluginInfo) -> Result<PluginInfo, String> {
    let config_schema: Value = serde_json::from_str(&info.config_schema)
        .map_err(|e| format!("its config schema is not valid JSON: {e}"))?;
    if info.name.trim().is_empty() {
        return Err("its name is empty".into());
    }
    let mut probe = Outputs::new(Arc::from(Vec::new()));
    for name in &info.outputs {
        probe
            .set(name, "null")
            .map_err(|e| format!("it declares an unusable output: {e}"))?;
    }
    let mut capabilities: Vec<Capability> = info
        .capabilities
        .into_iter()
        .map(|c| match c {
            bindings::Capability::WorkspaceWrite => Capability::WorkspaceWrite,
            bindings::Capability::Network => Capability::Network,
            bindings::Capability::Git => Capability::Git,
            bindings::Capability::Buildkit => Capability::Buildkit,
            bindings::Capability::Registry => Capability::Registry,
            bindings::Capability::Http => Capability::Http,
            bindings::Capability::Cache => Capability::Cache,
        })
        .collect();
    capabilities.sort();
    capabilities.dedup();
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
        config_schema,
        outputs: info.outputs,
        capabilities,
        caching: match info.caching {
            bindings::Caching::Auto => crate::Caching::Auto,
            bindings::Caching::Never => crate::Caching::Never,
        },
    })
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("origin", &self.origin)
            .field("digest", &self.digest)
            .field("info", &self.info)
            .field("loaded_from", &self.loaded_from)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Ask the plugin to check a config (unresolved `${{ }}` left as strings).
    pub async fn validate(&self, config: &Value) -> Result<Vec<ConfigProblem>, HostError> {
        self.prepared.validate(&self.origin, config).await
    }

    /// Run one step in a fresh instance. Never panics on anything the plugin does. Must be
    /// polled inside a tokio runtime (any flavour); the future is `Send`.
    ///
    /// The timeout starts once an instance slot is free. Dropping the returned future cancels
    /// the step at once: the guest stops at its next epoch tick or host call, its instance slot
    /// is freed, nothing more reaches the log, and no [`StepOutcome`] is produced (files it
    /// already wrote to the workspace stay).
    pub async fn run(&self, invocation: Invocation) -> StepOutcome {
        let span = tracing::info_span!(
            "step",
            step = %invocation.step_id,
            run = %invocation.run_id,
            attempt = invocation.attempt,
            plugin = %self.info.name,
        );
        self.prepared.run(invocation).instrument(span).await
    }

    pub(crate) fn with_origin(&self, origin: &str) -> Plugin {
        Plugin {
            origin: origin.to_owned(),
            digest: self.digest.clone(),
            info: self.info.clone(),
            loaded_from: self.loaded_from,
            prepared: self.prepared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(schema: &str, outputs: &[&str]) -> bindings::PluginInfo {
        bindings::PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            config_schema: schema.into(),
            outputs: outputs.iter().map(|o| (*o).to_owned()).collect(),
            capabilities: vec![
                bindings::Capability::Network,
                bindings::Capability::WorkspaceWrite,
                bindings::Capability::Network,
            ],
            caching: bindings::Caching::Auto,
        }
    }

    #[test]
    fn a_description_is_converted_with_sorted_unique_capabilities() {
        let converted = info_from(info(r#"{"type":"object"}"#, &["out"])).expect("valid");
        assert_eq!(
            converted.capabilities,
            [Capability::WorkspaceWrite, Capability::Network]
        );
        assert_eq!(
            converted.config_schema,
            serde_json::json!({ "type": "object" })
        );
    }

    #[test]
    fn long_plugin_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES + "… [truncated]".len());
        assert!(cut.ends_with("… [truncated]"));
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn a_schema_that_is_not_json_is_refused() {
        let err = info_from(info("{type: object", &[])).expect_err("invalid");
        assert!(err.contains("config schema is not valid JSON"), "{err}");
    }

    #[test]
    fn an_unusable_declared_output_name_is_refused() {
        let err = info_from(info("{}", &["has space"])).expect_err("invalid");
        assert!(err.contains("`has space`"), "{err}");
    }
}
