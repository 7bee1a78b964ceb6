//! The JSON Schema of pipeline files, for editors.
//!
//! Written by hand for its descriptions, but every object's `properties` come from the key
//! tables in `keys.rs` that the parser reads (a test checks they match), and the patterns are
//! the parser's. The committed `pipeline.schema.json` is this, pretty-printed (another test).

use serde_json::{Value, json};

use crate::keys;

/// `$id` of the schema.
pub const SCHEMA_ID: &str = "https://kiln.dev/schemas/pipeline.schema.json";

fn string_or_list(item: Value, description: &str) -> Value {
    json!({
        "description": description,
        "oneOf": [
            item.clone(),
            { "type": "array", "items": item }
        ]
    })
}

fn duration(description: &str) -> Value {
    json!({
        "description": description,
        "type": "string",
        "pattern": keys::DURATION_PATTERN,
        "examples": ["90s", "20m", "1h30m", "500ms"]
    })
}

fn env(description: &str) -> Value {
    json!({
        "description": description,
        "type": ["object", "null"],
        "propertyNames": { "pattern": keys::ENV_PATTERN },
        "additionalProperties": {
            "description": "A value; strings may hold `${{ }}` expressions. Numbers and booleans are passed as text.",
            "type": ["string", "number", "boolean"]
        }
    })
}

