//! The build context: a directory packed into an uncompressed tar, with `.dockerignore`
//! applied the way Docker and BuildKit apply it.
//!
//! # `.dockerignore`
//! - one pattern a line; a UTF-8 byte-order mark, surrounding white space and blank lines are
//!   ignored; a line whose first character is `#` is a comment (`  #x` is a pattern);
//! - each pattern is cleaned like Go's `filepath.Clean` (`a//b/../c/` is `a/c`) and a leading
//!   `/` is dropped: patterns are relative to the context root, never "anywhere below";
//! - Go's `filepath.Match` syntax: `*` (any run without `/`), `?` (one character but `/`),
//!   `[abc]`, `[a-z]`, `[^a-z]` (only `^` negates: `[!a]` is `!` or `a`, as in Go), `\x` (a
//!   literal `x`); plus `**`, any number of directories (`**/x`, `a/**/b`, `a/**`);
//! - a pattern matches a path when it matches the path itself or one of its parent
//!   directories, so `build` excludes everything under `build/`;
//! - `!pattern` is an exception that re-includes; the last pattern that matches decides.
//!
//! A directory that is excluded is still walked when an exception could match something
//! beneath it (`!build/keep.txt`, `!**/*.md`); otherwise its contents are skipped unread.
//!
//! # The tar
//! Entries are written in sorted order with paths relative to the context, owner `0:0`,
//! modification time 0 and the file's permission bits, so the same tree always gives the same
//! bytes (BuildKit checksums contents, not times; a fixed time keeps the tar itself cacheable).
//! Symbolic links are stored as links with their target as written: they are never followed,
//! and nothing outside the context is read through them. Sockets, FIFOs and devices are
//! skipped and counted. `.dockerignore` and the Dockerfile are always included, even when a
//! pattern excludes them, as `docker build` does.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Why a build context could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(
        "`.dockerignore` line {line}: `{pattern}` is not a valid pattern: {reason}\n  hint: {hint}"
    )]
    BadPattern {
        line: usize,
        pattern: String,
        reason: String,
        hint: &'static str,
    },
    #[error(
        "the build context `{path}` is not a directory\n  hint: give the directory that holds the files the Dockerfile copies"
    )]
    NotADirectory { path: PathBuf },
    #[error("cannot read `{path}` in the build context: {message}\n  hint: {hint}")]
    Read {
        path: PathBuf,
        message: String,
        hint: &'static str,
    },
    #[error("cannot write the build context: {message}")]
    Write { message: String },
    #[error(
        "`{name}` cannot be the Dockerfile's name in the build context: {reason}\n  hint: use a relative path such as `Dockerfile` or `docker/app.Dockerfile`"
    )]
    BadDockerfileName { name: String, reason: &'static str },
}

/// What [`pack`] put in the tar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// Regular files written (the Dockerfile included).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file contents written (headers not counted).
    pub bytes: u64,
    /// Entries left out by `.dockerignore` (a directory skipped unread counts once).
    pub excluded: u64,
    /// Sockets, FIFOs and device files skipped.
    pub special: u64,
}

// ---------------------------------------------------------------------------------------------
// Patterns

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `**` at the end: anything.
    Rest,
    /// `**` (or `**/`) before more pattern: nothing, or anything ending with `/`.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Lit(l) => *l == c,
            Token::One => c != '/',
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Star | Token::Rest | Token::Dirs => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the leading `!`.
    text: String,
    exclusion: bool,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Whether the pattern matches all of `path`.
    fn matches(&self, path: &[char]) -> bool {
        Matcher::new(&self.tokens, path, false).run()
    }

    /// Whether the pattern could match some path that starts with `prefix`.
    fn could_match_under(&self, prefix: &[char]) -> bool {
        Matcher::new(&self.tokens, prefix, true).run()
    }
}

/// Memoised matching of tokens against characters. In prefix mode, running out of input is a
/// success: whatever tokens remain can match some continuation.
struct Matcher<'a> {
    tokens: &'a [Token],
    input: &'a [char],
    prefix: bool,
    memo: Vec<Option<bool>>,
}

