//! `write-file`: write text to a file in the workspace, creating its parent directories.

use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, set_output,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: String,
    content: String,
}

struct WriteFile;

impl Plugin for WriteFile {
    fn info() -> Info {
        Info::new(
            "write-file",
            env!("CARGO_PKG_VERSION"),
            "write text to a file in the workspace, creating parent directories",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "file path relative to the workspace" },
                "content": { "type": "string", "description": "the text to write" }
            },
            "required": ["path", "content"],
            "additionalProperties": false
        }))
        .outputs(&["path", "sha256"])
        .capability(Capability::WorkspaceWrite)
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        if let Some(problem) = check_relative_path(config, "path") {
            return Err(vec![problem]);
        }
        match config.get("path").and_then(Value::as_str) {
            Some("") => Err(vec![Problem::at(
                "/path",
                "path is empty; name a file in the workspace",
            )]),
            _ => Ok(()),
        }
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let target = ctx.workspace_path(&config.path)?;
        if let Some(parent) = target.parent().filter(|p| *p != ctx.workspace) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StepError::Failed(format!("cannot create `{}`: {e}", parent.display()))
            })?;
        }
        std::fs::write(&target, config.content.as_bytes())
            .map_err(|e| StepError::Failed(format!("cannot write `{}`: {e}", config.path)))?;
        let digest = hex(&Sha256::digest(config.content.as_bytes()));
        log::info(&format!(
            "wrote {} bytes to {}",
            config.content.len(),
            config.path
        ));
        set_output("path", &config.path)?;
        set_output("sha256", &digest)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

kiln_plugin_sdk::export_plugin!(WriteFile);
