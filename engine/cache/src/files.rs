//! The files a cache key or an archive covers: glob patterns over a directory, walked without
//! following symlinks, and their content digests (memoised by file identity and times, the way
//! git's index avoids rehashing unchanged files).
//!
//! # Patterns
//! Relative to the directory, `/`-separated, with `*` (within one path segment), `**` (any number
//! of segments), `?`, `[abc]`, `{a,b}`. A pattern naming a directory covers everything below it
//! (`src` is `src` and `src/**`). A pattern starting with `!` excludes what it matches
//! (`!**/*.log`). Absolute patterns and `..` are refused: a pattern cannot reach outside.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::Digest;
use crate::archive::STAGING_PREFIX;
use crate::digest::digest_file;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern `{0}` is empty")]
    Empty(String),
    #[error("pattern `{0}` leaves the workspace: write it relative to the workspace, without `..`")]
    Outside(String),
    #[error("pattern `{pattern}` is not a valid glob: {reason}")]
    Invalid { pattern: String, reason: String },
}

/// Compiled include and exclude patterns.
#[derive(Debug, Clone)]
pub struct Patterns {
    include: GlobSet,
    exclude: GlobSet,
    /// Literal directory prefixes of the include patterns: where a walk starts.
    roots: Vec<String>,
    /// The patterns as written.
    pub written: Vec<String>,
}

/// Check one pattern's syntax (also used by the pipeline parser through the same rules).
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    compile_one(pattern).map(|_| ())
}

fn compile_one(pattern: &str) -> Result<(bool, String, Vec<globset::Glob>), PatternError> {
    let (negated, body) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let body = body.trim_start_matches("./");
    let body = body.trim_end_matches('/');
    if body.is_empty() {
        return Err(PatternError::Empty(pattern.to_owned()));
    }
    if body.starts_with('/') || body.split('/').any(|s| s == "..") {
        return Err(PatternError::Outside(pattern.to_owned()));
    }
    let glob = |p: &str| {
        GlobBuilder::new(p)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| PatternError::Invalid {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })
    };
    let globs = vec![glob(body)?, glob(&format!("{body}/**"))?];
    Ok((negated, body.to_owned(), globs))
}

/// The segments of `pattern` before its first glob character.
fn literal_prefix(pattern: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in pattern.split('/') {
        if seg.contains(['*', '?', '[', '{', '\\']) {
            break;
        }
        out.push(seg);
    }
    out.join("/")
}

impl Patterns {
    pub fn new(patterns: &[String]) -> Result<Patterns, PatternError> {
        let mut include = GlobSetBuilder::new();
        let mut exclude = GlobSetBuilder::new();
        let mut roots: Vec<String> = Vec::new();
        for p in patterns {
            let (negated, body, globs) = compile_one(p)?;
            for g in globs {
                if negated {
                    exclude.add(g);
                } else {
                    include.add(g);
                }
            }
            if !negated {
                roots.push(literal_prefix(&body));
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| PatternError::Invalid {
                pattern: patterns.join(", "),
                reason: e.to_string(),
            })
        };
        roots.sort();
        roots.dedup();
        // Drop roots inside other roots (`src` covers `src/app`); "" covers everything.
        let mut kept: Vec<String> = Vec::new();
        for r in roots {
            let covered = kept
                .iter()
                .any(|k| k.is_empty() || r == *k || r.starts_with(&format!("{k}/")));
            if !covered {
                kept.push(r);
            }
        }
        Ok(Patterns {
            include: build(include)?,
            exclude: build(exclude)?,
            roots: kept,
            written: patterns.to_vec(),
        })
    }

    pub fn is_match(&self, rel: &str) -> bool {
        self.include.is_match(rel) && !self.exclude.is_match(rel)
    }
}

/// What a walked path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    File { executable: bool, size: u64 },
    Symlink { target: String },
}

/// One file or symlink found by [`walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative, `/`-separated.
    pub rel: String,
    pub kind: FileKind,
}

/// Files and symlinks under `root` that `patterns` match (all of them for `None`), sorted by
/// path. Directories are walked, not listed; symlinks are listed, not followed; Kiln's staging
/// directories are skipped.
pub fn walk(root: &Path, patterns: Option<&Patterns>) -> io::Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    let starts: Vec<String> = match patterns {
        Some(p) => p.roots.clone(),
        None => vec![String::new()],
    };
    for start in starts {
        walk_from(root, &start, patterns, &mut out)?;
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out.dedup_by(|a, b| a.rel == b.rel);
    Ok(out)
}

