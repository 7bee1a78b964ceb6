//! `nx-affected`: the Nx projects a change affects (what `nx show projects --affected` prints),
//! computed in the plugin by `kiln-nx` from git history the host reads. No Node, no Nx install.
//!
//! ```yaml
//! - id: affected
//!   uses: nx-affected
//!   with: { path: src }            # base/head default to event.before/event.after
//! - id: test
//!   matrix: { project: ${{ fromJSON(steps.affected.outputs.projects) }} }
//!   run: npx nx test ${{ matrix.project }}
//! ```
//!
//! Which commits are read (the same as Nx):
//! - the change list is `git diff base...head`: from the merge base of `base` and `head` to
//!   `head` (the host fetches a missing base of a shallow clone from `origin`);
//! - the workspace at head (projects, nx.json, sources for imports) is the checkout in the
//!   workspace when it is at `head` (files listed by `git ls-tree head`), else read from git;
//! - the few root files whose JSON diff matters (`package.json`, the lockfile, the root
//!   tsconfig) are read at `base` itself, not at the merge base: Nx reads `--base`'s content
//!   there too. When `base` is an ancestor of `head` (a push) both are the same commit.

use std::path::PathBuf;

use kiln_nx::{Change, ChangeKind, Project, ProjectType, Snapshot};
use kiln_plugin_sdk::git::{self, Auth, Credentials, HostKeyCheck, Remote};
use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    base: Option<String>,
    head: Option<String>,
    path: Option<String>,
    auth: Option<Auth>,
    known_hosts: Option<String>,
    include: Option<OneOrMany>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    #[serde(alias = "app")]
    Application,
    #[serde(alias = "lib")]
    Library,
}

struct NxAffected;