impl<'a> Matcher<'a> {
    fn new(tokens: &'a [Token], input: &'a [char], prefix: bool) -> Matcher<'a> {
        Matcher {
            tokens,
            input,
            prefix,
            memo: vec![None; (tokens.len() + 1) * (input.len() + 1)],
        }
    }

    fn run(&mut self) -> bool {
        self.at(0, 0)
    }

    fn at(&mut self, t: usize, i: usize) -> bool {
        let key = t * (self.input.len() + 1) + i;
        if let Some(Some(known)) = self.memo.get(key) {
            return *known;
        }
        let result = self.compute(t, i);
        if let Some(slot) = self.memo.get_mut(key) {
            *slot = Some(result);
        }
        result
    }

    fn compute(&mut self, t: usize, i: usize) -> bool {
        let n = self.input.len();
        if self.prefix && i == n {
            return true;
        }
        let Some(token) = self.tokens.get(t) else {
            return i == n;
        };
        match token {
            Token::Star => {
                let mut k = i;
                loop {
                    if self.at(t + 1, k) {
                        return true;
                    }
                    match self.input.get(k) {
                        Some(&c) if c != '/' => k += 1,
                        _ => return false,
                    }
                }
            }
            Token::Rest => (i..=n).any(|k| self.at(t + 1, k)),
            Token::Dirs => {
                if self.at(t + 1, i) {
                    return true;
                }
                (i + 1..=n).any(|k| self.input[k - 1] == '/' && self.at(t + 1, k))
            }
            single => match self.input.get(i) {
                Some(&c) if single.matches_char(c) => self.at(t + 1, i + 1),
                _ => false,
            },
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Compiles a cleaned pattern; the error is the reason it is malformed (as Go's
/// `filepath.Match` would refuse it).
fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    tokens.push(Token::Lit(next));
                }
                None => return Err("it ends with a lone `\\`".to_string()),
            },
            '[' => {
                let (token, next) = class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            other => tokens.push(Token::Lit(other)),
        }
    }
    Ok(tokens)
}

/// Parses a character class whose `[` is just before `start`; returns it and the index after
/// its `]`.
fn class(chars: &[char], start: usize) -> Result<(Token, usize), String> {
    let unclosed = || "a `[` is not closed by `]`".to_string();
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(unclosed()),
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1));
            }
            _ => {}
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            if h < lo {
                return Err(format!("the range `{lo}-{h}` is backwards"));
            }
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("a `[` is not closed by `]`".to_string()),
        Some('-') | Some(']') => {
            Err("a character class is empty or has a dangling `-`".to_string())
        }
        Some('\\') => match chars.get(i + 1) {
            Some(&c) => Ok((c, i + 2)),
            None => Err("it ends with a lone `\\`".to_string()),
        },
        Some(&c) => Ok((c, i + 1)),
    }
}

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file; a malformed pattern is an error naming its
    /// line.
    pub fn parse(text: &str) -> Result<DockerIgnore, ContextError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let bad = |reason: String, hint: &'static str| ContextError::BadPattern {
                line,
                pattern: trimmed.to_string(),
                reason,
                hint,
            };
            let (exclusion, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            if exclusion && body.is_empty() {
                return Err(bad(
                    "`!` needs a pattern after it".to_string(),
                    "write `!path` to re-include `path`",
                ));
            }
            let mut text = clean(body);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let tokens = compile(&text).map_err(|reason| {
                bad(
                    reason,
                    "patterns use Go's filepath.Match syntax: `*`, `?`, `[a-z]`, `[^a-z]`, `\\` escapes, and `**`",
                )
            })?;
            patterns.push(Pattern {
                text,
                exclusion,
                tokens,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The cleaned patterns, exceptions with their `!`, in file order.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is excluded: the last
    /// pattern that matches it or one of its parent directories decides. Matching is the same
    /// for files and directories (a trailing `/` in a pattern is cleaned away, so `logs/`
    /// also excludes a file named `logs`).
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path);
        let path = path.trim_start_matches('/');
        let chars: Vec<char> = path.chars().collect();
        // Ends (exclusive) of each parent directory: `a/b/c` -> `a`, `a/b`.
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that can change the answer needs to be tried.
            if pattern.exclusion != excluded {
                continue;
            }
            let hit = pattern.matches(&chars)
                || parents.iter().any(|&end| pattern.matches(&chars[..end]));
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// Whether an exception could re-include something below the directory `rel_dir`, so that
    /// an excluded directory must still be walked.
    pub fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        let dir = clean(rel_dir);
        let mut prefix: Vec<char> = dir.trim_start_matches('/').chars().collect();
        prefix.push('/');
        self.patterns
            .iter()
            .any(|p| p.exclusion && p.could_match_under(&prefix))
    }
}

