//! `git-push`: commit files of a clone in the workspace and push to its remote, through the
//! host's git (credentials from the step's secrets, SSH host-key checks, `allow.net`).
//!
//! ```yaml
//! - id: publish-url
//!   uses: git-push
//!   needs: [src, deploy]
//!   allow: { workspace: write, net: ["gitlab.example.com:22"] }
//!   secrets: [DEPLOY_KEY, KNOWN_HOSTS]
//!   with:
//!     path: src                     # the clone (default: the workspace)
//!     files: [URL.md]               # what to commit (default: every change)
//!     message: "Update URL.md for ${{ steps.src.outputs.sha }}"
//!     author: "Kiln <ci@example.com>"
//!     auth: { ssh-key: DEPLOY_KEY }
//!     known-hosts: KNOWN_HOSTS
//! ```
//!
//! Without `message` nothing is committed and `HEAD` is pushed as it is.

use kiln_plugin_sdk::git::{
    self, Auth, CommitRequest, Credentials, Identity, OneOrMany, PushRequest, Remote,
    host_key_check, host_key_problems, host_key_schema, parse_identity, url_password_problem,
};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, no_problems, set_output,
};
use serde::Deserialize;

/// The author when the step names none.
const DEFAULT_AUTHOR: &str = "Kiln <kiln@kiln.invalid>";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    path: Option<String>,
    files: Option<OneOrMany>,
    message: Option<String>,
    author: Option<String>,
    committer: Option<String>,
    #[serde(default)]
    allow_empty: bool,
    branch: Option<String>,
    remote: Option<String>,
    #[serde(default)]
    force: bool,
    auth: Option<Auth>,
    known_hosts: Option<String>,
    host_key: Option<OneOrMany>,
    #[serde(default)]
    insecure_skip_host_key_check: bool,
}

struct GitPush;

fn is_expression(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.contains("${{"))
}

/// `git check-ref-format` rules for a branch name (or a full ref).
fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name != "@"
        && !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
        && !name.split('/').any(|part| part.starts_with('.'))
}

