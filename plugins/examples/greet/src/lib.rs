//! An example of your own Kiln plugin. It greets `name` and reports how many files the
//! workspace holds (the workspace is preopened read-only at `ctx.workspace`).

use kiln_plugin_sdk::{
    Context, Info, Plugin, Problem, StepError, Value, check_config, json, log, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    #[serde(default)]
    excited: bool,
}

struct Greet;

impl Plugin for Greet {
    fn info() -> Info {
        Info::new(
            "greet",
            env!("CARGO_PKG_VERSION"),
            "greet someone and count the workspace's files",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "excited": { "type": "boolean", "default": false }
            },
            "required": ["name"],
            "additionalProperties": false
        }))
        .outputs(&["greeting", "files"])
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let mark = if config.excited { "!" } else { "." };
        let greeting = format!("Hello, {}{mark}", config.name);
        log::info(&greeting);
        let files = count_files(&ctx.workspace)?;
        set_output("greeting", &greeting)?;
        set_output("files", &files)
    }
}

fn count_files(dir: &std::path::Path) -> Result<u64, StepError> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

kiln_plugin_sdk::export_plugin!(Greet);