// ---------------------------------------------------------------------------------------------
// Packing

/// Packs `dir` into an uncompressed tar written to `out` (see the module documentation).
///
/// `dockerfile`, when given, is written into the tar under its name (a relative path) with the
/// given contents, and a file of that name in `dir` is left out; use it when the Dockerfile
/// lives outside the context or is generated. Without it, `Dockerfile` at the context root is
/// kept even if `.dockerignore` excludes it.
pub fn pack(
    dir: &Path,
    dockerfile: Option<(&str, &[u8])>,
    out: impl Write,
) -> Result<ContextStats, ContextError> {
    let meta = fs::metadata(dir).map_err(|e| read_error(dir, &e))?;
    if !meta.is_dir() {
        return Err(ContextError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let dockerfile = match dockerfile {
        Some((name, contents)) => Some((dockerfile_name(name)?, contents)),
        None => None,
    };
    let ignore_path = dir.join(".dockerignore");
    let ignore = match fs::read(&ignore_path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| ContextError::Read {
                path: ignore_path.clone(),
                message: "it is not UTF-8 text".to_string(),
                hint: "save `.dockerignore` as UTF-8",
            })?;
            DockerIgnore::parse(&text)?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(read_error(&ignore_path, &e)),
    };
    let mut packer = Packer {
        builder: tar::Builder::new(out),
        ignore,
        always: vec![
            ".dockerignore".to_string(),
            dockerfile
                .as_ref()
                .map_or_else(|| "Dockerfile".to_string(), |(n, _)| n.clone()),
        ],
        replaced: dockerfile.as_ref().map(|(n, _)| n.clone()),
        pending: Vec::new(),
        stats: ContextStats::default(),
    };
    packer.walk(dir, "", Path::new(""))?;
    if let Some((name, contents)) = dockerfile {
        let mut header = header(tar::EntryType::Regular, 0o644);
        header.set_size(contents.len() as u64);
        packer
            .builder
            .append_data(&mut header, &name, contents)
            .map_err(write_error)?;
        packer.stats.files += 1;
        packer.stats.bytes += contents.len() as u64;
    }
    let mut out = packer.builder.into_inner().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(packer.stats)
}

/// Checks and cleans the Dockerfile's name inside the tar.
fn dockerfile_name(name: &str) -> Result<String, ContextError> {
    let bad = |reason| ContextError::BadDockerfileName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.starts_with('/') {
        return Err(bad("it is absolute"));
    }
    let cleaned = clean(name);
    if cleaned == "." || cleaned.ends_with("/..") || cleaned == ".." || cleaned.starts_with("../") {
        return Err(bad("it leaves the context"));
    }
    Ok(cleaned)
}

fn read_error(path: &Path, e: &io::Error) -> ContextError {
    ContextError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
        hint: if e.kind() == io::ErrorKind::PermissionDenied {
            "make it readable, or exclude it in `.dockerignore`"
        } else {
            "check that nothing changes the directory while it is packed"
        },
    }
}

