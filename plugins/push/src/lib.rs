//! `push`: push an image the builder holds to one or more registries.
//!
//! ```yaml
//! - id: publish
//!   uses: push
//!   needs: [image]
//!   allow: { net: ["registry.example.com:443"] }
//!   secrets: [REGISTRY_PASSWORD]
//!   with:
//!     image: ${{ steps.image.outputs.image }}
//!     auth: { username: ci, password: REGISTRY_PASSWORD }
//! ```
//!
//! Each registry must be in `allow.net` as `host:port`. Either every target is pushed or the
//! step fails; `dry-run: true` checks the request and pushes nothing.

use kiln_plugin_sdk::image::{self, Auth, PushRequest};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config, json, log,
    no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    image: String,
    tags: Option<OneOrMany>,
    auth: Option<Auth>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// An image id (`sha256:…`) names no repository to push to.
fn is_id(image: &str) -> bool {
    image.starts_with("sha256:")
}

struct Push;

impl Plugin for Push {
    fn info() -> Info {
        Info::new(
            "push",
            env!("CARGO_PKG_VERSION"),
            "push a built image to registries (all targets or none; registries must be in allow.net)",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "image": { "type": "string", "description": "the image to push: a build step's `image` output (a tag) or `id`" },
                "tags": {
                    "description": "references to push to (default: `image` itself)",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
                },
                "auth": Auth::schema("registry credentials: `username` + `password` (a secret's name), or `docker-config: true`"),
                "dry-run": { "type": "boolean", "description": "check everything, push nothing" }
            },
            "required": ["image"],
            "additionalProperties": false
        }))
        .outputs(&["digest", "references", "image", "pushed"])
        .capability(Capability::Registry)
        .side_effects()
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        if let Some(auth) = config.get("auth") {
            problems.extend(Auth::problems(auth, "/auth"));
        }
        if let Some(Value::String(image)) = config.get("image")
            && is_id(image)
            && config.get("tags").is_none()
        {
            problems.push(Problem::at(
                "/tags",
                format!("`{image}` is an image id, which names no repository; set `tags:` to say where to push"),
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let targets = match config.tags {
            Some(OneOrMany::One(t)) => vec![t],
            Some(OneOrMany::Many(t)) => t,
            None if is_id(&config.image) => {
                return Err(StepError::InvalidConfig(format!(
                    "`{}` is an image id, which names no repository; set `tags:` to say where to push",
                    config.image
                )));
            }
            None => vec![config.image.clone()],
        };
        if targets.is_empty() {
            return Err(StepError::InvalidConfig(
                "`tags` is empty; list at least one reference to push to".into(),
            ));
        }
        if config.dry_run {
            log::info(&format!(
                "dry run: would push {} to {}",
                config.image,
                targets.join(", ")
            ));
            set_output("pushed", &false)?;
            set_output("references", &targets)?;
            return Ok(());
        }
        let request = PushRequest {
            image: config.image.clone(),
            targets: targets.clone(),
            auth: config.auth.unwrap_or_default().registry_auth(),
        };
        let pushed = image::push(&request)?;
        for r in &pushed.references {
            log::info(&format!("pushed {r}"));
        }
        set_output("digest", &pushed.digest)?;
        set_output(
            "image",
            &pushed.references.first().cloned().unwrap_or_default(),
        )?;
        set_output("references", &pushed.references)?;
        set_output("pushed", &true)
    }
}

kiln_plugin_sdk::export_plugin!(Push);
