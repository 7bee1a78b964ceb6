//! `clone`: clone a git repository into the workspace at a branch, tag or commit, through the
//! host's git (mirror cache, credentials from the step's secrets, SSH host-key checks).
//!
//! ```yaml
//! - id: src
//!   uses: clone
//!   allow: { workspace: write, net: ["github.com:443"] }
//!   secrets: [GIT_TOKEN]
//!   with:
//!     url: https://github.com/acme/app.git
//!     ref: ${{ event.after }}
//!     auth: { token: GIT_TOKEN }
//! ```

use kiln_plugin_sdk::git::{
    self, Auth, CloneRequest, Credentials, OneOrMany, Remote, host_key_check, host_key_problems,
    host_key_schema, url_password_problem,
};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    url: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    path: Option<String>,
    depth: Option<u32>,
    #[serde(default)]
    submodules: bool,
    auth: Option<Auth>,
    known_hosts: Option<String>,
    host_key: Option<OneOrMany>,
    #[serde(default)]
    insecure_skip_host_key_check: bool,
}

struct Clone;

impl Plugin for Clone {
    fn info() -> Info {
        let mut properties = json!({
            "url": { "type": "string", "description": "clone URL: https://, ssh://, user@host:path, or file:// for local runs" },
            "ref": { "type": "string", "description": "branch, tag, full ref or commit SHA (default: the remote's default branch)" },
            "path": { "type": "string", "description": "directory in the workspace (default: the workspace itself)" },
            "depth": { "type": "integer", "minimum": 1, "description": "fetch only this many commits of history" },
            "submodules": { "type": "boolean", "description": "clone submodules recursively (default false)" },
            "auth": Auth::schema("credentials, as names of the step's secrets")
        });
        if let (Some(p), Value::Object(keys)) = (properties.as_object_mut(), host_key_schema()) {
            p.extend(keys);
        }
        Info::new(
            "clone",
            env!("CARGO_PKG_VERSION"),
            "clone a git repository into the workspace (branch, tag or commit; https or ssh)",
        )
        .schema(json!({
            "type": "object",
            "properties": properties,
            "required": ["url"],
            "additionalProperties": false
        }))
        .outputs(&["sha", "ref", "message", "author", "timestamp", "path"])
        .capability(Capability::WorkspaceWrite)
        .capability(Capability::Git)
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        if let Some(auth) = config.get("auth") {
            problems.extend(Auth::problems(auth, "/auth"));
        }
        problems.extend(host_key_problems(config));
        problems.extend(url_password_problem(config, "url"));
        problems.extend(check_relative_path(config, "path"));
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let path = config.path.clone().unwrap_or_else(|| ".".to_string());
        let credentials = match &config.auth {
            None => Credentials::None,
            Some(auth) => auth.credentials()?,
        };
        let host_key = host_key_check(
            config.known_hosts,
            config.host_key,
            config.insecure_skip_host_key_check,
        );
        let request = CloneRequest {
            remote: Remote {
                url: config.url.clone(),
                credentials,
                host_key,
            },
            ref_: config.reference.clone(),
            path: path.clone(),
            depth: config.depth,
            submodules: config.submodules,
        };
        log::info(&format!(
            "cloning {} at {} into {path}",
            config.url,
            config.reference.as_deref().unwrap_or("the default branch")
        ));
        let commit = git::clone(&request)?;
        let subject = commit.message.lines().next().unwrap_or_default();
        log::info(&format!(
            "checked out {} ({}): {subject}",
            &commit.sha[..commit.sha.len().min(12)],
            commit.ref_
        ));
        set_output("sha", &commit.sha)?;
        set_output("ref", &commit.ref_)?;
        set_output("message", &commit.message)?;
        set_output(
            "author",
            &format!("{} <{}>", commit.author_name, commit.author_email),
        )?;
        set_output("timestamp", &commit.timestamp)?;
        set_output("path", &path)
    }
}

kiln_plugin_sdk::export_plugin!(Clone);
