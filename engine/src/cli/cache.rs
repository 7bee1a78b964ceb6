//! `kiln cache`: what the local caches hold, and clearing them.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the cache entries (step results and `cache` plugin entries), the git mirrors and the
    /// size of each cache.
    Ls {
        /// List the entries of the cache registry (`KILN_CACHE_REGISTRY`) instead.
        #[arg(long)]
        remote: bool,
    },
    /// Trim the cache store to its size limit, least recently used first, and delete what no
    /// entry uses (also trims the git mirrors to theirs).
    Gc {
        /// Trim the store to this many MiB instead of `KILN_CACHE_MAX_MB`.
        #[arg(long, value_name = "MIB")]
        max_mb: Option<u64>,
    },
    /// Remove cache entries: a `cache` plugin key (every set of paths it was saved with), or a
    /// step's key (`sha256:…`, as `kiln run --explain-cache` and `--json` show it).
    Rm {
        /// The key.
        #[arg(required_unless_present = "all_steps")]
        key: Option<String>,
        /// Remove every entry whose key starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Remove every step result (not the `cache` plugin's entries).
        #[arg(long, conflicts_with = "key")]
        all_steps: bool,
        /// Remove it from the cache registry (`KILN_CACHE_REGISTRY`) too.
        #[arg(long)]
        remote: bool,
    },
    /// Delete cached data (mirrors in use by a running clone are kept).
    Clear {
        /// Which cache.
        #[arg(value_enum, default_value_t = Which::All)]
        which: Which,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Which {
    /// Bare mirrors of cloned repositories.
    Git,
    /// Compiled plugin components.
    Components,
    /// Step results and `cache` plugin entries (the local store).
    Store,
    All,
}

pub fn cache(command: CacheCommand) -> ExitCode {
    let git = crate::dirs::git(true);
    let components = crate::dirs::cache_dir().join("components");
    match command {
        CacheCommand::Ls { remote: true } => list_remote(),
        CacheCommand::Gc { max_mb } => gc(max_mb, &git),
        CacheCommand::Rm {
            key,
            prefix,
            all_steps,
            remote,
        } => rm(key.as_deref(), prefix, all_steps, remote),
        CacheCommand::Ls { remote: false } => {
            let mirrors = match git.mirrors() {
                Ok(m) => m,
                Err(e) => return super::fail(&e),
            };
            let total: u64 = mirrors.iter().map(|m| m.bytes).sum();
            println!(
                "git mirrors: {} ({}, limit {}) in {}",
                mirrors.len(),
                human(total),
                human(git.config().mirror_max_bytes),
                git.config().mirror_dir.display()
            );
            for m in &mirrors {
                println!(
                    "  {:>9}  {:<12}  {}",
                    human(m.bytes),
                    m.last_used.map_or("?".into(), ago),
                    m.url
                );
            }
            println!(
                "compiled components: {} in {}",
                human(dir_size(&components)),
                components.display()
            );
            match crate::dirs::cache_store() {
                Ok(store) => list_local(store.local()),
                Err(e) => return super::fail(&e),
            }
            ExitCode::SUCCESS
        }
        CacheCommand::Clear { which } => {
            if matches!(which, Which::Git | Which::All) {
                match git.clear_mirrors() {
                    Ok(freed) => println!("git mirrors: freed {}", human(freed)),
                    Err(e) => return super::fail(&e),
                }
            }
            if matches!(which, Which::Components | Which::All) {
                let bytes = dir_size(&components);
                match std::fs::remove_dir_all(&components) {
                    Ok(()) => println!("compiled components: freed {}", human(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        println!("compiled components: nothing cached")
                    }
                    Err(e) => {
                        return super::fail(&format!(
                            "cannot delete `{}`: {e}",
                            components.display()
                        ));
                    }
                }
            }
            if matches!(which, Which::Store | Which::All) {
                let store = match crate::dirs::cache_store() {
                    Ok(s) => s,
                    Err(e) => return super::fail(&e),
                };
                let before = store.local().blobs_size();
                match store.local().remove("", true) {
                    Ok(n) => println!("cache store: removed {n} entries, freed {}", human(before)),
                    Err(e) => return super::fail(&e),
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// How an entry's key reads to a user: `step sha256:…` or `cache <key>`.
fn display_key(key: &str) -> (&'static str, String) {
    if let Some(hex) = key.strip_prefix("step/") {
        return ("step", format!("sha256:{hex}"));
    }
    if let Some(rest) = key.strip_prefix("user/")
        && let Some((_, k)) = rest.split_once('/')
    {
        return ("cache", k.to_owned());
    }
    ("other", key.to_owned())
}

fn list_local(store: &kiln_cache::LocalStore) {
    let entries = store.list();
    let steps = entries
        .iter()
        .filter(|e| e.key.starts_with("step/"))
        .count();
    println!(
        "cache store: {} entries ({} step results, {} `cache` entries), {} of {} in {}",
        entries.len(),
        steps,
        entries.len() - steps,
        human(store.blobs_size()),
        human(store.max_bytes()),
        store.root().display()
    );
    for e in &entries {
        let (kind, key) = display_key(&e.key);
        println!(
            "  {:>9}  {:<12}  {kind:<5}  {key}",
            human(e.size),
            ago(e.last_used)
        );
    }
}

fn list_remote() -> ExitCode {
    let store = match crate::dirs::cache_store() {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let Some(remote) = store.remote() else {
        return super::fail(
            &"no cache registry is configured; hint: set `KILN_CACHE_REGISTRY=host[:port]/repository`",
        );
    };
    match remote.list() {
        Ok(entries) => {
            let total: u64 = entries.iter().map(|e| e.size).sum();
            println!(
                "cache registry {}: {} entries, {}",
                remote.location(),
                entries.len(),
                human(total)
            );
            for e in &entries {
                let (kind, key) = display_key(&e.key);
                let created =
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.created_ms);
                println!(
                    "  {:>9}  {:<12}  {kind:<5}  {key}",
                    human(e.size),
                    ago(created)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => super::fail(&e),
    }
}

fn gc(max_mb: Option<u64>, git: &kiln_git::Git) -> ExitCode {
    let store = match crate::dirs::cache_store() {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let max = max_mb.map_or(store.local().max_bytes(), |mb| mb.saturating_mul(1 << 20));
    match store.local().gc(max) {
        Ok(r) => println!(
            "cache store: evicted {} entries, removed {} unused blobs, freed {}; {} kept (limit {})",
            r.evicted,
            r.blobs_removed,
            human(r.bytes_freed),
            human(r.bytes_kept),
            human(max)
        ),
        Err(e) => return super::fail(&e),
    }
    match git.trim_mirrors(git.config().mirror_max_bytes) {
        Ok(freed) => println!("git mirrors: freed {}", human(freed)),
        Err(e) => return super::fail(&e),
    }
    ExitCode::SUCCESS
}

fn rm(key: Option<&str>, prefix: bool, all_steps: bool, remote: bool) -> ExitCode {
    let store = match crate::dirs::cache_store() {
        Ok(s) => s,
        Err(e) => return super::fail(&e),
    };
    let wanted = |full: &str| {
        let (kind, shown) = display_key(full);
        match key {
            _ if all_steps => kind == "step",
            Some(k) if prefix => shown.starts_with(k),
            Some(k) => shown == k,
            None => false,
        }
    };
    let mut removed = 0u64;
    for e in store.local().list() {
        if wanted(&e.key) {
            match store.local().remove(&e.key, false) {
                Ok(n) => removed += n,
                Err(err) => return super::fail(&err),
            }
        }
    }
    println!("cache store: removed {removed} entries");
    if remote {
        let Some(r) = store.remote() else {
            return super::fail(
                &"no cache registry is configured; hint: set `KILN_CACHE_REGISTRY=host[:port]/repository`",
            );
        };
        let entries = match r.list() {
            Ok(e) => e,
            Err(err) => return super::fail(&err),
        };
        let mut n = 0;
        for e in entries.iter().filter(|e| wanted(&e.key)) {
            match r.remove(&e.key) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(err) => return super::fail(&err),
            }
        }
        println!("cache registry {}: removed {n} entries", r.location());
    }
    ExitCode::SUCCESS
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn ago(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}
