//! Archives of workspace paths: an uncompressed tar (POSIX/GNU headers, long names supported),
//! entries sorted by path, symlinks stored as symlinks (never followed), modes and mtimes kept
//! (build tools decide on mtimes), owners not restored.
//!
//! Restoring never leaves a half-written or unverified file in place: the archive is unpacked
//! into a staging directory beside the destination while its digest is computed, and only when
//! digest and size match is each top-level path moved into place (a `rename`, merged into an
//! existing directory entry by entry). A mismatch removes the staging directory and reports
//! [`ArchiveError::Corrupt`]. Entries that would land outside the destination (absolute paths,
//! `..`, a symlink planted earlier) are refused by the unpacker.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Digest;
use crate::digest::{HashingReader, HashingWriter};

/// Prefix of staging directories; file walks skip them.
pub const STAGING_PREFIX: &str = ".kiln-restore-";

/// What packing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    pub digest: Digest,
    /// Bytes of the archive.
    pub size: u64,
    /// Files, directories and symlinks archived.
    pub entries: u64,
}

/// What unpacking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unpacked {
    /// Files, directories and symlinks restored.
    pub entries: u64,
    /// Bytes of the archive.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("path `{0}` is not inside the directory (absolute, or with `..`)")]
    OutsideRoot(String),
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The archive's bytes are not the ones recorded: nothing was restored.
    #[error(
        "the archive is corrupt: expected {expected} ({expected_size} bytes), found {found} ({found_size} bytes)"
    )]
    Corrupt {
        expected: Digest,
        expected_size: u64,
        found: Digest,
        found_size: u64,
    },
    #[error("the archive is unreadable: {0}")]
    Unreadable(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A relative, `/`-separated path with no `..`, no root and no `.` parts.
pub fn normalize_relative(path: &str) -> Result<String, ArchiveError> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(ArchiveError::OutsideRoot(path.to_owned())),
        }
    }
    Ok(out.join("/"))
}

/// Archive `paths` (relative to `root`: files, symlinks, or directories with everything under
/// them) into `out`. Missing paths are skipped; the caller decides whether that matters.
pub fn pack(root: &Path, paths: &[String], out: impl Write) -> Result<Packed, ArchiveError> {
    let mut rels: Vec<String> = Vec::new();
    for p in paths {
        let rel = normalize_relative(p)?;
        collect(root, &rel, &mut rels)?;
    }
    rels.sort();
    rels.dedup();
    let writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut entries = 0u64;
    for rel in &rels {
        let full = root.join(rel);
        builder
            .append_path_with_name(&full, rel)
            .map_err(io_err(&full))?;
        entries += 1;
    }
    let writer = builder
        .into_inner()
        .map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    let (digest, size, mut inner) = writer.finish();
    inner
        .flush()
        .map_err(|e| ArchiveError::Unreadable(format!("cannot write the archive: {e}")))?;
    Ok(Packed {
        digest,
        size,
        entries,
    })
}

/// `rel` and, for a real directory, everything below it (symlinks are not followed).
fn collect(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), ArchiveError> {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = match fs::symlink_metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&full)(e)),
    };
    if !rel.is_empty() {
        out.push(rel.to_owned());
    }
    if meta.is_dir() {
        let mut names: Vec<String> = fs::read_dir(&full)
            .map_err(io_err(&full))?
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
            collect(root, &child, out)?;
        }
    }
    Ok(())
}