/// The schema as JSON (draft 2020-12).
pub fn schema() -> Value {
    let globs = json!({ "type": "string", "minLength": 1, "description": "A glob pattern." });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Kiln pipeline",
        "description": "A Kiln pipeline: which events start it and the steps it runs, as a graph of `needs`.",
        "type": "object",
        "required": ["name", "steps"],
        "additionalProperties": false,
        "properties": {
            "name": {
                "description": "The pipeline's name, shown in runs and logs.",
                "type": "string",
                "minLength": 1
            },
            "on": {
                "description": "Which events start the pipeline. Absent or empty: manual runs only. Short forms: `on: push`, `on: [push, pull_request]`.",
                "oneOf": [
                    { "type": "null" },
                    { "type": "string", "enum": keys::EVENTS },
                    { "type": "array", "items": { "type": "string", "enum": keys::EVENTS } },
                    { "$ref": "#/$defs/triggers" }
                ]
            },
            "env": env("Environment for every step. Values are templates; they cannot read `steps`, `matrix` or `secrets`."),
            "steps": {
                "description": "The steps, in file order (the order breaks ties when several steps are ready at once).",
                "type": "array",
                "minItems": 1,
                "items": { "$ref": "#/$defs/step" }
            },
            "concurrency": {
                "description": "Runs of one group run one at a time under `kiln serve` (ignored by `kiln run`). A group name (a template that may read `event`, `git`, `run`), or a mapping.",
                "oneOf": [
                    { "type": "string", "minLength": 1 },
                    { "$ref": "#/$defs/concurrency" }
                ]
            }
        },
        "$defs": {
            "triggers": {
                "description": "Events that start the pipeline.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "push": {
                        "description": "A push to a branch or tag matching the filters.",
                        "oneOf": [{ "type": "null" }, { "$ref": "#/$defs/eventFilter" }]
                    },
                    "pull_request": {
                        "description": "A pull request opened or updated, filtered by its target branch and changed paths.",
                        "oneOf": [{ "type": "null" }, { "$ref": "#/$defs/eventFilter" }]
                    },
                    "manual": {
                        "description": "Allow manual runs (CLI or API): `manual: {}`.",
                        "oneOf": [{ "type": "null" }, { "$ref": "#/$defs/manual" }]
                    },
                    "schedule": {
                        "description": "Times `kiln serve` starts the pipeline (when its `schedules` lists it), as cron expressions in UTC.",
                        "type": "array",
                        "minItems": 1,
                        "items": { "$ref": "#/$defs/schedule" }
                    }
                }
            },
            "schedule": {
                "description": "One schedule: five cron fields in UTC (minute hour day-of-month month day-of-week).",
                "type": "object",
                "required": ["cron"],
                "additionalProperties": false,
                "properties": {
                    "cron": { "type": "string", "description": "e.g. `0 3 * * *` (daily at 03:00 UTC) or `*/15 * * * *`." }
                }
            },
            "manual": {
                "description": "Manual runs; no options yet.",
                "type": "object",
                "additionalProperties": false,
                "properties": {}
            },
            "eventFilter": {
                "description": "Glob filters of one event kind; an empty or absent list matches everything.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "branches": string_or_list(globs.clone(), "Branch names to match, e.g. `main`, `release/**`."),
                    "tags": string_or_list(globs.clone(), "Tag names to match, e.g. `v*`."),
                    "paths": string_or_list(globs.clone(), "Run only if a changed file matches one of these."),
                    "paths-ignore": string_or_list(globs, "Do not run if every changed file matches one of these.")
                }
            },
            "step": {
                "description": "One step: a plugin run with a configuration.",
                "type": "object",
                "required": ["id", "uses"],
                "additionalProperties": false,
                "properties": {
                    "id": {
                        "description": "Unique id, used in `needs` and `steps.<id>.outputs`.",
                        "type": "string",
                        "pattern": keys::ID_PATTERN,
                        "maxLength": keys::ID_MAX_LEN
                    },
                    "uses": {
                        "description": "The plugin: a built-in name, a path to a `.wasm` component (relative to the pipeline file), or an OCI reference pinned by digest.",
                        "type": "string",
                        "anyOf": [
                            { "pattern": keys::BUILTIN_PATTERN, "description": "A built-in plugin, e.g. `clone`." },
                            { "pattern": keys::WASM_PATTERN, "description": "A `.wasm` component on disk." },
                            { "pattern": keys::OCI_PATTERN, "description": "`oci://<registry>/<repository>@sha256:<digest>`." }
                        ]
                    },
                    "with": {
                        "description": "The plugin's configuration. Strings may hold `${{ }}` expressions.",
                        "type": ["object", "null"]
                    },
                    "needs": string_or_list(
                        json!({ "type": "string", "pattern": keys::ID_PATTERN }),
                        "Steps that must finish first; their outputs become readable as `steps.<id>.outputs`."
                    ),
                    "if": {
                        "description": "Run the step only if this expression is true; written with or without `${{ }}`.",
                        "type": ["string", "boolean"]
                    },
                    "matrix": {
                        "description": "Run the step once per combination of axis values. An axis is a list, or one `${{ }}` expression yielding a list when the step becomes ready.",
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": { "pattern": keys::ID_PATTERN, "maxLength": keys::ID_MAX_LEN },
                        "additionalProperties": {
                            "oneOf": [
                                {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": { "type": ["string", "number", "boolean"] }
                                },
                                { "type": "string", "pattern": keys::SINGLE_EXPR_PATTERN }
                            ]
                        }
                    },
                    "env": env("Environment of this step, added to the pipeline's. Values are templates."),
                    "secrets": string_or_list(
                        json!({ "type": "string", "pattern": keys::SECRET_PATTERN }),
                        "Secrets the step may read as `secrets.<NAME>`; no others."
                    ),
                    "timeout": duration("Stop the step after this long (must be more than zero)."),
                    "retry": {
                        "description": "Try again after a failure: a number of attempts (1 to 10, counting the first), or a mapping. The delay doubles from `backoff` up to `max-backoff`.",
                        "oneOf": [
                            { "type": "integer", "minimum": 1, "maximum": keys::MAX_ATTEMPTS },
                            { "$ref": "#/$defs/retry" }
                        ]
                    },
                    "continue-on-error": {
                        "description": "A failure of this step does not fail the run.",
                        "type": "boolean"
                    },
                    "allow": {
                        "description": "Privileges granted to the step's plugin; nothing by default.",
                        "oneOf": [{ "type": "null" }, { "$ref": "#/$defs/allow" }]
                    },
                    "cache": {
                        "description": "The step cache: `false` never replays this step, `true` always may, a mapping says what the key covers and which files a hit restores. Absent: cached only when Kiln can tell it is safe.",
                        "oneOf": [{ "type": "boolean" }, { "$ref": "#/$defs/cache" }]
                    }
                }
            },
            "retry": {
                "description": "Retries with exponential backoff.",
                "type": "object",
                "required": ["attempts"],
                "additionalProperties": false,
                "properties": {
                    "attempts": {
                        "description": "Tries in all, counting the first.",
                        "type": "integer",
                        "minimum": 1,
                        "maximum": keys::MAX_ATTEMPTS
                    },
                    "backoff": duration("The first delay (default `1s`)."),
                    "max-backoff": duration("The longest delay (default `5m`, or `backoff` if longer).")
                }
            },
            "cache": {
                "description": "What the step's cache key covers and what a hit restores.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "inputs": string_or_list(
                        json!({ "type": "string", "minLength": 1 }),
                        "Globs of the workspace files whose content is part of the key (default: every file of the workspace). `!` excludes."
                    ),
                    "outputs": string_or_list(
                        json!({ "type": "string", "minLength": 1 }),
                        "Globs of the workspace files the step writes: saved with the entry, restored on a hit."
                    )
                }
            },
            "allow": {
                "description": "Privileges granted to the step's plugin; nothing by default.",
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "workspace": {
                        "description": "Workspace access (read-only by default).",
                        "type": "string",
                        "enum": keys::WORKSPACE_MODES
                    },
                    "net": string_or_list(
                        json!({ "type": "string", "pattern": keys::NET_PATTERN }),
                        "Hosts the plugin may connect to, as `host:port` (port 1 to 65535)."
                    )
                }
            },
            "concurrency": {
                "description": "A concurrency group.",
                "type": "object",
                "required": ["group"],
                "additionalProperties": false,
                "properties": {
                    "group": {
                        "description": "The group's name; a template that may read `event`, `git`, `run`.",
                        "type": "string",
                        "minLength": 1
                    },
                    "cancel-in-progress": {
                        "description": "A new run cancels the older runs of its group instead of waiting for them.",
                        "type": "boolean"
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object schema with `properties`, by JSON Pointer.
    fn objects(value: &Value, pointer: String, out: &mut Vec<(String, Vec<String>)>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    out.push((pointer.clone(), props.keys().cloned().collect()));
                }
                for (k, v) in map {
                    objects(v, format!("{pointer}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    objects(v, format!("{pointer}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_object_in_the_schema_lists_exactly_the_keys_the_parser_accepts() {
        let tables: &[(&str, &[&str])] = &[
            ("", keys::TOP_KEYS),
            ("/$defs/triggers", keys::ON_KEYS),
            ("/$defs/schedule", keys::SCHEDULE_KEYS),
            ("/$defs/manual", keys::MANUAL_KEYS),
            ("/$defs/eventFilter", keys::FILTER_KEYS),
            ("/$defs/step", keys::STEP_KEYS),
            ("/$defs/retry", keys::RETRY_KEYS),
            ("/$defs/cache", keys::CACHE_KEYS),
            ("/$defs/allow", keys::ALLOW_KEYS),
            ("/$defs/concurrency", keys::CONCURRENCY_KEYS),
        ];
        let mut found = Vec::new();
        objects(&schema(), String::new(), &mut found);
        let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        let expected: Vec<&str> = tables.iter().map(|(p, _)| *p).collect();
        assert_eq!(pointers, expected, "an object schema has no key table");
        for ((pointer, props), (_, table)) in found.iter().zip(tables) {
            assert_eq!(props, table, "keys of the object at {pointer:?}");
        }
    }

    #[test]
    fn the_committed_schema_file_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.schema.json");
        let want = serde_json::to_string_pretty(&schema()).unwrap_or_default() + "\n";
        if std::env::var_os("KILN_BLESS").is_some() {
            if let Err(e) = std::fs::write(&path, &want) {
                panic!("cannot write {}: {e}", path.display());
            }
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale; run `KILN_BLESS=1 cargo test -p kiln-pipeline` and commit it",
            path.display()
        );
    }

    #[test]
    fn the_schema_declares_draft_2020_12() {
        assert_eq!(
            schema()["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
}
