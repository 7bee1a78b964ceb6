//! [`PluginHost`]: the engine, the linker, and loading components (compile or disk cache,
//! `InstancePre`, `describe`), each distinct component once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{Step, StepPre};
use crate::cache::DiskCache;
use crate::engine::EpochTicker;
use crate::log::lock;
use crate::plugin::Prepared;
use crate::state::StepState;
use crate::{HostConfig, HostError, HostStats, LoadedFrom, Plugin, PluginHost};

/// Loaded plugins by digest; a cell is filled once even when the same bytes load concurrently.
pub(crate) type LoadedMap = HashMap<String, Arc<OnceCell<Arc<Plugin>>>>;

/// What the host and every plugin it loaded share. The epoch thread lives as long as this, so
/// a plugin still running after its host was dropped keeps its timeout.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StepState>,
    pub(crate) config: HostConfig,
    /// One permit per instance slot of the pooling allocator.
    pub(crate) slots: Semaphore,
    cache: Option<DiskCache>,
    compiled: AtomicU64,
    disk_cache_hits: AtomicU64,
    memory_cache_hits: AtomicU64,
    _ticker: EpochTicker,
}

impl PluginHost {
    /// Start a host: build the engine and linker, start the epoch thread, open the disk cache.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        let engine = crate::engine::build(&config)?;
        let mut linker = Linker::<StepState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Setup(format!("cannot link WASI: {e:#}")))?;
        Step::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| HostError::Setup(format!("cannot link the kiln interfaces: {e:#}")))?;
        let cache = config
            .cache_dir
            .as_deref()
            .and_then(|dir| DiskCache::open(dir, &engine));
        let ticker = EpochTicker::start(&engine)?;
        let slots = usize::try_from(config.max_instances).unwrap_or(usize::MAX);
        Ok(PluginHost {
            shared: Arc::new(Shared {
                engine,
                linker,
                slots: Semaphore::new(slots.min(Semaphore::MAX_PERMITS)),
                config,
                cache,
                compiled: AtomicU64::new(0),
                disk_cache_hits: AtomicU64::new(0),
                memory_cache_hits: AtomicU64::new(0),
                _ticker: ticker,
            }),
            loaded: Default::default(),
        })
    }

    /// Load a component: compile it (or read the compiled form from the disk cache), prepare
    /// its instantiation, and call `describe`. Loading the same bytes again is free.
    pub async fn load(&self, origin: &str, bytes: &[u8]) -> Result<Arc<Plugin>, HostError> {
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        let digest = format!("sha256:{}", hex::encode(sha));
        let cell = lock(&self.loaded)
            .entry(digest.clone())
            .or_default()
            .clone();
        let mut fresh = false;
        let result = cell
            .get_or_try_init(|| {
                fresh = true;
                self.load_uncached(origin, &digest, sha, bytes)
            })
            .await;
        match result {
            Ok(plugin) => {
                if !fresh {
                    self.shared
                        .memory_cache_hits
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%origin, %digest, "plugin already loaded");
                }
                if plugin.origin == origin {
                    Ok(plugin.clone())
                } else {
                    Ok(Arc::new(plugin.with_origin(origin)))
                }
            }
            Err(e) => {
                let mut loaded = lock(&self.loaded);
                if loaded.get(&digest).is_some_and(|c| !c.initialized()) {
                    loaded.remove(&digest);
                }
                Err(e)
            }
        }
    }

    /// How many components were compiled, read from disk, or found in memory so far.
    pub fn stats(&self) -> HostStats {
        HostStats {
            compiled: self.shared.compiled.load(Ordering::Relaxed),
            disk_cache_hits: self.shared.disk_cache_hits.load(Ordering::Relaxed),
            memory_cache_hits: self.shared.memory_cache_hits.load(Ordering::Relaxed),
        }
    }

    async fn load_uncached(
        &self,
        origin: &str,
        digest: &str,
        sha: [u8; 32],
        bytes: &[u8],
    ) -> Result<Arc<Plugin>, HostError> {
        let started = Instant::now();
        let invalid = |reason: String| HostError::InvalidComponent {
            origin: origin.to_owned(),
            reason,
        };
        check_header(bytes).map_err(invalid)?;
        let shared = self.shared.clone();
        let owned = bytes.to_vec();
        let (component, loaded_from) =
            tokio::task::spawn_blocking(move || shared.compile_or_read(sha, &owned))
                .await
                .map_err(|e| HostError::Setup(format!("the compile task failed: {e}")))?
                .map_err(invalid)?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let pre = StepPre::new(pre).map_err(|e| {
            invalid(format!(
                "it does not export the `kiln:plugin/step` world: {e:#}"
            ))
        })?;
        let prepared = Prepared::new(self.shared.clone(), pre);
        let info = prepared.describe(origin).await?;
        let prepared = Arc::new(prepared.with_declared(&info));
        tracing::debug!(
            %origin,
            %digest,
            plugin = %info.name,
            version = %info.version,
            ?loaded_from,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "plugin loaded"
        );
        Ok(Arc::new(Plugin {
            origin: origin.to_owned(),
            digest: digest.to_owned(),
            info,
            loaded_from,
            prepared,
        }))
    }
}

impl Shared {
    /// The compiled component, from the disk cache or Cranelift. Blocking.
    fn compile_or_read(
        &self,
        sha: [u8; 32],
        bytes: &[u8],
    ) -> Result<(Component, LoadedFrom), String> {
        let key = self.cache.as_ref().map(|cache| cache.key(&sha));
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            let started = Instant::now();
            if let Some(component) = cache.load(&self.engine, key) {
                self.disk_cache_hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    key = %key,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                    "compiled component read from the disk cache"
                );
                return Ok((component, LoadedFrom::DiskCache));
            }
        }
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "component compiled"
        );
        if let (Some(cache), Some(key)) = (&self.cache, &key) {
            match component.serialize() {
                Ok(compiled) => cache.store(key, &compiled),
                Err(e) => tracing::warn!("cannot serialize a compiled component: {e:#}"),
            }
        }
        Ok((component, LoadedFrom::Compiled))
    }
}

/// Tell the usual wrong inputs apart before the parser does, with a hint at the fix.
fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(
            "it is not WebAssembly (no `\\0asm` header); a plugin is a WASI 0.2 component, \
             for example built with `cargo build --target wasm32-wasip2`"
                .into(),
        );
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return Err(
            "it is a core WebAssembly module, not a component; build it for `wasm32-wasip2` \
             or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_header;

    #[test]
    fn headers_of_non_components_are_explained() {
        assert!(check_header(b"hello").is_err_and(|e| e.contains("not WebAssembly")));
        assert!(check_header(b"\0asm\x01\0\0\0").is_err_and(|e| e.contains("core WebAssembly")));
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
    }
}