fn write_error(e: io::Error) -> ContextError {
    ContextError::Write {
        message: e.to_string(),
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

/// Whether the opened file is the one `lstat` saw (not swapped for a link meanwhile).
#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, b: &Metadata) -> bool {
    b.is_file()
}

/// Reads exactly `remaining` bytes, failing (and remembering why) on a short file.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
    failure: Option<String>,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..cap]) {
            Ok(n) => n,
            Err(e) => {
                self.failure = Some(e.to_string());
                return Err(e);
            }
        };
        if n == 0 {
            let message = "the file became shorter while it was read".to_string();
            self.failure = Some(message.clone());
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

struct PendingDir {
    rel: PathBuf,
    mode: u32,
    written: bool,
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    ignore: DockerIgnore,
    /// Paths kept even when excluded.
    always: Vec<String>,
    /// The Dockerfile given by the caller: a file of this name in the directory is left out.
    replaced: Option<String>,
    /// Excluded directories being walked for exceptions: written only when something below
    /// them is.
    pending: Vec<PendingDir>,
    stats: ContextStats,
}

impl<W: Write> Packer<W> {
    /// `rel` is the `/`-joined (lossy UTF-8) form matched against patterns; `rel_path` the
    /// exact name written into the tar.
    fn walk(&mut self, abs: &Path, rel: &str, rel_path: &Path) -> Result<(), ContextError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(abs).map_err(|e| read_error(abs, &e))? {
            let entry = entry.map_err(|e| read_error(abs, &e))?;
            entries.push(entry.file_name());
        }
        entries.sort();
        for name in entries {
            let path = abs.join(&name);
            let child_path = rel_path.join(&name);
            let name = name.to_string_lossy();
            let child = if rel.is_empty() {
                name.into_owned()
            } else {
                format!("{rel}/{name}")
            };
            if self.replaced.as_deref() == Some(child.as_str()) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|e| read_error(&path, &e))?;
            let excluded = self.ignore.is_excluded(&child) && !self.always.contains(&child);
            let kind = meta.file_type();
            if kind.is_dir() {
                if !excluded {
                    self.flush_pending()?;
                    self.append_dir(&child_path, mode_of(&meta))?;
                    self.walk(&path, &child, &child_path)?;
                } else {
                    self.stats.excluded += 1;
                    if self.ignore.may_reinclude_under(&child) {
                        self.pending.push(PendingDir {
                            rel: child_path.clone(),
                            mode: mode_of(&meta),
                            written: false,
                        });
                        let walked = self.walk(&path, &child, &child_path);
                        self.pending.pop();
                        walked?;
                    }
                }
            } else if excluded {
                self.stats.excluded += 1;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| read_error(&path, &e))?;
                self.flush_pending()?;
                let mut h = header(tar::EntryType::Symlink, 0o777);
                self.builder
                    .append_link(&mut h, &child_path, &target)
                    .map_err(write_error)?;
                self.stats.symlinks += 1;
            } else if kind.is_file() {
                self.flush_pending()?;
                self.append_file(&path, &child_path, &meta)?;
            } else {
                self.stats.special += 1;
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), ContextError> {
        let mut unwritten = Vec::new();
        for dir in self.pending.iter_mut().filter(|d| !d.written) {
            dir.written = true;
            unwritten.push((dir.rel.clone(), dir.mode));
        }
        for (rel, mode) in unwritten {
            self.append_dir(&rel, mode)?;
        }
        Ok(())
    }

    fn append_dir(&mut self, rel: &Path, mode: u32) -> Result<(), ContextError> {
        let mut name = rel.as_os_str().to_owned();
        name.push("/");
        let mut h = header(tar::EntryType::Directory, mode);
        self.builder
            .append_data(&mut h, PathBuf::from(name), io::empty())
            .map_err(write_error)?;
        self.stats.dirs += 1;
        Ok(())
    }

    fn append_file(
        &mut self,
        path: &Path,
        rel: &Path,
        seen: &Metadata,
    ) -> Result<(), ContextError> {
        let file = File::open(path).map_err(|e| read_error(path, &e))?;
        let meta = file.metadata().map_err(|e| read_error(path, &e))?;
        if !meta.is_file() || !same_file(seen, &meta) {
            return Err(ContextError::Read {
                path: path.to_path_buf(),
                message: "it was replaced while the context was packed".to_string(),
                hint: "pack the context again when nothing is changing it",
            });
        }
        let size = meta.len();
        let mut h = header(tar::EntryType::Regular, mode_of(&meta));
        h.set_size(size);
        let mut reader = ExactReader {
            inner: file,
            remaining: size,
            failure: None,
        };
        if let Err(e) = self.builder.append_data(&mut h, rel, &mut reader) {
            return Err(match reader.failure {
                Some(message) => ContextError::Read {
                    path: path.to_path_buf(),
                    message,
                    hint: "check that nothing changes the directory while it is packed",
                },
                None => write_error(e),
            });
        }
        self.stats.files += 1;
        self.stats.bytes += size;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    fn excluded(text: &str, path: &str) -> bool {
        ignore(text).is_excluded(path)
    }

    // --- cleaning and parsing ---------------------------------------------------------------

    #[test]
    fn clean_follows_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn comments_blank_lines_and_surrounding_space_are_ignored() {
        let ig = ignore("\u{feff}# comment\n\n   \n  *.log  \r\n!keep.log\n");
        assert_eq!(ig.patterns().collect::<Vec<_>>(), ["*.log", "!keep.log"]);
    }

    #[test]
    fn a_hash_after_leading_space_is_a_pattern_not_a_comment() {
        let ig = ignore("  #notes");
        assert_eq!(ig.patterns().collect::<Vec<_>>(), ["#notes"]);
        assert!(ig.is_excluded("#notes"));
    }

    #[test]
    fn patterns_are_cleaned_and_a_leading_slash_is_dropped() {
        let ig = ignore("/build/\n./a//b/../c\n! /dist/x/");
        assert_eq!(
            ig.patterns().collect::<Vec<_>>(),
            ["build", "a/c", "!dist/x"]
        );
    }

    #[test]
    fn a_malformed_pattern_is_an_error_with_its_line() {
        for (text, line) in [
            ("ok\n[abc", 2),
            ("a\nb\n!", 3),
            ("x\\", 1),
            ("[]", 1),
            ("[z-a]", 1),
            ("[a-]", 1),
        ] {
            let e = DockerIgnore::parse(text).unwrap_err();
            let ContextError::BadPattern { line: got, .. } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(*got, line, "{text}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("line {line}")), "{msg}");
            assert!(msg.contains("hint:"), "{msg}");
        }
    }

    // --- matching ----------------------------------------------------------------------------

    #[test]
    fn a_star_does_not_cross_directories() {
        assert!(excluded("*.log", "a.log"));
        assert!(!excluded("*.log", "dir/a.log"));
        assert!(excluded("*/*.log", "dir/a.log"));
        assert!(!excluded("*/*.log", "a/b/a.log"));
    }

    #[test]
    fn a_plain_name_matches_only_at_the_root() {
        assert!(excluded("secret", "secret"));
        assert!(!excluded("secret", "sub/secret"));
    }

    #[test]
    fn a_question_mark_is_one_character_but_a_slash() {
        assert!(excluded("a?c", "abc"));
        assert!(!excluded("a?c", "ac"));
        assert!(!excluded("a?c", "a/c"));
    }

    #[test]
    fn character_classes_ranges_and_negation_work() {
        assert!(excluded("file[0-9].txt", "file7.txt"));
        assert!(!excluded("file[0-9].txt", "filex.txt"));
        assert!(excluded("file[^0-9].txt", "filex.txt"));
        assert!(!excluded("file[^0-9].txt", "file7.txt"));
        assert!(excluded("[abc]", "b"));
        assert!(excluded("[\\]]", "]"));
    }

    #[test]
    fn an_exclamation_mark_in_a_class_is_literal_as_in_go() {
        assert!(excluded("[!a]", "!"));
        assert!(excluded("[!a]", "a"));
        assert!(!excluded("[!a]", "b"));
    }

    #[test]
    fn a_backslash_escapes_the_next_character() {
        assert!(excluded("\\*.txt", "*.txt"));
        assert!(!excluded("\\*.txt", "a.txt"));
        assert!(excluded("a\\?", "a?"));
    }

    #[test]
    fn regexp_characters_are_literal() {
        assert!(excluded("a.b+(c)|{d}$", "a.b+(c)|{d}$"));
        assert!(!excluded("a.b", "axb"));
    }

    #[test]
    fn a_double_star_matches_any_number_of_directories() {
        let ig = ignore("**/*.go");
        assert!(ig.is_excluded("main.go"));
        assert!(ig.is_excluded("a/b/c/main.go"));
        assert!(!ig.is_excluded("a/main.rs"));
        let ig = ignore("a/**/b");
        assert!(ig.is_excluded("a/b"));
        assert!(ig.is_excluded("a/x/y/b"));
        assert!(!ig.is_excluded("b"));
        let ig = ignore("**/node_modules");
        assert!(ig.is_excluded("node_modules/x/index.js"));
        assert!(ig.is_excluded("web/app/node_modules/react/package.json"));
    }

    #[test]
    fn a_trailing_double_star_matches_everything_below() {
        let ig = ignore("logs/**");
        assert!(ig.is_excluded("logs/a"));
        assert!(ig.is_excluded("logs/a/b/c"));
        assert!(!ig.is_excluded("logs"));
        assert!(ignore("**").is_excluded("anything/at/all"));
    }

    #[test]
    fn a_double_star_inside_a_name_stays_docker_s_quirk() {
        // moby compiles `a**b` to `a(.*/)?b`: `ab` and `ax/b`, but not `axb`.
        let ig = ignore("a**b");
        assert!(ig.is_excluded("ab"));
        assert!(ig.is_excluded("ax/b"));
        assert!(!ig.is_excluded("axb"));
    }

    #[test]
    fn a_pattern_matching_a_directory_excludes_everything_under_it() {
        let ig = ignore("build");
        assert!(ig.is_excluded("build"));
        assert!(ig.is_excluded("build/out/app.bin"));
        assert!(!ig.is_excluded("builder/x"));
    }

    #[test]
    fn an_exception_re_includes_a_file_under_an_excluded_dir() {
        let ig = ignore("build\n!build/keep.txt");
        assert!(ig.is_excluded("build/other.txt"));
        assert!(!ig.is_excluded("build/keep.txt"));
        assert!(ig.may_reinclude_under("build"));
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        assert!(!excluded("*.md\n!README.md", "README.md"));
        assert!(excluded("*.md\n!README.md\nREADME*", "README.md"));
        assert!(excluded("!a.txt\n*.txt", "a.txt"));
    }

    #[test]
    fn an_exception_for_a_directory_re_includes_its_contents() {
        let ig = ignore("*\n!src");
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(!ig.is_excluded("src"));
        assert!(ig.is_excluded("target"));
    }

    #[test]
    fn exceptions_that_cannot_match_below_a_directory_do_not_force_a_walk() {
        let ig = ignore("node_modules\n!src/**\n!*.md");
        assert!(!ig.may_reinclude_under("node_modules"));
        let ig = ignore("node_modules\n!**/*.md");
        assert!(ig.may_reinclude_under("node_modules"));
        let ig = ignore("a\n!a/*/keep");
        assert!(ig.may_reinclude_under("a"));
        assert!(ig.may_reinclude_under("a/b"));
        assert!(!ig.may_reinclude_under("c"));
    }

    #[test]
    fn a_trailing_slash_does_not_limit_a_pattern_to_directories() {
        let ig = ignore("logs/");
        assert!(ig.is_excluded("logs"));
        assert!(ig.is_excluded("logs/today.txt"));
    }

    #[test]
    fn paths_given_to_is_excluded_are_cleaned() {
        let ig = ignore("a/b");
        assert!(ig.is_excluded("./a/b"));
        assert!(ig.is_excluded("/a//b/c"));
    }

    #[test]
    fn class_and_wildcard_exceptions_are_considered_for_walking() {
        let ig = ignore("vendor\n!vendor/[a-c]*/LICENSE");
        assert!(ig.may_reinclude_under("vendor"));
        assert!(ig.may_reinclude_under("vendor/bar"));
        assert!(!ig.may_reinclude_under("vendor/zed"));
        assert!(!ig.is_excluded("vendor/bar/LICENSE"));
        assert!(ig.is_excluded("vendor/zed/LICENSE"));
    }

    // --- packing -------------------------------------------------------------------------------

    struct Entry {
        kind: tar::EntryType,
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn unpack(bytes: &[u8]) -> BTreeMap<String, Entry> {
        let mut archive = tar::Archive::new(bytes);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let h = entry.header().clone();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(
                path,
                Entry {
                    kind: h.entry_type(),
                    mode: h.mode().unwrap(),
                    mtime: h.mtime().unwrap(),
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    link,
                    data,
                },
            );
        }
        out
    }

    fn write(dir: &Path, rel: &str, contents: &str) {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn pack_dir(dir: &Path, dockerfile: Option<(&str, &[u8])>) -> (Vec<u8>, ContextStats) {
        let mut out = Vec::new();
        let stats = pack(dir, dockerfile, &mut out).unwrap();
        (out, stats)
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        unpack(bytes).into_keys().collect()
    }

    #[test]
    fn excluded_files_are_missing_from_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\n");
        write(dir.path(), "app.py", "print(1)\n");
        write(dir.path(), "debug.log", "x");
        write(dir.path(), "sub/trace.log", "x");
        write(dir.path(), ".dockerignore", "*.log\n");
        let (tar, stats) = pack_dir(dir.path(), None);
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "Dockerfile",
                "app.py",
                "sub/",
                "sub/trace.log"
            ]
        );
        assert_eq!(stats.excluded, 1);
        assert_eq!(stats.files, 4);
        assert_eq!(stats.dirs, 1);
        let e = unpack(&tar);
        assert_eq!(e["app.py"].data, b"print(1)\n");
        assert_eq!(stats.bytes, (13 + 9 + 1 + 6) as u64);
    }

    #[test]
    fn an_excluded_directory_is_left_out_with_everything_in_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "node_modules/a/index.js", "x");
        write(dir.path(), "node_modules/b.js", "x");
        write(dir.path(), "src/main.js", "x");
        write(dir.path(), ".dockerignore", "node_modules\n");
        let (tar, stats) = pack_dir(dir.path(), None);
        assert_eq!(names(&tar), [".dockerignore", "src/", "src/main.js"]);
        assert_eq!(stats.excluded, 1);
    }

    #[test]
    fn exceptions_re_include_files_inside_an_excluded_directory_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "build/out/app.bin", "bin");
        write(dir.path(), "build/out/keep.txt", "keep");
        write(dir.path(), "build/tmp.o", "o");
        write(dir.path(), ".dockerignore", "build\n!build/out/keep.txt\n");
        let (tar, _) = pack_dir(dir.path(), None);
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "build/",
                "build/out/",
                "build/out/keep.txt"
            ]
        );
    }

    #[test]
    fn double_star_exceptions_reach_into_excluded_directories() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "docs/a/README.md", "r");
        write(dir.path(), "docs/a/x.png", "p");
        write(dir.path(), "top.md", "t");
        write(dir.path(), "top.txt", "t");
        write(dir.path(), ".dockerignore", "*\n!**/*.md\n");
        let (tar, _) = pack_dir(dir.path(), None);
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "docs/",
                "docs/a/",
                "docs/a/README.md",
                "top.md"
            ]
        );
    }

    #[test]
    fn the_dockerfile_and_dockerignore_are_always_included() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\n");
        write(dir.path(), "other", "x");
        write(
            dir.path(),
            ".dockerignore",
            "*\n.dockerignore\nDockerfile\n",
        );
        let (tar, _) = pack_dir(dir.path(), None);
        assert_eq!(names(&tar), [".dockerignore", "Dockerfile"]);
    }

    #[test]
    fn a_given_dockerfile_replaces_the_file_of_that_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM old\n");
        write(dir.path(), "a.txt", "a");
        write(dir.path(), ".dockerignore", "*\n");
        let (tar, stats) = pack_dir(dir.path(), Some(("Dockerfile", b"FROM new\n")));
        let e = unpack(&tar);
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            [".dockerignore", "Dockerfile"]
        );
        assert_eq!(e["Dockerfile"].data, b"FROM new\n");
        assert_eq!(e["Dockerfile"].mode, 0o644);
        assert_eq!(stats.files, 2);
        let raw = String::from_utf8_lossy(&tar);
        assert!(!raw.contains("FROM old"));
    }

    #[test]
    fn a_generated_dockerfile_can_live_under_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM user\n");
        let (tar, _) = pack_dir(dir.path(), Some((".kiln/Dockerfile", b"FROM gen\n")));
        let e = unpack(&tar);
        assert_eq!(e["Dockerfile"].data, b"FROM user\n");
        assert_eq!(e[".kiln/Dockerfile"].data, b"FROM gen\n");
    }

    #[test]
    fn a_dockerfile_name_outside_the_context_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "/etc/Dockerfile", "../Dockerfile", "a/../../D", "."] {
            let e = pack(dir.path(), Some((name, b"x")), Vec::new()).unwrap_err();
            assert!(
                matches!(e, ContextError::BadDockerfileName { .. }),
                "{name}: {e:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_kept_as_links_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", "TOP SECRET");
        write(dir.path(), "real.txt", "real");
        std::os::unix::fs::symlink("real.txt", dir.path().join("rel-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out-dir")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            dir.path().join("out-file"),
        )
        .unwrap();
        let (tar, stats) = pack_dir(dir.path(), None);
        let e = unpack(&tar);
        assert_eq!(e["rel-link"].kind, tar::EntryType::Symlink);
        assert_eq!(e["rel-link"].link.as_deref(), Some("real.txt"));
        assert_eq!(e["out-dir"].kind, tar::EntryType::Symlink);
        assert_eq!(e["out-file"].kind, tar::EntryType::Symlink);
        assert!(e["out-file"].data.is_empty());
        assert!(!e.keys().any(|k| k.starts_with("out-dir/")));
        assert!(!String::from_utf8_lossy(&tar).contains("TOP SECRET"));
        assert_eq!(stats.symlinks, 3);
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_kept_and_owner_and_time_are_normalised() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "run.sh", "#!/bin/sh\n");
        write(dir.path(), "d/f", "x");
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(dir.path().join("d"), fs::Permissions::from_mode(0o700)).unwrap();
        let (tar, _) = pack_dir(dir.path(), None);
        let e = unpack(&tar);
        assert_eq!(e["run.sh"].mode, 0o750);
        assert_eq!(e["d/"].mode, 0o700);
        assert_eq!(e["d/"].kind, tar::EntryType::Directory);
        for (name, entry) in &e {
            assert_eq!((entry.mtime, entry.uid, entry.gid), (0, 0, 0), "{name}");
        }
    }

    #[test]
    fn two_packs_of_the_same_tree_are_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["z", "a", "m/b", "m/a", "B", "long/".repeat(30).as_str()] {
            if name.ends_with('/') {
                write(dir.path(), &format!("{name}file"), "deep");
            } else {
                write(dir.path(), name, name);
            }
        }
        let (first, _) = pack_dir(dir.path(), None);
        // Touch every file: times must not matter.
        for name in ["z", "a", "m/b"] {
            let f = File::options()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            f.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
            )
            .unwrap();
        }
        let (second, _) = pack_dir(dir.path(), None);
        assert_eq!(first, second);
        let order = names(&first);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert!(order.iter().any(|n| n.len() > 100), "long paths are kept");
    }

    #[test]
    fn entries_are_written_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c/z", "c/y"] {
            write(dir.path(), name, "x");
        }
        let (tar, _) = pack_dir(dir.path(), None);
        let mut archive = tar::Archive::new(tar.as_slice());
        let order: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(order, ["a", "b", "c/", "c/y", "c/z"]);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_skipped_and_counted() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "x");
        let _listener = UnixListener::bind(dir.path().join("sock")).unwrap();
        let (tar, stats) = pack_dir(dir.path(), None);
        assert_eq!(names(&tar), ["a"]);
        assert_eq!(stats.special, 1);
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_file_is_an_error_naming_its_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "locked", "x");
        let locked = dir.path().join("locked");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&locked).is_ok() {
            return; // running as root: permissions are not enforced
        }
        let e = pack(dir.path(), None, Vec::new()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("`{}`", locked.display())), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_name_that_is_not_utf8_is_kept_byte_for_byte() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        fs::write(dir.path().join(name), "x").unwrap();
        let (tar, _) = pack_dir(dir.path(), None);
        let mut archive = tar::Archive::new(tar.as_slice());
        let paths: Vec<Vec<u8>> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert_eq!(paths, [b"caf\xe9.txt".to_vec()]);
    }

    #[test]
    fn a_bad_dockerignore_stops_the_pack_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".dockerignore", "ok\n\n[oops\n");
        let e = pack(dir.path(), None, Vec::new()).unwrap_err();
        assert!(
            matches!(e, ContextError::BadPattern { line: 3, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn a_missing_context_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = pack(&dir.path().join("nope"), None, Vec::new()).unwrap_err();
        assert!(matches!(e, ContextError::Read { .. }), "{e:?}");
        write(dir.path(), "file", "x");
        let e = pack(&dir.path().join("file"), None, Vec::new()).unwrap_err();
        assert!(matches!(e, ContextError::NotADirectory { .. }), "{e:?}");
    }
}
