//! `build`: build an OCI image from a Dockerfile with the host's BuildKit.
//!
//! ```yaml
//! - id: image
//!   uses: build
//!   needs: [src]
//!   secrets: [NPM_TOKEN]
//!   with:
//!     context: app
//!     tags: registry.example.com/team/app:${{ steps.src.outputs.sha }}
//!     build-args: { VERSION: "1.2.3" }
//!     secrets: { npmrc: NPM_TOKEN }   # RUN --mount=type=secret,id=npmrc
//! ```
//!
//! BuildKit's progress is streamed into the step log. With Docker's BuildKit the image stays in
//! the daemon's store for a later `push` step; `push: true` pushes every tag right after the
//! build (the only way with a standalone buildkitd, which keeps no image store).

use std::collections::BTreeMap;

use kiln_plugin_sdk::image::{self, Auth, BuildNetwork, BuildRequest, BuildSecret, RegistryLogin};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    context: Option<String>,
    dockerfile: Option<String>,
    tags: Option<OneOrMany>,
    #[serde(default)]
    build_args: BTreeMap<String, Scalar>,
    target: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    platform: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    network: Option<String>,
    cache_from: Option<OneOrMany>,
    cache_to: Option<OneOrMany>,
    #[serde(default)]
    no_cache: bool,
    #[serde(default)]
    pull: bool,
    #[serde(default)]
    logins: Vec<Login>,
    #[serde(default)]
    push: bool,
    auth: Option<Auth>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Login {
    registry: String,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    docker_config: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(v: Option<OneOrMany>) -> Vec<String> {
        match v {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        }
    }
}

/// Build args and labels may be written as numbers or booleans in YAML.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Num(kiln_plugin_sdk::serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Num(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn network(value: Option<&str>) -> Option<BuildNetwork> {
    match value.unwrap_or("none") {
        "none" => Some(BuildNetwork::None),
        "default" => Some(BuildNetwork::Default),
        "host" => Some(BuildNetwork::Host),
        _ => None,
    }
}

/// The registry part of an image reference (`host[:port]`), as Docker reads it: the first
/// path component when it has a dot or a colon or is `localhost`, else Docker Hub.
fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// `dir/name` without doubling slashes; `.` as a dir means the workspace root.
fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

struct Build;

