//! The on-disk cache of compiled components.
//!
//! A compiled component (`.cwasm`) is only valid for the wasmtime version and configuration
//! that produced it, so the key is `sha256(component bytes, engine compatibility hash)` and the
//! file is `<cache_dir>/<key>.cwasm`, with `<key>.cwasm.sha256` beside it holding the digest
//! of the compiled bytes. Loading maps native code into the process, so a file is only used
//! when its digest matches; a missing, corrupt or incompatible entry is a cache miss and is
//! rewritten, never an error. Writes go to a temporary file renamed into place, so a reader
//! never sees half a file and concurrent writers (several workers) do not conflict.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bump when the layout of the cache changes.
const LAYOUT: &[u8] = b"kiln-cwasm-1";

pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_hash: [u8; 32],
}

impl DiskCache {
    /// Use `dir`, creating it if needed; `None` (with a warning) if it cannot be created.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Option<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(
                dir = %dir.display(),
                "cannot create the plugin cache directory, compiling without a disk cache: {e}"
            );
            return None;
        }
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(DiskCache {
            dir: dir.to_owned(),
            engine_hash: hasher.0.finalize().into(),
        })
    }

    /// The cache key of a component, from the sha256 of its bytes.
    pub(crate) fn key(&self, component_sha256: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(LAYOUT);
        h.update(component_sha256);
        h.update(self.engine_hash);
        hex::encode(h.finalize())
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{key}.cwasm")),
            self.dir.join(format!("{key}.cwasm.sha256")),
        )
    }

    /// The cached compiled component, if there is a sound one. Blocking.
    pub(crate) fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let (file, digest_file) = self.paths(key);
        let expected = match std::fs::read_to_string(&digest_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %digest_file.display(), "cannot read the plugin cache: {e}");
                return None;
            }
        };
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::debug!(file = %file.display(), "compiled component missing: {e}");
                return None;
            }
        };
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(
                file = %file.display(),
                "ignoring a corrupt compiled component in the plugin cache; it will be rewritten"
            );
            return None;
        }
        // SAFETY: the file is a `.cwasm` written by `store` below from `Component::serialize`
        // of this engine's configuration (the key includes its compatibility hash) and its
        // bytes match the digest recorded with it; wasmtime checks version and configuration
        // again. The cache directory must be as trusted as the kiln binary itself.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(
                    file = %file.display(),
                    "ignoring an unusable compiled component in the plugin cache: {e}"
                );
                None
            }
        }
    }

    /// Save a compiled component. Blocking; failures are logged and otherwise ignored.
    pub(crate) fn store(&self, key: &str, compiled: &[u8]) {
        let (file, digest_file) = self.paths(key);
        let digest = hex::encode(Sha256::digest(compiled));
        let result = write_atomically(&file, compiled)
            .and_then(|()| write_atomically(&digest_file, digest.as_bytes()));
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), "cannot write to the plugin cache: {e}");
        }
    }
}

/// Write `bytes` to a temporary file in the same directory, then rename it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Feeds `Hash` input into sha256, to turn wasmtime's compatibility hash into stable bytes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
