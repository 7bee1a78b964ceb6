//! The local store: a directory of content-addressed blobs and one small ref file per key.
//!
//! ```text
//! <root>/v1/blobs/sha256/<hex>   manifests and archives, named by their sha256
//! <root>/v1/refs/<sha256(key)>   {"key", "manifest", "created_ms"}; its mtime is the last use
//! <root>/v1/tmp/                 files being written (renamed into blobs/ or refs/)
//! <root>/v1/lock                 shared while saving or restoring, exclusive while collecting
//! ```
//!
//! - **Atomic writes**: every file is written under `tmp/` and renamed into place, so a reader
//!   never sees half a file and two writers of the same key never mix their bytes: the last
//!   rename wins and both versions are whole. Nothing is fsynced: a file torn by a crash fails
//!   its digest check and is then a miss.
//! - **Verified reads**: a manifest's bytes must hash to the digest its ref names, its `key`
//!   must be the key asked for, and an archive must hash to its recorded digest before anything
//!   of it becomes visible (see [`crate::archive::unpack`]). Anything else is a miss, and the
//!   entry is removed, never restored.
//! - **Size cap, LRU**: after a save that leaves the blobs above the cap, entries are evicted
//!   least recently used first (a hit touches the ref) until the blobs fit; blobs no entry
//!   references are deleted. An entry larger than the cap is not saved.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::archive::{self, ArchiveError, Unpacked};
use crate::digest::HashingWriter;
use crate::{CacheError, Digest};

/// The media type of an entry's manifest (also its OCI config blob).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.kiln.cache.entry.v1+json";
/// The media type of an entry's archive (an uncompressed tar).
pub const ARCHIVE_MEDIA_TYPE: &str = "application/vnd.kiln.cache.archive.v1.tar";
/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// The archive an entry restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    pub digest: Digest,
    pub size: u64,
    /// Files, directories and symlinks in it.
    pub entries: u64,
}

/// What an entry holds: its key, when it was made, metadata (a step's outputs), an archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub meta: Value,
    pub archive: Option<ArchiveRef>,
}

/// A verified entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// Bytes of the manifest and the archive.
    pub size: u64,
}

/// One line of [`LocalStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub key: String,
    pub created_ms: u64,
    pub last_used: SystemTime,
    pub size: u64,
    pub entries: u64,
}

/// The ref file of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefFile {
    key: String,
    manifest: Digest,
    created_ms: u64,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved {
    /// A new entry.
    New(Entry),
    /// An entry with this key already exists; entries are immutable, so nothing was written.
    Exists(Entry),
    /// The entry would be larger than the store's cap.
    TooLarge { size: u64, max: u64 },
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Entry),
    Miss,
    /// The entry was there but did not verify; it was removed. The text says why.
    Corrupt(String),
}

/// What a collection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    pub evicted: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    pub bytes_kept: u64,
}

/// The local directory store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    max_bytes: u64,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn io(what: &str, path: &Path, e: io::Error) -> CacheError {
    CacheError::Io(format!("{what} `{}`: {e}", path.display()))
}

/// Hex of the sha256 of a key: its ref file name.
fn ref_name(key: &str) -> String {
    Digest::of(key.as_bytes()).hex()
}

