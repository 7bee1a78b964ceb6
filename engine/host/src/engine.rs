//! The wasmtime engine of a host and the thread that ticks its epoch.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::{HostConfig, HostError};

/// How often the epoch advances: the granularity of timeouts and of yielding to the executor.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Smallest and largest memory cap a host accepts.
const MIN_MEMORY_LIMIT: u64 = 1 << 20;
const MAX_MEMORY_LIMIT: u64 = 4 << 30;
/// Most linear memories one component may define (a Rust or JS plugin has one; components
/// built with an adapter may have two).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Most core instances one component may create (Python components link a dozen modules).
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;
/// Tables of one component, on average over the pool (the shims of the canonical ABI have some).
const TABLES_PER_COMPONENT: u32 = 16;
/// Elements of one table: function references. Large runtimes (SpiderMonkey, CPython) have
/// tens of thousands; wasmtime's default of 20 000 is too tight for them.
const TABLE_ELEMENTS: usize = 100_000;
/// Guard region after each linear memory. Memories are reserved at their cap rather than the
/// usual 4 GiB, so bounds checks stay in the code; the guard lets small offsets skip them.
const MEMORY_GUARD: u64 = 32 << 20;

/// Build the engine: Cranelift at `speed`, epoch interruption, and a pooling allocator with
/// `max_instances` slots whose memories are reserved at the memory cap, so that the virtual
/// reservation stays at about `max_instances * 2 * (memory_limit + 32 MiB)`.
pub(crate) fn build(config: &HostConfig) -> Result<Engine, HostError> {
    if config.max_instances == 0 {
        return Err(HostError::Setup(
            "`max_instances` is 0; allow at least one plugin instance".into(),
        ));
    }
    if !(MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(&config.memory_limit) {
        return Err(HostError::Setup(format!(
            "`memory_limit` is {} bytes; choose between 1 MiB and 4 GiB",
            config.memory_limit
        )));
    }
    let page = 64 << 10;
    let memory = config.memory_limit.div_ceil(page) * page;
    let memory_slot = usize::try_from(memory)
        .map_err(|_| HostError::Setup("`memory_limit` does not fit this machine".into()))?;
    let n = config.max_instances;

    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .table_elements(TABLE_ELEMENTS)
        .total_stacks(n)
        .max_memory_size(memory_slot);

    let mut wasm = Config::new();
    wasm.cranelift_opt_level(OptLevel::Speed)
        .epoch_interruption(true)
        .memory_reservation(memory)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| HostError::Setup(format!("{e:#}")))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until dropped.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Result<Self, HostError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| HostError::Setup(format!("cannot start the epoch thread: {e}")))?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
