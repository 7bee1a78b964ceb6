//! `echo`: log a message and set it as the output `message`.

use kiln_plugin_sdk::{
    Context, Info, Plugin, Problem, StepError, Value, check_config, json, log, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    message: String,
}

struct Echo;

impl Plugin for Echo {
    fn info() -> Info {
        Info::new(
            "echo",
            env!("CARGO_PKG_VERSION"),
            "log a message and set it as the output `message`",
        )
        .schema(json!({
            "type": "object",
            "properties": { "message": { "type": "string", "description": "the text to log" } },
            "required": ["message"],
            "additionalProperties": false
        }))
        .outputs(&["message"])
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        log::info(&config.message);
        set_output("message", &config.message)
    }
}

kiln_plugin_sdk::export_plugin!(Echo);
