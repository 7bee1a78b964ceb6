//! Kiln's cache stores. Knows nothing of plugins, pipelines or runs: an entry is a key, some
//! JSON metadata and, optionally, an archive of paths under a directory.
//!
//! - [`key`]: explicit, versioned, field-by-field cache keys (never `std::hash::Hash`).
//! - [`local::LocalStore`]: the default store, a directory with atomic writes, verified reads,
//!   a size cap and LRU eviction.
//! - [`registry::RegistryStore`]: entries as OCI artifacts in a registry repository, shared by
//!   several machines; used behind the local store.
//! - [`Cache`]: the two together: look up locally, then in the registry (downloading into the
//!   local store); save locally, then publish.
//! - [`files`]: glob patterns, workspace walks and memoised file digests.
//! - [`archive`]: the tar archives entries restore, unpacked only after verification.
//!
//! Every call blocks (file and network I/O): async callers use `spawn_blocking`.
//!
//! Lookups follow GitHub Actions' cache: an exact key first, then for each restore prefix in
//! order the newest entry whose key starts with it. Entries are immutable: saving a key that
//! exists does nothing.

pub mod archive;
mod digest;
pub mod files;
pub mod key;
pub mod local;
pub mod registry;

use std::path::Path;

use serde_json::Value;

pub use digest::{BadDigest, Digest, digest_file};
pub use local::{Entry, GcReport, Listed, LocalStore, Lookup, Saved};
pub use registry::{RegistryStore, RemoteListed};

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    Io(String),
    #[error("invalid cache key: {0}")]
    InvalidKey(String),
    /// An entry or blob did not verify; it is treated as a miss.
    #[error("corrupt cache entry: {0}")]
    Corrupt(String),
    #[error("cannot save to the cache: {0}")]
    Save(String),
    #[error("cannot restore from the cache: {0}")]
    Restore(String),
    #[error("cache registry `{location}`: {message}")]
    Registry { location: String, message: String },
    #[error("invalid cache registry `{0}`: {1}")]
    Location(String, String),
}

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Registry,
}

/// The result of [`Cache::find`].
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The entry, with where it was found and whether its key is the exact key.
    pub hit: Option<(Entry, Source, bool)>,
    /// Things worth a warning (a corrupt entry removed, an unreachable registry).
    pub notes: Vec<String>,
}

/// The local store, and a registry store behind it.
#[derive(Debug)]
pub struct Cache {
    local: LocalStore,
    remote: Option<RegistryStore>,
}

impl Cache {
    pub fn new(local: LocalStore, remote: Option<RegistryStore>) -> Cache {
        Cache { local, remote }
    }

    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    pub fn remote(&self) -> Option<&RegistryStore> {
        self.remote.as_ref()
    }

    /// The entry for `key`, else for each prefix in order the newest entry whose key starts
    /// with it. Registry entries found are downloaded into the local store.
    pub fn find(&self, key: &str, prefixes: &[String]) -> Found {
        let mut found = Found::default();
        match self.local.lookup(key) {
            Lookup::Hit(e) => {
                found.hit = Some((e, Source::Local, true));
                return found;
            }
            Lookup::Corrupt(why) => found
                .notes
                .push(format!("removed a corrupt local cache entry: {why}")),
            Lookup::Miss => {}
        }
        if let Some(remote) = &self.remote {
            match remote.fetch(key, &self.local) {
                Ok(Some(e)) => {
                    found.hit = Some((e, Source::Registry, true));
                    return found;
                }
                Ok(None) => {}
                Err(e) => found.notes.push(e.to_string()),
            }
        }
        for prefix in prefixes {
            let local = match self.local.lookup_prefix(prefix) {
                Lookup::Hit(e) => Some(e),
                Lookup::Corrupt(why) => {
                    found
                        .notes
                        .push(format!("removed a corrupt local cache entry: {why}"));
                    None
                }
                Lookup::Miss => None,
            };
            // The registry may hold a newer match than this machine.
            if let Some(remote) = &self.remote {
                let newest = match remote.newest(prefix) {
                    Ok(n) => n,
                    Err(e) => {
                        found.notes.push(e.to_string());
                        None
                    }
                };
                let newer = match (&local, &newest) {
                    (Some(l), Some(r)) => {
                        r.created_ms > l.manifest.created_ms && r.key != l.manifest.key
                    }
                    (None, Some(_)) => true,
                    _ => false,
                };
                if newer && let Some(r) = newest {
                    match remote.fetch(&r.key, &self.local) {
                        Ok(Some(e)) => {
                            let exact = e.manifest.key == key;
                            found.hit = Some((e, Source::Registry, exact));
                            return found;
                        }
                        Ok(None) => {}
                        Err(e) => found.notes.push(e.to_string()),
                    }
                }
            }
            if let Some(e) = local {
                let exact = e.manifest.key == key;
                found.hit = Some((e, Source::Local, exact));
                return found;
            }
        }
        found
    }

    /// Restore `entry`'s archive into `dest`.
    pub fn restore(&self, entry: &Entry, dest: &Path) -> Result<archive::Unpacked, CacheError> {
        self.local.restore(entry, dest)
    }

    /// Save an entry locally, then publish it to the registry (a failure to publish is a note,
    /// not an error: the entry is saved).
    pub fn save(
        &self,
        key: &str,
        meta: Value,
        source: Option<(&Path, &[String])>,
    ) -> Result<(Saved, Vec<String>), CacheError> {
        let saved = self.local.save(key, meta, source)?;
        let mut notes = Vec::new();
        if let (Saved::New(entry), Some(remote)) = (&saved, &self.remote)
            && let Err(e) = remote.publish(entry, &self.local)
        {
            notes.push(format!("not shared: {e}"));
        }
        Ok((saved, notes))
    }
}