impl Plugin for Build {
    fn info() -> Info {
        let list = |what: &str| {
            json!({
                "description": what,
                "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
            })
        };
        let scalars = |what: &str| {
            json!({
                "type": "object",
                "description": what,
                "additionalProperties": { "type": ["string", "number", "boolean"] }
            })
        };
        let mut login = Auth::schema("credentials for one registry");
        login["properties"]["registry"] =
            json!({ "type": "string", "description": "registry host[:port]" });
        login["required"] = json!(["registry"]);
        Info::new(
            "build",
            env!("CARGO_PKG_VERSION"),
            "build an OCI image from a Dockerfile with BuildKit (progress in the step log)",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "context": { "type": "string", "description": "context directory in the workspace (default `.`); its .dockerignore applies" },
                "dockerfile": { "type": "string", "description": "Dockerfile path in the workspace (default `<context>/Dockerfile`)" },
                "tags": list("image references to name the image with, e.g. `registry.example.com/app:1.0`"),
                "build-args": scalars("`ARG` values"),
                "target": { "type": "string", "description": "the stage to build" },
                "labels": scalars("image labels"),
                "platform": { "type": "string", "description": "`os/arch[/variant]`, e.g. `linux/amd64`" },
                "secrets": { "type": "object", "description": "secret mounts: `id: SECRET_NAME` (a secret of the step) for `RUN --mount=type=secret,id=id`", "additionalProperties": { "type": "string" } },
                "network": { "enum": ["none", "default", "host"], "description": "network for RUN instructions (default `none`)" },
                "cache-from": list("caches to import: `type=registry,ref=…` (or a bare reference), `type=local,src=DIR`"),
                "cache-to": list("caches to export: `type=inline`, `type=registry,ref=…`, `type=local,dest=DIR`"),
                "no-cache": { "type": "boolean", "description": "do not use the build cache" },
                "pull": { "type": "boolean", "description": "always look for newer base images" },
                "logins": { "type": "array", "description": "credentials for registries the build pulls from (and pushes to)", "items": login },
                "push": { "type": "boolean", "description": "push every tag once built (all or nothing); each tag's registry must be in `allow.net`" },
                "auth": Auth::schema("credentials for pushing to the tags' registry: `username` + `password` (a secret's name), or `docker-config: true`"),
                "dry-run": { "type": "boolean", "description": "build, but push nothing even with `push: true`" }
            },
            "additionalProperties": false
        }))
        .outputs(&[
            "image",
            "id",
            "tags",
            "size",
            "driver",
            "digest",
            "references",
            "pushed",
        ])
        .capability(Capability::Buildkit)
        .capability(Capability::Registry)
        // The image lands in the daemon, where a later `push` step expects it.
        .side_effects()
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        problems.extend(check_relative_path(config, "context"));
        problems.extend(check_relative_path(config, "dockerfile"));
        if let Some(Value::String(n)) = config.get("network")
            && !n.contains("${{")
            && network(Some(n)).is_none()
        {
            problems.push(Problem::at(
                "/network",
                format!("unknown network `{n}`; use `none`, `default` or `host`"),
            ));
        }
        if let Some(auth) = config.get("auth") {
            problems.extend(Auth::problems(auth, "/auth"));
        }
        if config.get("push") == Some(&Value::Bool(true)) && config.get("tags").is_none() {
            problems.push(Problem::at(
                "/push",
                "`push: true` needs `tags:` to say where the image goes",
            ));
        }
        if let Some(Value::Array(logins)) = config.get("logins") {
            for (i, login) in logins.iter().enumerate() {
                problems.extend(Auth::problems(login, &format!("/logins/{i}")));
            }
        }
        if let Some(Value::Object(secrets)) = config.get("secrets") {
            for id in secrets.keys() {
                if id.is_empty() || id.contains(|c: char| c == ',' || c == '=' || c.is_whitespace())
                {
                    problems.push(Problem::at(
                        format!("/secrets/{id}"),
                        format!("secret id `{id}` cannot contain `,`, `=` or spaces"),
                    ));
                }
            }
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let context = config.context.clone().unwrap_or_else(|| ".".to_string());
        let dockerfile = config
            .dockerfile
            .clone()
            .unwrap_or_else(|| join(&context, "Dockerfile"));
        let network = network(config.network.as_deref()).ok_or_else(|| {
            StepError::InvalidConfig(format!(
                "unknown network `{}`; use `none`, `default` or `host`",
                config.network.clone().unwrap_or_default()
            ))
        })?;
        let tags = OneOrMany::list(config.tags);
        let push = config.push && !config.dry_run;
        let mut logins: Vec<RegistryLogin> = config
            .logins
            .into_iter()
            .map(|l| RegistryLogin {
                auth: Auth {
                    username: l.username,
                    password: l.password,
                    docker_config: l.docker_config,
                }
                .registry_auth(),
                registry: l.registry,
            })
            .collect();
        if let Some(auth) = &config.auth {
            // `auth` logs in to the registry of every tag.
            for tag in &tags {
                let registry = registry_of(tag);
                if !logins.iter().any(|l| l.registry == registry) {
                    logins.push(RegistryLogin {
                        registry,
                        auth: auth.registry_auth(),
                    });
                }
            }
        }
        let request = BuildRequest {
            context: context.clone(),
            dockerfile: dockerfile.clone(),
            build_args: config
                .build_args
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
            target: config.target,
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
            platform: config.platform,
            secrets: config
                .secrets
                .into_iter()
                .map(|(id, secret)| BuildSecret { id, secret })
                .collect(),
            network,
            cache_from: OneOrMany::list(config.cache_from),
            cache_to: OneOrMany::list(config.cache_to),
            tags: tags.clone(),
            no_cache: config.no_cache,
            pull: config.pull,
            logins,
            push,
        };
        log::info(&format!("building {dockerfile} (context {context})"));
        let built = image::build(&request)?;
        let name = built
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| built.image_id.clone());
        log::info(&format!(
            "built {name} ({}, {} bytes, {} driver)",
            built.image_id, built.size, built.driver
        ));
        set_output("image", &name)?;
        set_output("id", &built.image_id)?;
        set_output("tags", &built.tags)?;
        set_output("size", &built.size)?;
        set_output("driver", &built.driver)?;
        if config.push && config.dry_run {
            log::info(&format!("dry run: would push {}", built.tags.join(", ")));
        }
        match built.pushed {
            Some(pushed) => {
                for r in &pushed.references {
                    log::info(&format!("pushed {r}"));
                }
                set_output("digest", &pushed.digest)?;
                set_output("references", &pushed.references)?;
                set_output("pushed", &true)
            }
            None => set_output("pushed", &false),
        }
    }
}

kiln_plugin_sdk::export_plugin!(Build);
