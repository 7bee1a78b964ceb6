//! The mirror cache: one bare repository per remote, locked while in use, trimmed by least
//! recent use.
//!
//! Layout under the cache directory, for each remote: `<key>.git/` (the bare mirror; its
//! config records `kiln.url`), `<key>.lock` (the lock file; held exclusively while a clone
//! fetches into the mirror and links objects out of it, and by eviction), and the mirror's
//! `kiln-used` file, whose mtime is the last use. `<key>` is the first 16 bytes of the SHA-256
//! of the remote's canonical URL, in hex, after a readable slug.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{Git, GitError, RemoteUrl};

/// A mirror held under its lock; dropping it releases the lock.
pub(crate) struct Locked {
    pub(crate) path: PathBuf,
    _lock: File,
}

/// One mirror in the cache, for `kiln cache ls`.
#[derive(Debug, Clone)]
pub struct MirrorInfo {
    /// The remote's URL as first cloned (no credentials).
    pub url: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub last_used: Option<SystemTime>,
}

pub(crate) fn key(url: &RemoteUrl) -> String {
    let canonical = url.canonical();
    let digest = Sha256::digest(canonical.as_bytes());
    let slug: String = canonical
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(32)
        .collect();
    format!("{slug}-{}", hex::encode(&digest[..16]))
}

impl Git {
    /// Opens (creating if needed) the mirror of `url` and locks it for this process.
    pub(crate) fn lock_mirror(&self, url: &RemoteUrl) -> Result<Locked, GitError> {
        let dir = &self.config.mirror_dir;
        fs::create_dir_all(dir)
            .map_err(|e| GitError::other(format!("create `{}`", dir.display()), e))?;
        let key = key(url);
        let lock_path = dir.join(format!("{key}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| GitError::other(format!("open `{}`", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| GitError::other(format!("lock `{}`", lock_path.display()), e))?;
        let path = dir.join(format!("{key}.git"));
        let fresh = !path.join("HEAD").is_file();
        if fresh {
            // A half-created mirror (a crash during init) is started over.
            let _ = fs::remove_dir_all(&path);
            let repo = git2::Repository::init_bare(&path)
                .map_err(|e| GitError::other(format!("create mirror `{}`", path.display()), e))?;
            let mut cfg = repo
                .config()
                .map_err(|e| GitError::other("mirror config", e))?;
            cfg.set_str("kiln.url", &url.to_string())
                .map_err(|e| GitError::other("mirror config", e))?;
        }
        touch(&path.join("kiln-used"));
        Ok(Locked { path, _lock: lock })
    }

    /// Every mirror in the cache.
    pub fn mirrors(&self) -> Result<Vec<MirrorInfo>, GitError> {
        let dir = &self.config.mirror_dir;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(GitError::other(format!("read `{}`", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "git") {
                continue;
            }
            let url = git2::Repository::open_bare(&path)
                .ok()
                .and_then(|r| r.config().ok())
                .and_then(|c| c.get_string("kiln.url").ok())
                .unwrap_or_else(|| "(unknown)".into());
            let last_used = fs::metadata(path.join("kiln-used"))
                .and_then(|m| m.modified())
                .ok();
            out.push(MirrorInfo {
                url,
                bytes: dir_size(&path),
                path,
                last_used,
            });
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.last_used));
        Ok(out)
    }

    /// Removes mirrors, least recently used first, until the cache fits `max_bytes`; mirrors
    /// in use by another clone are skipped. Returns the bytes freed.
    pub fn trim_mirrors(&self, max_bytes: u64) -> Result<u64, GitError> {
        let mut mirrors = self.mirrors()?;
        let mut total: u64 = mirrors.iter().map(|m| m.bytes).sum();
        let mut freed = 0;
        mirrors.reverse(); // oldest first
        for m in mirrors {
            if total <= max_bytes {
                break;
            }
            let lock_path = m.path.with_extension("lock");
            let Ok(lock) = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
            else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // someone is cloning from it
            }
            if fs::remove_dir_all(&m.path).is_ok() {
                total = total.saturating_sub(m.bytes);
                freed += m.bytes;
                tracing::debug!(url = %m.url, bytes = m.bytes, "evicted git mirror");
            }
            // The lock file stays: removing it would let two processes lock different files.
            drop(lock);
        }
        Ok(freed)
    }

    /// Removes every mirror not in use; returns the bytes freed.
    pub fn clear_mirrors(&self) -> Result<u64, GitError> {
        self.trim_mirrors(0)
    }
}

fn touch(path: &Path) {
    let _ = File::create(path);
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// Makes every object file of `from` (a repository's `objects/` dir) present in `to`: hard
/// links where possible, copies otherwise. Files already present are left alone (object and
/// pack files are immutable and named by content).
pub(crate) fn link_objects(from: &Path, to: &Path) -> Result<u64, GitError> {
    let mut linked = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let src_dir = from.join(&rel);
        let entries = fs::read_dir(&src_dir)
            .map_err(|e| GitError::other(format!("read `{}`", src_dir.display()), e))?;
        let dst_dir = to.join(&rel);
        fs::create_dir_all(&dst_dir)
            .map_err(|e| GitError::other(format!("create `{}`", dst_dir.display()), e))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let rel_child = rel.join(&name);
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                if rel.as_os_str().is_empty() && name == "info" {
                    continue; // alternates and the like belong to the mirror
                }
                stack.push(rel_child);
                continue;
            }
            let name_str = name.to_string_lossy();
            if name_str.starts_with("tmp") || name_str.ends_with(".lock") {
                continue;
            }
            let dst = to.join(&rel_child);
            if dst.exists() {
                continue;
            }
            if fs::hard_link(e.path(), &dst).is_err() {
                fs::copy(e.path(), &dst)
                    .map_err(|err| GitError::other(format!("copy `{}`", dst.display()), err))?;
            }
            linked += 1;
        }
    }
    Ok(linked)
}