impl Plugin for NxAffected {
    fn info() -> Info {
        let secret = |what: &str| json!({ "type": "string", "description": format!("name of the step secret holding {what}") });
        Info::new(
            "nx-affected",
            env!("CARGO_PKG_VERSION"),
            "the Nx projects affected between two commits (as `nx show projects --affected`), without Node",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "base": { "type": "string", "description": "base commit (default: the event's `before`)" },
                "head": { "type": "string", "description": "head commit (default: the event's `after`)" },
                "path": { "type": "string", "description": "the repository (Nx workspace root) in the workspace (default `.`)" },
                "auth": Auth::schema("credentials for `origin`, to fetch a base missing from a shallow clone"),
                "known-hosts": secret("known_hosts lines for `origin`'s SSH server"),
                "include": {
                    "description": "keep only projects whose name matches one of these globs",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
                },
                "type": { "enum": ["application", "library", "app", "lib"], "description": "keep only this project type" }
            },
            "additionalProperties": false
        }))
        .outputs(&["projects", "apps", "details", "count"])
        .capability(Capability::Git)
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = config
            .get("auth")
            .map(|a| Auth::problems(a, "/auth"))
            .unwrap_or_default();
        problems.extend(check_relative_path(config, "path"));
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let repo = config.path.clone().unwrap_or_else(|| ".".to_string());
        let base = sha_or_event(config.base.as_deref(), &ctx.event, "base", "before")?;
        let head = sha_or_event(config.head.as_deref(), &ctx.event, "head", "after")?;
        let dir = ctx.workspace_path(&repo)?;
        let remote = remote(&config, &dir)?;

        let changes = git::changed_files(&repo, &base, &head, remote.as_ref())?;
        log::info(&format!(
            "{} file(s) changed between {}...{}",
            changes.len(),
            short(&base),
            short(&head)
        ));
        let changes: Vec<Change> = changes.into_iter().map(change).collect();

        let head_sha = git::resolve(&repo, &head)?.sha;
        let checked_out = git::resolve(&repo, "HEAD").is_ok_and(|c| c.sha == head_sha);
        if !checked_out {
            log::info("the checkout is not at head; reading head's files from git");
        }
        let head_snapshot = Head {
            repo: repo.clone(),
            rev: head_sha,
            dir: checked_out.then_some(dir),
        };
        let base_snapshot = Base {
            repo: repo.clone(),
            rev: base.clone(),
        };
        let mut projects = kiln_nx::affected(&base_snapshot, &head_snapshot, &changes)
            .map_err(|e| StepError::Failed(e.to_string()))?;

        if let Some(include) = config.include {
            let globs: Vec<kiln_nx::glob::Glob> = match include {
                OneOrMany::One(p) => vec![p],
                OneOrMany::Many(p) => p,
            }
            .iter()
            .map(|p| kiln_nx::glob::Glob::new(p))
            .collect();
            projects.retain(|p| globs.iter().any(|g| g.is_match(&p.name)));
        }
        if let Some(kind) = config.kind {
            let want = match kind {
                Kind::Application => ProjectType::Application,
                Kind::Library => ProjectType::Library,
            };
            projects.retain(|p| p.kind == want);
        }

        let names: Vec<&str> = projects.iter().map(|p| p.name.as_str()).collect();
        log::info(&format!(
            "{} affected project(s): {}",
            names.len(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
        let apps: Vec<&str> = projects
            .iter()
            .filter(|p| p.kind == ProjectType::Application)
            .map(|p| p.name.as_str())
            .collect();
        let details: Vec<Value> = projects.iter().map(detail).collect();
        set_output("projects", &names)?;
        set_output("apps", &apps)?;
        set_output("details", &details)?;
        set_output("count", &names.len())
    }
}

fn detail(p: &Project) -> Value {
    json!({
        "name": p.name,
        "root": p.root,
        "tags": p.tags,
        "type": match p.kind {
            ProjectType::Application => "application",
            ProjectType::Library => "library",
            ProjectType::Unknown => "unknown",
        },
    })
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `with.<key>`, else the event's `<field>`; an all-zero SHA (a new branch) is not a commit.
fn sha_or_event(
    given: Option<&str>,
    event: &Value,
    key: &str,
    field: &str,
) -> Result<String, StepError> {
    if let Some(v) = given {
        if v.trim().is_empty() {
            return Err(StepError::InvalidConfig(format!(
                "`{key}` is empty; give a commit SHA or ref"
            )));
        }
        return Ok(v.trim().to_string());
    }
    match event.get(field).and_then(Value::as_str) {
        Some(v) if !v.is_empty() && !v.bytes().all(|b| b == b'0') => Ok(v.to_string()),
        Some(v) if !v.is_empty() => Err(StepError::InvalidConfig(format!(
            "the event's `{field}` is `{v}` (no such commit: a new branch?); set `{key}:` explicitly"
        ))),
        _ => Err(StepError::InvalidConfig(format!(
            "no `{key}` commit: set `with.{key}`, or run on an event with `{field}` (a push)"
        ))),
    }
}

fn change(c: git::Change) -> Change {
    let kind = match c.kind {
        git::ChangeKind::Added => ChangeKind::Added,
        git::ChangeKind::Deleted => ChangeKind::Deleted,
        git::ChangeKind::Renamed => ChangeKind::Renamed,
        git::ChangeKind::Modified | git::ChangeKind::TypeChanged => ChangeKind::Modified,
    };
    Change {
        kind,
        path: c.path,
        old_path: c.old_path,
    }
}

/// Credentials for `origin`, when the config names any. The host uses them only for a remote
/// whose URL is `origin`'s, so the URL is read from the repository's `.git/config`.
fn remote(config: &Config, dir: &std::path::Path) -> Result<Option<Remote>, StepError> {
    if config.auth.is_none() && config.known_hosts.is_none() {
        return Ok(None);
    }
    let credentials = match &config.auth {
        None => Credentials::None,
        Some(auth) => auth.credentials()?,
    };
    let host_key = match &config.known_hosts {
        Some(secret) => HostKeyCheck::KnownHostsSecret(secret.clone()),
        None => HostKeyCheck::System,
    };
    let url = origin_url(dir).ok_or_else(|| {
        StepError::InvalidConfig(format!(
            "`auth` is for `origin`, but the repository at `{}` has no `origin` remote",
            dir.display()
        ))
    })?;
    Ok(Some(Remote {
        url,
        credentials,
        host_key,
    }))
}

/// `remote.origin.url` from `.git/config` (a plain clone's layout).
fn origin_url(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".git/config")).ok()?;
    let mut in_origin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_origin = line.replace(' ', "") == "[remote\"origin\"]";
        } else if in_origin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "url"
        {
            return Some(value.trim().to_string());
        }
    }
    None
}

/// Head: the checkout when it is at head, else git; the file list is always git's.
struct Head {
    repo: String,
    rev: String,
    dir: Option<PathBuf>,
}

impl Snapshot for Head {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, kiln_nx::Error> {
        match &self.dir {
            Some(dir) => match std::fs::read(dir.join(path)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(kiln_nx::Error::read(path, e.to_string())),
            },
            None => git::read_file(&self.repo, &self.rev, path)
                .map_err(|e| kiln_nx::Error::read(path, e.message)),
        }
    }

    fn list(&self) -> Result<Vec<String>, kiln_nx::Error> {
        git::list_files(&self.repo, &self.rev).map_err(|e| kiln_nx::Error::read(".", e.message))
    }
}

/// Base: read from git at `base` (only a few root files are read).
struct Base {
    repo: String,
    rev: String,
}

impl Snapshot for Base {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, kiln_nx::Error> {
        git::read_file(&self.repo, &self.rev, path)
            .map_err(|e| kiln_nx::Error::read(path, e.message))
    }

    fn list(&self) -> Result<Vec<String>, kiln_nx::Error> {
        git::list_files(&self.repo, &self.rev).map_err(|e| kiln_nx::Error::read(".", e.message))
    }
}

kiln_plugin_sdk::export_plugin!(NxAffected);
