//! Shared helpers: run the CLI, find the repo and the built test plugins.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

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

/// The variables of `scripts/services.sh env NAME` (`git`, `docker`, `registry`), with the
/// service running: the first call for a service in this process runs
/// `scripts/services.sh up NAME` (idempotent, and serialised with other processes by the script's
/// lock), then reads `$KILN_SERVICES_DIR/NAME/env.json` (default `target/services/NAME/env.json`).
/// Fails the test, with the script's output, when the service cannot start.
pub fn services_env(name: &str) -> BTreeMap<String, String> {
    static STARTED: OnceLock<Mutex<HashMap<String, BTreeMap<String, String>>>> = OnceLock::new();
    // Held while a service starts: threads of this process wait for one `up` instead of racing.
    let mut started = STARTED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(vars) = started.get(name) {
        return vars.clone();
    }
    let out = Command::new("bash")
        .arg(repo().join("scripts/services.sh"))
        .args(["up", name])
        .current_dir(repo())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("scripts/services.sh runs");
    assert!(
        out.status.success(),
        "`scripts/services.sh up {name}` failed; these tests need the service\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let json = std::env::var_os("KILN_SERVICES_DIR")
        .map(|d| PathBuf::from(d).join(name).join("env.json"))
        .unwrap_or_else(|| repo().join("target/services").join(name).join("env.json"));
    let body = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("services env.json {}: {e}", json.display()));
    let vars: BTreeMap<String, String> =
        serde_json::from_str(&body).expect("services env.json is JSON");
    started.insert(name.to_owned(), vars.clone());
    vars
}

/// Runs `pipeline` with `--json` in a fresh home, with `secrets` set as env vars.
pub fn kiln_run(
    home: &Path,
    pipeline: &str,
    secrets: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    kiln_run_env(home, pipeline, secrets, &[])
}

/// [`kiln_run`] with more env vars for the `kiln` process.
pub fn kiln_run_env(
    home: &Path,
    pipeline: &str,
    secrets: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let file = home.join("pipeline.yaml");
    std::fs::write(&file, pipeline).expect("write pipeline");
    let mut cmd = kiln(home);
    cmd.arg("run")
        .arg(&file)
        .arg("--json")
        .arg("--workspace")
        .arg(home.join("ws"));
    for (name, value) in secrets {
        cmd.args(["--secret", name]).env(name, value);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("kiln runs");
    let json = run_json(&out);
    (out, json)
}

/// Runs `git ARGS` in `dir` as a fixed author, without the system config; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}
