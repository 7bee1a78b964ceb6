//! `cache`: save and restore workspace directories by key, with the semantics of GitHub Actions'
//! cache (seed 002's shared Go build cache, `node_modules`, `~/.cargo/registry` kept in the
//! workspace, ...).
//!
//! ```yaml
//! - id: restore-deps
//!   uses: cache
//!   allow: { workspace: write }
//!   with:
//!     key: "npm-${{ steps.lock.outputs.sha256 }}"
//!     restore-keys: ["npm-"]
//!     paths: [node_modules]
//! - id: install
//!   uses: ...
//!   needs: [restore-deps]
//!   if: "!steps.restore-deps.outputs.hit"
//! - id: save-deps
//!   uses: cache
//!   needs: [install]
//!   allow: { workspace: write }
//!   with: { action: save, key: "npm-${{ steps.lock.outputs.sha256 }}", paths: [node_modules] }
//! ```
//!
//! `restore` takes the entry saved under `key`, else for each of `restore-keys` the newest
//! entry whose key starts with it. `save` stores `paths` under `key` unless that key already
//! has an entry (entries are immutable). An entry belongs to the paths it was saved with.

use kiln_plugin_sdk::cache::{self, RestoreRequest, SaveRequest};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config, json, log,
    no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    key: String,
    paths: OneOrMany,
    #[serde(default)]
    restore_keys: Option<OneOrMany>,
    #[serde(default)]
    action: Action,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Action {
    #[default]
    Restore,
    Save,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Longest key, as GitHub's.
const MAX_KEY: usize = 512;

fn key_problem(key: &str, at: &str) -> Option<Problem> {
    if key.contains("${{") {
        return None;
    }
    if key.trim().is_empty() {
        return Some(Problem::at(
            at,
            "the key is empty; name what the entry holds, e.g. `npm-<lockfile hash>`",
        ));
    }
    if key.len() > MAX_KEY {
        return Some(Problem::at(
            at,
            format!(
                "the key is {} bytes long, at most {MAX_KEY} are allowed",
                key.len()
            ),
        ));
    }
    if key.contains(',') {
        return Some(Problem::at(
            at,
            format!("key `{key}` contains `,`, which keys may not (as in GitHub Actions)"),
        ));
    }
    None
}

struct CachePlugin;

impl Plugin for CachePlugin {
    fn info() -> Info {
        Info::new(
            "cache",
            env!("CARGO_PKG_VERSION"),
            "save and restore workspace directories by key (GitHub Actions' cache semantics)",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "key": { "type": "string", "description": "the entry's key (at most 512 bytes, no `,`)" },
                "paths": {
                    "description": "workspace paths (files, directories; globs when saving) the entry holds",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ]
                },
                "restore-keys": {
                    "description": "prefixes tried in order when `key` has no entry: the newest entry starting with one is restored",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
                },
                "action": { "enum": ["restore", "save"], "description": "what to do (default `restore`)" }
            },
            "required": ["key", "paths"],
            "additionalProperties": false
        }))
        .outputs(&["hit", "key", "matched-key", "saved", "size"])
        .capability(Capability::Cache)
        .capability(Capability::WorkspaceWrite)
        // Its whole point is to touch the store: replaying it from the step cache would skip
        // the restore (or the save).
        .side_effects()
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        if let Some(Value::String(k)) = config.get("key") {
            problems.extend(key_problem(k, "/key"));
        }
        match config.get("paths") {
            Some(Value::Array(p)) if p.is_empty() => {
                problems.push(Problem::at(
                    "/paths",
                    "`paths` is empty; list what the entry holds",
                ));
            }
            Some(Value::String(p)) if p.trim().is_empty() => {
                problems.push(Problem::at(
                    "/paths",
                    "`paths` is empty; list what the entry holds",
                ));
            }
            _ => {}
        }
        if config.get("action").and_then(Value::as_str) == Some("save")
            && config.get("restore-keys").is_some()
        {
            problems.push(Problem::at(
                "/restore-keys",
                "`restore-keys` only applies to `action: restore`",
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        if let Some(p) = key_problem(&config.key, "/key") {
            return Err(StepError::InvalidConfig(p.message));
        }
        let paths = config.paths.into_vec();
        set_output("key", &config.key)?;
        match config.action {
            Action::Restore => {
                let restore_keys = config
                    .restore_keys
                    .map(OneOrMany::into_vec)
                    .unwrap_or_default();
                let result = cache::restore(&RestoreRequest {
                    key: config.key.clone(),
                    restore_keys,
                    paths,
                })?;
                match &result.matched_key {
                    Some(k) if result.exact => log::info(&format!(
                        "cache hit: restored `{k}` ({} entries, {} bytes)",
                        result.entries, result.size
                    )),
                    Some(k) => log::info(&format!(
                        "restored `{k}` from a restore key ({} entries, {} bytes); `{}` itself has no entry",
                        result.entries, result.size, config.key
                    )),
                    None => log::info(&format!("cache miss: no entry for `{}`", config.key)),
                }
                set_output("hit", &result.exact)?;
                set_output("matched-key", &result.matched_key.unwrap_or_default())?;
                set_output("size", &result.size)
            }
            Action::Save => {
                let result = cache::save(&SaveRequest {
                    key: config.key.clone(),
                    paths,
                })?;
                if result.saved {
                    log::info(&format!(
                        "saved `{}` ({} entries, {} bytes)",
                        config.key, result.entries, result.size
                    ));
                }
                set_output("saved", &result.saved)?;
                set_output("size", &result.size)
            }
        }
    }
}

kiln_plugin_sdk::export_plugin!(CachePlugin);
