//! The host side of the `cache` import: directories saved and restored by key in the host's
//! [`kiln_cache::Cache`] (local store, and a registry store behind it when configured).
//!
//! - Paths must be in the workspace (also through symlinks); restoring writes the workspace, so
//!   it needs the step's `workspace-write` grant. Saving only reads.
//! - An entry belongs to the set of paths it was saved with (as GitHub Actions' cache version):
//!   the store key is `user/<16 hex of sha256 of the sorted paths>/<key>`, so a restore with
//!   other paths, and every restore key's prefix search, stay among entries of the same paths.
//! - A corrupt entry is a miss (the store removed it); the step log says so.
//! - Store work blocks (file and network I/O), so it runs on tokio's blocking pool.

use std::sync::Arc;

use kiln_cache::files::{Patterns, walk};
use kiln_cache::{Cache, CacheError, Saved};
use serde_json::json;

use crate::LogStream;
use crate::access::{AccessError, StepAccess};
use crate::bindings::cache::{self as wit, Host};
use crate::state::StepState;

/// What one step's cache calls may use.
pub(crate) struct CacheScope {
    pub(crate) cache: Arc<Cache>,
    pub(crate) access: Arc<StepAccess>,
}

/// Longest user key.
const MAX_KEY: usize = 512;

fn error(kind: wit::ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

fn from_access(e: AccessError) -> wit::Error {
    match e {
        AccessError::Denied(m) => error(wit::ErrorKind::Denied, m),
        AccessError::Failed(m) => error(wit::ErrorKind::Failed, m),
    }
}

fn from_cache(e: CacheError) -> wit::Error {
    match e {
        CacheError::InvalidKey(m) => error(wit::ErrorKind::Invalid, m),
        other => error(wit::ErrorKind::Failed, other.to_string()),
    }
}

fn check_key(key: &str, what: &str) -> Result<(), wit::Error> {
    if key.trim().is_empty() && what == "key" {
        return Err(error(wit::ErrorKind::Invalid, "the cache key is empty"));
    }
    if key.len() > MAX_KEY {
        return Err(error(
            wit::ErrorKind::Invalid,
            format!(
                "the {what} is {} bytes long, at most {MAX_KEY} are allowed",
                key.len()
            ),
        ));
    }
    if key.contains(',') || key.chars().any(char::is_control) {
        return Err(error(
            wit::ErrorKind::Invalid,
            format!("the {what} `{key}` contains `,` or control characters, which keys may not"),
        ));
    }
    Ok(())
}

fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

impl CacheScope {
    /// The paths relative to the workspace, `/`-separated, checked against the grants. Globs
    /// are checked on their literal prefix.
    fn relative(&self, paths: &[String]) -> Result<Vec<String>, wit::Error> {
        if paths.is_empty() {
            return Err(error(
                wit::ErrorKind::Invalid,
                "no paths: list what the entry holds",
            ));
        }
        let mut out = Vec::new();
        for p in paths {
            let rel = p
                .strip_prefix(crate::GUEST_WORKSPACE)
                .filter(|r| r.is_empty() || r.starts_with('/'))
                .unwrap_or(p)
                .trim_start_matches('/');
            // Refuses `..` and symlinks that lead out (for a glob: its literal directory).
            let literal: Vec<&str> = rel.split('/').take_while(|s| !is_glob(s)).collect();
            self.access
                .host_path(&literal.join("/"))
                .map_err(from_access)?;
            let normalized = kiln_cache::archive::normalize_relative(rel)
                .map_err(|e| error(wit::ErrorKind::Denied, e.to_string()))?;
            if normalized.is_empty() {
                return Err(error(
                    wit::ErrorKind::Invalid,
                    format!("path `{p}` is the whole workspace; name the directories to cache"),
                ));
            }
            out.push(normalized);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn namespace(paths: &[String]) -> String {
        let joined = paths.join("\n");
        let hex = kiln_cache::Digest::of(joined.as_bytes()).hex();
        format!("user/{}/", &hex[..16])
    }

    fn log(&self, stream: LogStream, line: &str) {
        self.access.log.message(stream, line);
    }
}

impl StepState {
    fn cache_scope(&self) -> Result<&CacheScope, wit::Error> {
        self.cache.as_ref().ok_or_else(|| {
            error(
                wit::ErrorKind::Denied,
                "the cache is not available here (only while a step runs, on a host with a cache store)",
            )
        })
    }
}

impl Host for StepState {
    async fn restore(
        &mut self,
        request: wit::RestoreRequest,
    ) -> Result<wit::RestoreResult, wit::Error> {
        let scope = self.cache_scope()?;
        if !scope.access.workspace_write {
            return Err(error(
                wit::ErrorKind::Denied,
                "restoring a cache writes to the workspace, which this step may only read\n  hint: add `allow: { workspace: write }` to the step",
            ));
        }
        check_key(&request.key, "key")?;
        for k in &request.restore_keys {
            check_key(k, "restore key")?;
        }
        let paths = scope.relative(&request.paths)?;
        let ns = CacheScope::namespace(&paths);
        let key = format!("{ns}{}", request.key);
        let prefixes: Vec<String> = request
            .restore_keys
            .iter()
            .map(|k| format!("{ns}{k}"))
            .collect();
        let cache = scope.cache.clone();
        let workspace = scope.access.workspace.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let found = cache.find(&key, &prefixes);
            let restored = found
                .hit
                .as_ref()
                .map(|(entry, _, _)| cache.restore(entry, &workspace));
            (found, restored)
        })
        .await
        .map_err(|e| {
            error(
                wit::ErrorKind::Failed,
                format!("the cache task failed: {e}"),
            )
        })?;
        let (found, restored) = outcome;
        for note in &found.notes {
            scope.log(LogStream::Warn, note);
        }
        let miss = wit::RestoreResult {
            matched_key: None,
            exact: false,
            entries: 0,
            size: 0,
        };
        match (found.hit, restored) {
            (Some((entry, source, exact)), Some(Ok(unpacked))) => {
                if source == kiln_cache::Source::Registry {
                    scope.log(
                        LogStream::Info,
                        &format!(
                            "downloaded from the cache registry {}",
                            scope.cache.remote().map_or(String::new(), |r| r.location())
                        ),
                    );
                }
                let matched = entry
                    .manifest
                    .key
                    .strip_prefix(&ns)
                    .unwrap_or(&entry.manifest.key)
                    .to_owned();
                Ok(wit::RestoreResult {
                    matched_key: Some(matched),
                    exact,
                    entries: unpacked.entries,
                    size: unpacked.size,
                })
            }
            (Some(_), Some(Err(CacheError::Corrupt(why)))) => {
                scope.log(
                    LogStream::Warn,
                    &format!(
                        "the cache entry was corrupt and is removed ({why}); treating it as a miss"
                    ),
                );
                Ok(miss)
            }
            (Some(_), Some(Err(e))) => Err(from_cache(e)),
            _ => Ok(miss),
        }
    }

    async fn save(&mut self, request: wit::SaveRequest) -> Result<wit::SaveResult, wit::Error> {
        let scope = self.cache_scope()?;
        check_key(&request.key, "key")?;
        let paths = scope.relative(&request.paths)?;
        let ns = CacheScope::namespace(&paths);
        let key = format!("{ns}{}", request.key);
        let cache = scope.cache.clone();
        let workspace = scope.access.workspace.clone();
        let saved = tokio::task::spawn_blocking(move || {
            // Globs name files; other paths are taken whole (directories with their content).
            let (globs, plain): (Vec<String>, Vec<String>) =
                paths.iter().cloned().partition(|p| is_glob(p));
            let mut members = plain;
            if !globs.is_empty() {
                let patterns =
                    Patterns::new(&globs).map_err(|e| CacheError::InvalidKey(e.to_string()))?;
                let files = walk(&workspace, Some(&patterns))
                    .map_err(|e| CacheError::Io(format!("cannot list the workspace: {e}")))?;
                members.extend(files.into_iter().map(|f| f.rel));
            }
            let missing: Vec<&String> = members
                .iter()
                .filter(|m| std::fs::symlink_metadata(workspace.join(m)).is_err())
                .collect();
            let missing: Vec<String> = missing.into_iter().cloned().collect();
            let meta = json!({ "paths": paths });
            cache
                .save(&key, meta, Some((&workspace, &members)))
                .map(|s| (s, missing))
        })
        .await
        .map_err(|e| {
            error(
                wit::ErrorKind::Failed,
                format!("the cache task failed: {e}"),
            )
        })?;
        let ((saved, notes), missing) = saved.map_err(|e| match e {
            CacheError::InvalidKey(m) => error(wit::ErrorKind::Invalid, m),
            other => from_cache(other),
        })?;
        for m in &missing {
            scope.log(
                LogStream::Warn,
                &format!("path `{m}` does not exist; saved without it"),
            );
        }
        for note in &notes {
            scope.log(LogStream::Warn, note);
        }
        Ok(match saved {
            Saved::New(e) => wit::SaveResult {
                saved: true,
                entries: e.manifest.archive.map_or(0, |a| a.entries),
                size: e.size,
            },
            Saved::Exists(e) => {
                scope.log(
                    LogStream::Info,
                    &format!(
                        "`{}` is already cached (entries are immutable); nothing saved",
                        request.key
                    ),
                );
                wit::SaveResult {
                    saved: false,
                    entries: e.manifest.archive.map_or(0, |a| a.entries),
                    size: e.size,
                }
            }
            Saved::TooLarge { size, max } => {
                scope.log(
                    LogStream::Warn,
                    &format!(
                        "not saved: the entry would take {size} bytes, more than the cache's limit of {max} (`KILN_CACHE_MAX_MB`)"
                    ),
                );
                wit::SaveResult {
                    saved: false,
                    entries: 0,
                    size,
                }
            }
        })
    }
}
