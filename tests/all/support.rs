//! Shared helpers: run the CLI, find the repo and the built test plugins.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Directory of the built plugin components (`scripts/build-plugins.sh`).
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("KILN_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("plugins/target/wasm32-wasip2/release"))
}

/// Path of a built test plugin, e.g. `hostile`; fails with what to do if it is not built.
pub fn plugin(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// A `kiln` command with its caches in a private temp dir.
pub fn kiln(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln-under-test"));
    cmd.current_dir(repo())
        .env("KILN_CACHE_DIR", home.join("cache"))
        .env("KILN_DATA_DIR", home.join("data"))
        .env("NO_COLOR", "1")
        .env_remove("KILN_LOG");
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run and parse `--json` output.
pub fn run_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// The record of step `id` in a `--json` run.
pub fn step<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}