fn walk_from(
    root: &Path,
    rel: &str,
    patterns: Option<&Patterns>,
    out: &mut Vec<FileEntry>,
) -> io::Result<()> {
    let full = crate::archive::join(root, rel);
    let meta = match fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let matches = |rel: &str| patterns.is_none_or(|p| p.is_match(rel));
    let ft = meta.file_type();
    if ft.is_dir() {
        let mut names: Vec<String> = fs::read_dir(&full)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(STAGING_PREFIX))
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            walk_from(root, &child, patterns, out)?;
        }
    } else if ft.is_symlink() {
        if matches(rel) {
            let target = fs::read_link(&full)?.to_string_lossy().into_owned();
            out.push(FileEntry {
                rel: rel.to_owned(),
                kind: FileKind::Symlink { target },
            });
        }
    } else if ft.is_file() && matches(rel) {
        out.push(FileEntry {
            rel: rel.to_owned(),
            kind: FileKind::File {
                executable: meta.mode() & 0o111 != 0,
                size: meta.len(),
            },
        });
    }
    Ok(())
}

/// Content digests of files, remembered by (path, inode, size, mtime, ctime) so unchanged files
/// are hashed once per process. A file modified less than [`RACY_WINDOW`] ago is not
/// remembered: a second write within the file system's timestamp granularity could otherwise
/// go unnoticed.
#[derive(Debug, Default)]
pub struct DigestMemo {
    known: Mutex<HashMap<PathBuf, (Stamp, Digest)>>,
}

/// How recent a change must be for a digest not to be remembered.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DigestMemo {
    pub fn new() -> Self {
        DigestMemo::default()
    }

    /// The digest of the file at `path`.
    pub fn digest(&self, path: &Path) -> io::Result<Digest> {
        let meta = fs::metadata(path)?;
        let stamp = Stamp {
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        if let Some((s, d)) = self.lock().get(path)
            && *s == stamp
        {
            return Ok(*d);
        }
        let (digest, _) = digest_file(path)?;
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > RACY_WINDOW);
        if settled {
            self.lock().insert(path.to_path_buf(), (stamp, digest));
        }
        Ok(digest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, Digest)>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Patterns {
        Patterns::new(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn patterns_match_files_directories_and_exclusions() {
        let p = pats(&["src", "*.lock", "docs/**/*.md", "!src/**/*.log"]);
        assert!(p.is_match("src/a/b.rs"));
        assert!(p.is_match("Cargo.lock"));
        assert!(!p.is_match("sub/Cargo.lock"), "`*` stays in one segment");
        assert!(p.is_match("docs/x/y/z.md"));
        assert!(p.is_match("docs/z.md"));
        assert!(!p.is_match("src/debug.log"));
        assert!(!p.is_match("other/file"));
        assert_eq!(
            p.roots,
            [""],
            "`*.lock` is matched anywhere at the top: walk everything"
        );
    }

    #[test]
    fn walk_roots_are_the_literal_prefixes() {
        let p = pats(&["src/app/**/*.rs", "src/lib", "Cargo.lock"]);
        assert_eq!(p.roots, ["Cargo.lock", "src/app", "src/lib"]);
        let p = pats(&["src", "src/app/x"]);
        assert_eq!(p.roots, ["src"]);
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        let err = |p: &str| Patterns::new(&[p.to_owned()]).err().map(|e| e.to_string());
        assert!(
            err("../x")
                .unwrap_or_default()
                .contains("leaves the workspace")
        );
        assert!(
            err("/etc/**")
                .unwrap_or_default()
                .contains("leaves the workspace")
        );
        assert!(
            err("src/[a")
                .unwrap_or_default()
                .contains("not a valid glob")
        );
        assert!(err("").unwrap_or_default().contains("empty"));
        assert!(err("!").unwrap_or_default().contains("empty"));
    }

    #[test]
    fn a_walk_lists_matching_files_and_symlinks_sorted_without_following_links() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = d.path();
        fs::create_dir_all(root.join("src/deep")).unwrap_or_default();
        fs::create_dir_all(root.join(".kiln-restore-1")).unwrap_or_default();
        fs::write(root.join(".kiln-restore-1/x"), "").unwrap_or_default();
        fs::write(root.join("src/deep/z.rs"), "z").unwrap_or_default();
        fs::write(root.join("src/a.rs"), "a").unwrap_or_default();
        fs::write(root.join("top"), "t").unwrap_or_default();
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::write(outside.path().join("secret"), "s").unwrap_or_default();
        std::os::unix::fs::symlink(outside.path(), root.join("src/link")).unwrap_or_default();
        let all: Vec<String> = walk(root, None)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert_eq!(all, ["src/a.rs", "src/deep/z.rs", "src/link", "top"]);
        let some = walk(root, Some(&pats(&["src/**/*.rs"]))).unwrap_or_default();
        assert_eq!(
            some.iter().map(|e| e.rel.as_str()).collect::<Vec<_>>(),
            ["src/a.rs", "src/deep/z.rs"]
        );
    }

    #[test]
    fn the_memo_notices_a_changed_file() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = d.path().join("f");
        fs::write(&f, "one").unwrap_or_default();
        let memo = DigestMemo::new();
        let first = memo.digest(&f).ok();
        assert_eq!(first, Some(Digest::of(b"one")));
        fs::write(&f, "two").unwrap_or_default();
        assert_eq!(memo.digest(&f).ok(), Some(Digest::of(b"two")));
    }
}