/// Unpack the archive at `blob` into `dest` after checking it is `expected` (`size` bytes).
pub fn unpack(
    blob: &Path,
    expected: Digest,
    size: u64,
    dest: &Path,
) -> Result<Unpacked, ArchiveError> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let staging = dest.join(format!(
        "{STAGING_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = unpack_into(blob, expected, size, &staging);
    let result = result.and_then(|unpacked| {
        merge_children(&staging, dest)?;
        Ok(unpacked)
    });
    if staging.exists() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn unpack_into(
    blob: &Path,
    expected: Digest,
    size: u64,
    staging: &Path,
) -> Result<Unpacked, ArchiveError> {
    fs::create_dir(staging).map_err(io_err(staging))?;
    let file = File::open(blob).map_err(io_err(blob))?;
    let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let mut entries = 0u64;
    let unpacked = (|| -> io::Result<()> {
        let mut archive = tar::Archive::new(&mut reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        archive.set_unpack_xattrs(false);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.unpack_in(staging)? {
                return Err(io::Error::other(format!(
                    "entry `{}` would land outside the destination",
                    entry.path()?.display()
                )));
            }
            entries += 1;
        }
        Ok(())
    })();
    // Hash to the end even when the tar stream was bad, to tell corruption from other errors.
    let (found, found_size) = reader
        .finish()
        .map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    if found != expected || found_size != size {
        return Err(ArchiveError::Corrupt {
            expected,
            expected_size: size,
            found,
            found_size,
        });
    }
    unpacked.map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    Ok(Unpacked {
        entries,
        size: found_size,
    })
}

/// Move every child of `from` into `to`, merging directories.
fn merge_children(from: &Path, to: &Path) -> Result<(), ArchiveError> {
    for entry in fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        merge(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Put `src` at `dst`: a rename, unless both are real directories (then child by child).
/// A symlink at `dst` is replaced, never followed.
fn merge(src: &Path, dst: &Path) -> Result<(), ArchiveError> {
    let src_dir = fs::symlink_metadata(src)
        .map_err(io_err(src))?
        .file_type()
        .is_dir();
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(src, dst).map_err(io_err(dst)),
        Err(e) => Err(io_err(dst)(e)),
        Ok(meta) if meta.file_type().is_dir() && src_dir => {
            merge_children(src, dst)?;
            let _ = fs::remove_dir(src);
            Ok(())
        }
        Ok(meta) if meta.file_type().is_dir() => {
            fs::remove_dir_all(dst).map_err(io_err(dst))?;
            fs::rename(src, dst).map_err(io_err(dst))
        }
        Ok(_) => {
            if src_dir {
                fs::remove_file(dst).map_err(io_err(dst))?;
            }
            fs::rename(src, dst).map_err(io_err(dst))
        }
    }
}

/// The path of `rel` under `root`.
pub fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("dir/sub")).unwrap_or_default();
        fs::write(root.join("dir/a.txt"), "a").unwrap_or_default();
        fs::write(root.join("dir/sub/b.bin"), vec![7u8; 100_000]).unwrap_or_default();
        fs::write(root.join("tool"), "#!/bin/sh\n").unwrap_or_default();
        fs::set_permissions(root.join("tool"), fs::Permissions::from_mode(0o755))
            .unwrap_or_default();
        symlink("a.txt", root.join("dir/link")).unwrap_or_default();
    }

    #[test]
    fn a_packed_tree_unpacks_to_the_same_files_modes_and_links() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        tree(src.path());
        let mut bytes = Vec::new();
        let packed = pack(
            src.path(),
            &["dir".into(), "tool".into(), "missing".into()],
            &mut bytes,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(packed.digest, Digest::of(&bytes));
        assert_eq!(packed.size, bytes.len() as u64);
        assert_eq!(packed.entries, 6);
        let blob = src.path().join("blob.tar");
        fs::write(&blob, &bytes).unwrap_or_default();
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(dst.path().join("dir")).unwrap_or_default();
        fs::write(dst.path().join("dir/other"), "kept").unwrap_or_default();
        fs::write(dst.path().join("dir/a.txt"), "old").unwrap_or_default();
        let un =
            unpack(&blob, packed.digest, packed.size, dst.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(un.entries, 6);
        let d = dst.path();
        assert_eq!(
            fs::read_to_string(d.join("dir/a.txt")).unwrap_or_default(),
            "a"
        );
        assert_eq!(
            fs::read_to_string(d.join("dir/other")).unwrap_or_default(),
            "kept"
        );
        assert_eq!(
            fs::read(d.join("dir/sub/b.bin")).unwrap_or_default().len(),
            100_000
        );
        assert_eq!(
            fs::read_link(d.join("dir/link")).unwrap_or_default(),
            PathBuf::from("a.txt")
        );
        let mode = fs::metadata(d.join("tool"))
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o755);
        let leftovers: Vec<_> = fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(STAGING_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn packing_the_same_tree_twice_gives_the_same_digest() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        tree(src.path());
        let digest = || {
            pack(src.path(), &["tool".into(), "dir".into()], io::sink())
                .map(|p| p.digest)
                .ok()
        };
        assert_eq!(digest(), digest());
    }

    #[test]
    fn a_corrupt_archive_restores_nothing() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        tree(src.path());
        let mut bytes = Vec::new();
        let packed =
            pack(src.path(), &["dir".into()], &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        // Entries are sorted: `dir` (header), `dir/a.txt` (header, then its content at 1024).
        // Flip that byte: the tar still parses, only the digest can tell.
        assert_eq!(bytes[1024], b'a');
        bytes[1024] = b'b';
        let blob = src.path().join("blob.tar");
        fs::write(&blob, &bytes).unwrap_or_default();
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let err = unpack(&blob, packed.digest, packed.size, dst.path()).err();
        assert!(matches!(err, Some(ArchiveError::Corrupt { .. })), "{err:?}");
        assert_eq!(fs::read_dir(dst.path()).map(|d| d.count()).unwrap_or(99), 0);
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        assert!(normalize_relative("../x").is_err());
        assert!(normalize_relative("/etc").is_err());
        assert_eq!(normalize_relative("./a//b/").ok().as_deref(), Some("a/b"));
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(pack(src.path(), &["a/../../x".into()], io::sink()).is_err());
    }

    #[test]
    fn a_symlink_planted_in_the_destination_is_replaced_not_followed() {
        let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(src.path().join("out")).unwrap_or_default();
        fs::write(src.path().join("out/f"), "new").unwrap_or_default();
        let mut bytes = Vec::new();
        let packed =
            pack(src.path(), &["out".into()], &mut bytes).unwrap_or_else(|e| panic!("{e}"));
        let blob = src.path().join("blob.tar");
        fs::write(&blob, &bytes).unwrap_or_default();
        let outside = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dst = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        symlink(outside.path(), dst.path().join("out")).unwrap_or_default();
        unpack(&blob, packed.digest, packed.size, dst.path()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !outside.path().join("f").exists(),
            "wrote through the symlink"
        );
        assert_eq!(
            fs::read_to_string(dst.path().join("out/f")).unwrap_or_default(),
            "new"
        );
    }
}