/// A lock on `<root>/v1/lock`, released on drop.
struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl LocalStore {
    /// Open (creating if needed) the store under `root`, capped at `max_bytes`.
    pub fn open(root: &Path, max_bytes: u64) -> Result<LocalStore, CacheError> {
        let store = LocalStore {
            root: root.join("v1"),
            max_bytes,
        };
        for dir in [store.blobs_dir(), store.refs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        }
        Ok(store)
    }

    /// The directory given to [`LocalStore::open`].
    pub fn root(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where blob `digest` is (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    fn lock(&self, exclusive: bool) -> Result<Lock, CacheError> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, e))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| io("cannot lock", &path, e))?;
        Ok(Lock(file))
    }

    fn tmp_file(&self) -> Result<(PathBuf, File), CacheError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = self.tmp_dir().join(format!(
            "{}-{}-{}",
            std::process::id(),
            now_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create_new(&path).map_err(|e| io("cannot create", &path, e))?;
        Ok((path, file))
    }

    /// Move a finished temp file to `to` (atomically replacing it).
    fn place(&self, tmp: &Path, to: &Path) -> Result<(), CacheError> {
        fs::rename(tmp, to).map_err(|e| {
            let _ = fs::remove_file(tmp);
            io("cannot move into place", to, e)
        })
    }

    /// Write `bytes` as a blob; returns its digest.
    fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, CacheError> {
        let digest = Digest::of(bytes);
        let dest = self.blob_path(&digest);
        if dest.exists() {
            return Ok(digest);
        }
        let (tmp, mut file) = self.tmp_file()?;
        file.write_all(bytes)
            .map_err(|e| io("cannot write", &tmp, e))?;
        drop(file);
        self.place(&tmp, &dest)?;
        Ok(digest)
    }

    /// Copy `reader` into a blob, checking that it is `expected` (`size` bytes).
    pub fn put_verified(
        &self,
        reader: &mut dyn Read,
        expected: &Digest,
        size: u64,
    ) -> Result<(), CacheError> {
        let dest = self.blob_path(expected);
        let (tmp, file) = self.tmp_file()?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        let copied = io::copy(reader, &mut w).and_then(|_| w.flush());
        let (digest, n, inner) = w.finish();
        drop(inner);
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::Io(format!(
                "cannot download blob {expected}: {e}"
            )));
        }
        if digest != *expected || n != size {
            let _ = fs::remove_file(&tmp);
            return Err(CacheError::Corrupt(format!(
                "blob {expected} arrived as {digest} ({n} bytes instead of {size})"
            )));
        }
        self.place(&tmp, &dest)
    }

    fn read_ref(&self, path: &Path) -> Result<Option<RefFile>, String> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("its ref file is not valid: {e}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read its ref file: {e}")),
        }
    }

    /// Read and verify the entry a ref file names.
    fn entry_of(&self, r: &RefFile) -> Result<Entry, String> {
        let path = self.blob_path(&r.manifest);
        let bytes =
            fs::read(&path).map_err(|e| format!("its manifest {} is missing: {e}", r.manifest))?;
        if Digest::of(&bytes) != r.manifest {
            return Err(format!(
                "its manifest does not match its digest {}",
                r.manifest
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("its manifest is not valid: {e}"))?;
        if manifest.key != r.key || manifest.media_type != MANIFEST_MEDIA_TYPE {
            return Err("its manifest belongs to another key".to_owned());
        }
        let mut size = bytes.len() as u64;
        if let Some(a) = &manifest.archive {
            let len = fs::metadata(self.blob_path(&a.digest))
                .map_err(|e| format!("its archive {} is missing: {e}", a.digest))?
                .len();
            if len != a.size {
                return Err(format!(
                    "its archive {} has {len} bytes instead of {}",
                    a.digest, a.size
                ));
            }
            size += a.size;
        }
        Ok(Entry {
            manifest_digest: r.manifest,
            manifest,
            size,
        })
    }

    fn touch(path: &Path) {
        if let Ok(f) = File::options().write(true).open(path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// The entry saved under exactly `key`.
    pub fn lookup(&self, key: &str) -> Lookup {
        let path = self.refs_dir().join(ref_name(key));
        let found = self.read_ref(&path).and_then(|r| match r {
            None => Ok(None),
            Some(r) if r.key != key => Err("its ref file names another key".to_owned()),
            Some(r) => self.entry_of(&r).map(Some),
        });
        match found {
            Ok(Some(entry)) => {
                Self::touch(&path);
                Lookup::Hit(entry)
            }
            Ok(None) => Lookup::Miss,
            Err(why) => {
                tracing::warn!(%key, "removing a broken cache entry: {why}");
                let _ = fs::remove_file(&path);
                Lookup::Corrupt(why)
            }
        }
    }

    /// The newest entry whose key starts with `prefix`.
    pub fn lookup_prefix(&self, prefix: &str) -> Lookup {
        let mut candidates: Vec<RefFile> = self
            .refs()
            .into_iter()
            .filter_map(|(_, r)| r)
            .filter(|r| r.key.starts_with(prefix))
            .collect();
        candidates.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.key.cmp(&a.key)));
        let mut corrupt = None;
        for c in candidates {
            match self.lookup(&c.key) {
                Lookup::Hit(e) => return Lookup::Hit(e),
                Lookup::Corrupt(why) => corrupt = Some(why),
                Lookup::Miss => {}
            }
        }
        corrupt.map_or(Lookup::Miss, Lookup::Corrupt)
    }

    /// Every ref file, parsed (`None` when unreadable).
    fn refs(&self) -> Vec<(PathBuf, Option<RefFile>)> {
        let Ok(dir) = fs::read_dir(self.refs_dir()) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .map(|e| {
                let path = e.path();
                let r = self.read_ref(&path).ok().flatten();
                (path, r)
            })
            .collect()
    }

    /// Restore `entry`'s archive into `dest`. A corrupt archive removes the entry.
    pub fn restore(&self, entry: &Entry, dest: &Path) -> Result<Unpacked, CacheError> {
        let Some(a) = &entry.manifest.archive else {
            return Ok(Unpacked::default());
        };
        let _lock = self.lock(false)?;
        let blob = self.blob_path(&a.digest);
        match archive::unpack(&blob, a.digest, a.size, dest) {
            Ok(u) => Ok(u),
            Err(ArchiveError::Corrupt { .. }) | Err(ArchiveError::Unreadable(_)) => {
                let why = format!("archive {} does not match its digest", a.digest);
                tracing::warn!(key = %entry.manifest.key, "removing a corrupt cache entry: {why}");
                let _ = fs::remove_file(self.refs_dir().join(ref_name(&entry.manifest.key)));
                let _ = fs::remove_file(&blob);
                Err(CacheError::Corrupt(why))
            }
            Err(e) => Err(CacheError::Restore(e.to_string())),
        }
    }

    /// Save `meta` and, when `source` is given, the archive of `paths` under `root`, as `key`.
    /// Nothing is written when `key` already has an entry.
    pub fn save(
        &self,
        key: &str,
        meta: Value,
        source: Option<(&Path, &[String])>,
    ) -> Result<Saved, CacheError> {
        check_key(key)?;
        if let Lookup::Hit(e) = self.lookup(key) {
            return Ok(Saved::Exists(e));
        }
        let saved = {
            let _lock = self.lock(false)?;
            let archive = match source {
                Some((root, paths)) => {
                    let (tmp, file) = self.tmp_file()?;
                    let packed = match archive::pack(root, paths, file) {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = fs::remove_file(&tmp);
                            return Err(CacheError::Save(e.to_string()));
                        }
                    };
                    if packed.size > self.max_bytes {
                        let _ = fs::remove_file(&tmp);
                        return Ok(Saved::TooLarge {
                            size: packed.size,
                            max: self.max_bytes,
                        });
                    }
                    let dest = self.blob_path(&packed.digest);
                    if dest.exists() {
                        let _ = fs::remove_file(&tmp);
                    } else {
                        self.place(&tmp, &dest)?;
                    }
                    Some(ArchiveRef {
                        digest: packed.digest,
                        size: packed.size,
                        entries: packed.entries,
                    })
                }
                None => None,
            };
            let manifest = Manifest {
                media_type: MANIFEST_MEDIA_TYPE.to_owned(),
                key: key.to_owned(),
                created_ms: now_ms(),
                meta,
                archive,
            };
            let bytes = serde_json::to_vec(&manifest)
                .map_err(|e| CacheError::Save(format!("cannot encode the manifest: {e}")))?;
            let digest = self.put_bytes(&bytes)?;
            self.write_ref(key, digest, manifest.created_ms)?;
            Entry {
                manifest_digest: digest,
                size: bytes.len() as u64 + archive.map_or(0, |a| a.size),
                manifest,
            }
        };
        if self.blobs_size() > self.max_bytes {
            self.gc(self.max_bytes)?;
        }
        Ok(Saved::New(saved))
    }

    /// Point `key` at the manifest blob `manifest` (which must exist: see [`Self::import`]).
    fn write_ref(&self, key: &str, manifest: Digest, created_ms: u64) -> Result<(), CacheError> {
        let r = RefFile {
            key: key.to_owned(),
            manifest,
            created_ms,
        };
        let bytes = serde_json::to_vec(&r)
            .map_err(|e| CacheError::Save(format!("cannot encode a ref: {e}")))?;
        let (tmp, mut file) = self.tmp_file()?;
        file.write_all(&bytes)
            .map_err(|e| io("cannot write", &tmp, e))?;
        drop(file);
        self.place(&tmp, &self.refs_dir().join(ref_name(key)))
    }

    /// Add an entry whose blobs were fetched from elsewhere (the registry store): the manifest
    /// bytes are checked, its archive must already be in the store.
    pub fn import(&self, manifest_bytes: &[u8]) -> Result<Entry, CacheError> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| CacheError::Corrupt(format!("the manifest is not valid: {e}")))?;
        check_key(&manifest.key)?;
        let _lock = self.lock(false)?;
        let digest = self.put_bytes(manifest_bytes)?;
        self.write_ref(&manifest.key, digest, manifest.created_ms)?;
        let r = RefFile {
            key: manifest.key.clone(),
            manifest: digest,
            created_ms: manifest.created_ms,
        };
        self.entry_of(&r).map_err(CacheError::Corrupt)
    }

    /// Every entry, most recently used first.
    pub fn list(&self) -> Vec<Listed> {
        let mut out: Vec<Listed> = self
            .refs()
            .into_iter()
            .filter_map(|(path, r)| {
                let r = r?;
                let entry = self.entry_of(&r).ok()?;
                let last_used = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .unwrap_or(UNIX_EPOCH);
                Some(Listed {
                    key: r.key,
                    created_ms: r.created_ms,
                    last_used,
                    size: entry.size,
                    entries: entry.manifest.archive.map_or(0, |a| a.entries),
                })
            })
            .collect();
        out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
        out
    }

    /// Remove the entries whose key is `key` (or starts with it, with `prefix`); returns how
    /// many, and frees blobs nothing references any more.
    pub fn remove(&self, key: &str, prefix: bool) -> Result<u64, CacheError> {
        let mut removed = 0;
        {
            let _lock = self.lock(true)?;
            for (path, r) in self.refs() {
                let Some(r) = r else { continue };
                if r.key == key || (prefix && r.key.starts_with(key)) {
                    fs::remove_file(&path).map_err(|e| io("cannot remove", &path, e))?;
                    removed += 1;
                }
            }
        }
        self.gc(self.max_bytes)?;
        Ok(removed)
    }

    /// Total bytes of the blobs.
    pub fn blobs_size(&self) -> u64 {
        fs::read_dir(self.blobs_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Evict least recently used entries until the blobs fit in `max_bytes`, and delete blobs,
    /// refs and temp files that nothing uses.
    pub fn gc(&self, max_bytes: u64) -> Result<GcReport, CacheError> {
        let _lock = self.lock(true)?;
        let mut report = GcReport::default();
        // Live entries with the blobs they use, oldest use first.
        let mut live: Vec<(PathBuf, SystemTime, Vec<Digest>)> = Vec::new();
        for (path, r) in self.refs() {
            let entry = r.as_ref().map(|r| self.entry_of(r));
            match entry {
                Some(Ok(e)) => {
                    let used = fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .unwrap_or(UNIX_EPOCH);
                    let mut blobs = vec![e.manifest_digest];
                    blobs.extend(e.manifest.archive.map(|a| a.digest));
                    live.push((path, used, blobs));
                }
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        live.sort_by_key(|a| a.1);
        let size_of = |d: &Digest| fs::metadata(self.blob_path(d)).map_or(0, |m| m.len());
        let mut counts: std::collections::HashMap<Digest, (u64, u64)> = Default::default();
        for (_, _, blobs) in &live {
            for b in blobs {
                counts.entry(*b).or_insert((0, size_of(b))).0 += 1;
            }
        }
        let mut total: u64 = counts.values().map(|(_, s)| s).sum();
        let mut i = 0;
        while total > max_bytes && i < live.len() {
            let (path, _, blobs) = &live[i];
            if fs::remove_file(path).is_ok() {
                report.evicted += 1;
                for b in blobs {
                    if let Some((n, s)) = counts.get_mut(b) {
                        *n -= 1;
                        if *n == 0 {
                            total = total.saturating_sub(*s);
                        }
                    }
                }
            }
            i += 1;
        }
        counts.retain(|_, (n, _)| *n > 0);
        if let Ok(dir) = fs::read_dir(self.blobs_dir()) {
            for e in dir.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = format!("sha256:{name}")
                    .parse::<Digest>()
                    .is_ok_and(|d| counts.contains_key(&d));
                if !keep {
                    let len = e.metadata().map_or(0, |m| m.len());
                    if fs::remove_file(e.path()).is_ok() {
                        report.blobs_removed += 1;
                        report.bytes_freed += len;
                    }
                }
            }
        }
        // No save is running (they hold the lock shared): every temp file is a leftover.
        if let Ok(dir) = fs::read_dir(self.tmp_dir()) {
            for e in dir.filter_map(Result::ok) {
                let _ = fs::remove_file(e.path());
            }
        }
        report.bytes_kept = total;
        Ok(report)
    }
}

/// Keys are non-empty and at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() {
        return Err(CacheError::InvalidKey("the key is empty".to_owned()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CacheError::InvalidKey(format!(
            "the key is {} bytes long, more than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(CacheError::InvalidKey(
            "the key contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// How long ago `t` was, for listings.
pub fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(dir: &Path, max: u64) -> LocalStore {
        LocalStore::open(dir, max).unwrap_or_else(|e| panic!("{e}"))
    }

    fn workspace() -> tempfile::TempDir {
        let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(ws.path().join("out")).unwrap_or_default();
        fs::write(ws.path().join("out/a"), "alpha").unwrap_or_default();
        ws
    }

    #[test]
    fn a_saved_entry_is_found_and_restored_and_saving_again_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = store(dir.path(), 1 << 30);
        let ws = workspace();
        let paths = vec!["out".to_owned()];
        let saved = s
            .save("k1", json!({ "x": 1 }), Some((ws.path(), &paths)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(saved, Saved::New(_)));
        let again = s.save("k1", json!({ "x": 2 }), Some((ws.path(), &paths)));
        assert!(matches!(again, Ok(Saved::Exists(_))));
        let Lookup::Hit(entry) = s.lookup("k1") else {
            panic!("no hit")
        };
        assert_eq!(entry.manifest.meta, json!({ "x": 1 }));
        let dest = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        s.restore(&entry, dest.path())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fs::read_to_string(dest.path().join("out/a")).unwrap_or_default(),
            "alpha"
        );
        assert_eq!(s.lookup("k2"), Lookup::Miss);
    }

    #[test]
    fn a_prefix_finds_the_newest_matching_entry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = store(dir.path(), 1 << 30);
        for k in ["deps-linux-1", "deps-linux-2", "deps-mac-3"] {
            s.save(k, json!(k), None).unwrap_or_else(|e| panic!("{e}"));
            std::thread::sleep(Duration::from_millis(5));
        }
        let found = |p: &str| match s.lookup_prefix(p) {
            Lookup::Hit(e) => Some(e.manifest.key),
            _ => None,
        };
        assert_eq!(found("deps-linux-").as_deref(), Some("deps-linux-2"));
        assert_eq!(found("deps-").as_deref(), Some("deps-mac-3"));
        assert_eq!(found("other"), None);
    }

    #[test]
    fn a_corrupted_manifest_or_archive_is_a_miss_and_is_removed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = store(dir.path(), 1 << 30);
        let ws = workspace();
        let paths = vec!["out".to_owned()];
        let Ok(Saved::New(entry)) = s.save("k", json!(1), Some((ws.path(), &paths))) else {
            panic!("not saved")
        };
        // Same size, one byte changed: only the digest can tell.
        let archive = entry
            .manifest
            .archive
            .map(|a| s.blob_path(&a.digest))
            .unwrap_or_default();
        let mut bytes = fs::read(&archive).unwrap_or_default();
        bytes[1030] ^= 1;
        fs::write(&archive, &bytes).unwrap_or_default();
        let Lookup::Hit(entry) = s.lookup("k") else {
            panic!("the manifest is still sound")
        };
        let dest = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            s.restore(&entry, dest.path()),
            Err(CacheError::Corrupt(_))
        ));
        assert_eq!(fs::read_dir(dest.path()).map(|d| d.count()).unwrap_or(9), 0);
        assert_eq!(s.lookup("k"), Lookup::Miss, "removed");

        s.save("m", json!("meta"), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let Lookup::Hit(m) = s.lookup("m") else {
            panic!("no hit")
        };
        let path = s.blob_path(&m.manifest_digest);
        let text = fs::read_to_string(&path)
            .unwrap_or_default()
            .replace("meta", "mEta");
        fs::write(&path, text).unwrap_or_default();
        assert!(matches!(s.lookup("m"), Lookup::Corrupt(_)));
        assert_eq!(s.lookup("m"), Lookup::Miss);
    }

    #[test]
    fn eviction_keeps_the_store_under_its_cap_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = store(dir.path(), 50_000);
        let ws = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for i in 0..4 {
            fs::write(ws.path().join(format!("f{i}")), vec![i as u8; 15_000]).unwrap_or_default();
        }
        let save = |i: usize| {
            let paths = vec![format!("f{i}")];
            s.save(&format!("k{i}"), json!(i), Some((ws.path(), &paths)))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        save(0);
        save(1);
        // Use k0 so that k1 is the least recently used.
        std::thread::sleep(Duration::from_millis(20));
        assert!(matches!(s.lookup("k0"), Lookup::Hit(_)));
        std::thread::sleep(Duration::from_millis(20));
        save(2);
        save(3);
        assert!(s.blobs_size() <= 50_000, "{}", s.blobs_size());
        assert_eq!(s.lookup("k1"), Lookup::Miss, "least recently used");
        assert!(matches!(s.lookup("k3"), Lookup::Hit(_)));
        let big = vec!["f0".to_owned(), "f1".into(), "f2".into(), "f3".into()];
        assert!(matches!(
            s.save("big", json!(0), Some((ws.path(), &big))),
            Ok(Saved::TooLarge { .. })
        ));
    }

    #[test]
    fn remove_by_key_or_prefix_frees_the_blobs() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = store(dir.path(), 1 << 30);
        let ws = workspace();
        let paths = vec!["out".to_owned()];
        for k in ["a-1", "a-2", "b-1"] {
            s.save(k, json!(k), Some((ws.path(), &paths)))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(s.list().len(), 3);
        assert_eq!(s.remove("a-", true).ok(), Some(2));
        assert_eq!(s.remove("b-1", false).ok(), Some(1));
        assert!(s.list().is_empty());
        assert_eq!(s.blobs_size(), 0);
    }

    #[test]
    fn keys_must_be_short_and_printable() {
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("npm-linux-x64-abc").is_ok());
    }
}
