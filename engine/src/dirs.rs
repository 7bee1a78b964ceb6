//! Where Kiln keeps things on disk.

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Caches that can be deleted at any time (compiled components): `$KILN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln"),
        _ => home().join(".cache/kiln"),
    }
}

/// Durable state (run workspaces): `$KILN_DATA_DIR`, else `$XDG_DATA_HOME/kiln`, else
/// `~/.local/share/kiln`.
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_DATA_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln"),
        _ => home().join(".local/share/kiln"),
    }
}