impl Plugin for GitPush {
    fn info() -> Info {
        let mut properties = json!({
            "path": { "type": "string", "description": "the repository (a clone) in the workspace (default: the workspace itself)" },
            "files": {
                "description": "what to commit, relative to the repository: files, directories or globs (default: every change, as `git add -A`)",
                "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ]
            },
            "message": { "type": "string", "minLength": 1, "description": "commit message; without it nothing is committed and HEAD is pushed as it is" },
            "author": { "type": "string", "description": format!("`Name <email>` (default `{DEFAULT_AUTHOR}`)") },
            "committer": { "type": "string", "description": "`Name <email>` (default: the author)" },
            "allow-empty": { "type": "boolean", "description": "commit even when nothing changed (default false)" },
            "branch": { "type": "string", "description": "the remote branch to update (default: the branch the clone checked out)" },
            "remote": { "type": "string", "description": "a remote of the repository by name, or a URL (default `origin`)" },
            "force": { "type": "boolean", "description": "overwrite the remote branch even when that drops commits (default false)" },
            "auth": Auth::schema("credentials for the remote, as names of the step's secrets")
        });
        if let (Some(p), Value::Object(keys)) = (properties.as_object_mut(), host_key_schema()) {
            p.extend(keys);
        }
        Info::new(
            "git-push",
            env!("CARGO_PKG_VERSION"),
            "commit files of a clone in the workspace and push them to its remote (https or ssh)",
        )
        .schema(json!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false
        }))
        .outputs(&["sha", "ref", "pushed", "committed", "previous"])
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
        problems.extend(url_password_problem(config, "remote"));
        problems.extend(check_relative_path(config, "path"));
        if config.get("message").is_none() {
            for key in ["files", "author", "committer", "allow-empty"] {
                if config.get(key).is_some_and(|v| v != &Value::Bool(false)) {
                    problems.push(Problem::at(
                        format!("/{key}"),
                        format!("`{key}` is about the commit, but there is no `message`: set one to commit, or remove `{key}` to push what is already committed"),
                    ));
                }
            }
        }
        if let Some(Value::String(m)) = config.get("message")
            && m.trim().is_empty()
        {
            problems.push(Problem::at(
                "/message",
                "the commit message is empty; write what the commit does",
            ));
        }
        for key in ["author", "committer"] {
            if let Some(v @ Value::String(text)) = config.get(key)
                && !is_expression(v)
                && parse_identity(text).is_none()
            {
                problems.push(Problem::at(
                    format!("/{key}"),
                    format!("{key} `{text}` is not `Name <email>`"),
                ));
            }
        }
        let files: Vec<(String, &Value)> = match config.get("files") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("/files/{i}"), v))
                .collect(),
            Some(v) => vec![("/files".to_string(), v)],
            None => Vec::new(),
        };
        for (at, v) in files {
            let Value::String(f) = v else { continue };
            if is_expression(v) {
                continue;
            }
            if f.starts_with('/') {
                problems.push(Problem::at(
                    at,
                    format!("`{f}` is absolute; name files relative to the repository (`path`)"),
                ));
            } else if f.split('/').any(|part| part == "..") {
                problems.push(Problem::at(
                    at,
                    format!("`{f}` leaves the repository; name files inside it"),
                ));
            }
        }
        if let Some(v @ Value::String(b)) = config.get("branch")
            && !is_expression(v)
            && !valid_ref_name(b)
        {
            problems.push(Problem::at(
                "/branch",
                format!(
                    "`{b}` is not a valid branch name (no spaces, `..`, `~^:?*[\\`, or leading `-`)"
                ),
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let path = config.path.clone().unwrap_or_else(|| ".".to_string());
        let identity = |key: &str, text: &str| -> Result<Identity, StepError> {
            parse_identity(text).ok_or_else(|| {
                StepError::InvalidConfig(format!("{key} `{text}` is not `Name <email>`"))
            })
        };

        let mut committed = false;
        if let Some(message) = &config.message {
            let author = identity("author", config.author.as_deref().unwrap_or(DEFAULT_AUTHOR))?;
            let committer = match &config.committer {
                Some(c) => Some(identity("committer", c)?),
                None => None,
            };
            let paths = config
                .files
                .clone()
                .map(OneOrMany::into_vec)
                .unwrap_or_default();
            let done = git::commit(&CommitRequest {
                repo: path.clone(),
                paths: paths.clone(),
                message: message.clone(),
                author,
                committer,
                allow_empty: config.allow_empty,
            })?;
            let sha = &done.commit.sha[..done.commit.sha.len().min(12)];
            if done.created {
                committed = true;
                let files: Vec<&str> = done.changes.iter().map(|c| c.path.as_str()).collect();
                log::info(&format!(
                    "committed {sha} in {path}: {} ({} file{}: {})",
                    message.lines().next().unwrap_or_default(),
                    files.len(),
                    if files.len() == 1 { "" } else { "s" },
                    files.join(", ")
                ));
            } else {
                let what = if paths.is_empty() {
                    "no changes".to_string()
                } else {
                    format!("no changes to {}", paths.join(", "))
                };
                log::info(&format!(
                    "nothing to commit in {path} ({what}); pushing {sha} as it is"
                ));
            }
        }

        let credentials = match &config.auth {
            None => Credentials::None,
            Some(auth) => auth.credentials()?,
        };
        let remote = config
            .remote
            .clone()
            .unwrap_or_else(|| "origin".to_string());
        let pushed = git::push(&PushRequest {
            repo: path.clone(),
            remote: Remote {
                url: remote.clone(),
                credentials,
                host_key: host_key_check(
                    config.known_hosts,
                    config.host_key,
                    config.insecure_skip_host_key_check,
                ),
            },
            source: None,
            destination: config.branch.clone(),
            force: config.force,
        })?;
        let sha = &pushed.sha[..pushed.sha.len().min(12)];
        if pushed.updated {
            log::info(&format!("pushed {sha} to {} of {remote}", pushed.ref_));
        } else {
            log::info(&format!("{} of {remote} is already at {sha}", pushed.ref_));
        }
        set_output("sha", &pushed.sha)?;
        set_output("ref", &pushed.ref_)?;
        set_output("pushed", &pushed.updated)?;
        set_output("committed", &committed)?;
        set_output("previous", &pushed.previous)
    }
}

kiln_plugin_sdk::export_plugin!(GitPush);
