//! What one store holds: the WASI context scoped to the step, the step's log and outputs, and
//! the limits (memory cap, deadline) whose breach must be told apart from an ordinary trap.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::log::StepLog;
use crate::outputs::Outputs;

/// The data of one store: one step, or one `describe`/`validate` call.
pub(crate) struct StepState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: StepLimiter,
    pub(crate) log: Arc<StepLog>,
    pub(crate) outputs: Outputs,
    /// When the call must stop (checked at every epoch tick).
    pub(crate) deadline: Option<Instant>,
    /// Set when the deadline stopped the guest.
    pub(crate) timed_out: bool,
    /// What the step's `git` calls may touch; `None` outside a step run.
    pub(crate) git: Option<crate::git::GitScope>,
    /// What the step's `image` calls may use; `None` outside a step run.
    pub(crate) image: Option<crate::image::ImageScope>,
    /// What the step's registry calls (`image.list-tags`, `image.delete-manifest`) may reach;
    /// `None` outside a step run.
    pub(crate) registry: Option<crate::registry::RegistryScope>,
    /// What the step's `http` calls may reach; `None` outside a step run.
    pub(crate) http: Option<crate::http::HttpScope>,
    /// What the step's `cache` calls may use; `None` outside a step run or without a store.
    pub(crate) cache: Option<crate::cache_store::CacheScope>,
}

impl StepState {
    pub(crate) fn new(
        wasi: WasiCtx,
        memory_limit: u64,
        log: Arc<StepLog>,
        outputs: Outputs,
        deadline: Option<Instant>,
    ) -> Self {
        StepState {
            wasi,
            table: ResourceTable::new(),
            limiter: StepLimiter::new(memory_limit),
            log,
            outputs,
            deadline,
            timed_out: false,
            git: None,
            image: None,
            registry: None,
            http: None,
            cache: None,
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

// The generated `types` interface has no functions, but the world still wants a `Host` for it.
impl crate::bindings::types::Host for StepState {}

/// The epoch callback: every tick, give the executor a turn (so a spinning guest neither blocks
/// a tokio worker nor prevents the step's future from being dropped) and stop the guest once
/// its deadline has passed.
pub(crate) fn on_epoch_tick(
    mut store: StoreContextMut<'_, StepState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = store.data_mut();
    if let Some(deadline) = state.deadline
        && Instant::now() >= deadline
    {
        state.timed_out = true;
        return Err(wasmtime::Error::msg("the step ran past its deadline"));
    }
    Ok(UpdateDeadline::YieldCustom(
        1,
        Box::pin(tokio::task::yield_now()),
    ))
}

/// Caps each linear memory of a store (a component usually has one). Growing past the cap traps at once (a guest cannot
/// recover from it, which is what a memory limit should mean) and is recorded, so the failure
/// reads "out of memory" rather than as an anonymous trap.
pub(crate) struct StepLimiter {
    memory_limit: usize,
    pub(crate) memory_exhausted: bool,
}

/// Instances, tables and memories one store may create (a component has a handful of each).
const MAX_INSTANCES: usize = 1000;
const MAX_TABLES: usize = 1000;
const MAX_MEMORIES: usize = 16;

impl StepLimiter {
    fn new(memory_limit: u64) -> Self {
        StepLimiter {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            memory_exhausted: false,
        }
    }
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit || maximum.is_some_and(|max| desired > max) {
            self.memory_exhausted = true;
            wasmtime::bail!("linear memory would grow to {desired} bytes, past the step's limit");
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_exhausted = true;
        Err(error.context("linear memory could not grow"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pool bounds tables (`maximum`); they hold function references, not user data.
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
