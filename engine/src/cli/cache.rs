//! `kiln cache`: what the local caches hold, and clearing them.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List the git mirrors and the size of each cache.
    Ls,
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
    All,
}

pub fn cache(command: CacheCommand) -> ExitCode {
    let git = crate::dirs::git(true);
    let components = crate::dirs::cache_dir().join("components");
    match command {
        CacheCommand::Ls => {
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
            ExitCode::SUCCESS
        }
    }
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
