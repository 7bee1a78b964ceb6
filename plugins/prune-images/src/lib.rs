//! `prune-images`: delete old images of a registry repository, keeping the newest ones.
//!
//! ```yaml
//! - id: prune
//!   uses: prune-images
//!   allow: { net: ["registry.example.com:443"] }
//!   secrets: [REGISTRY_PASSWORD]
//!   with:
//!     repository: registry.example.com/team/app
//!     keep: 5              # the newest 5 matching tags stay
//!     match: "v*"          # globs over tag names (`*`, `?`); default every tag
//!     exclude: [latest]    # tags never deleted (and what they point to)
//!     auth: { username: ci, password: REGISTRY_PASSWORD }
//!     dry-run: false
//! ```
//!
//! "Newest" is the image's `created` time (its config), then the tag name; tags without a
//! creation time (indexes) count as oldest. A manifest is deleted only when no tag that stays
//! points to it: deleting a manifest removes every tag of it, so a kept tag, an excluded tag or
//! one the pattern does not select protects its manifest. The registry must be in `allow.net`.

use std::collections::BTreeSet;

use kiln_plugin_sdk::image::{self, Auth, TagInfo};
use kiln_plugin_sdk::{
    Capability, Context, Info, OneOrMany, Plugin, Problem, StepError, Value, check_config, json,
    log, no_problems, set_output,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    repository: String,
    keep: u32,
    #[serde(rename = "match")]
    pattern: Option<OneOrMany>,
    #[serde(default)]
    exclude: Vec<String>,
    auth: Option<Auth>,
    #[serde(default)]
    dry_run: bool,
}

/// Glob match over a whole tag: `*` any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What a prune does: the tags that stay and the manifests to delete (with their tags).
#[derive(Debug, PartialEq)]
struct Plan {
    kept: Vec<String>,
    /// Digest and the tags that go with it.
    delete: Vec<(String, Vec<String>)>,
}

fn plan(tags: &[TagInfo], patterns: &[String], exclude: &[String], keep: usize) -> Plan {
    let selected = |t: &TagInfo| {
        !exclude.iter().any(|e| glob(e, &t.tag))
            && (patterns.is_empty() || patterns.iter().any(|p| glob(p, &t.tag)))
    };
    let mut candidates: Vec<&TagInfo> = tags.iter().filter(|t| selected(t)).collect();
    // Newest first: RFC 3339 times in UTC compare as text; no time sorts last.
    candidates.sort_by(|a, b| {
        b.created
            .is_some()
            .cmp(&a.created.is_some())
            .then_with(|| b.created.cmp(&a.created))
            .then_with(|| b.tag.cmp(&a.tag))
    });
    let kept: Vec<String> = candidates
        .iter()
        .take(keep)
        .map(|t| t.tag.clone())
        .collect();
    let old: BTreeSet<&str> = candidates
        .iter()
        .skip(keep)
        .map(|t| t.tag.as_str())
        .collect();
    // A manifest stays if any tag that stays points to it.
    let protected: BTreeSet<&str> = tags
        .iter()
        .filter(|t| !old.contains(t.tag.as_str()))
        .map(|t| t.digest.as_str())
        .collect();
    let mut delete: Vec<(String, Vec<String>)> = Vec::new();
    for t in candidates.iter().skip(keep) {
        if protected.contains(t.digest.as_str()) {
            continue;
        }
        match delete.iter_mut().find(|(d, _)| *d == t.digest) {
            Some((_, names)) => names.push(t.tag.clone()),
            None => delete.push((t.digest.clone(), vec![t.tag.clone()])),
        }
    }
    Plan { kept, delete }
}

struct PruneImages;

impl Plugin for PruneImages {
    fn info() -> Info {
        Info::new(
            "prune-images",
            env!("CARGO_PKG_VERSION"),
            "delete old images of a registry repository, keeping the newest N tags (the registry must be in allow.net)",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "repository": { "type": "string", "description": "`host[:port]/path` of the repository, without a tag" },
                "keep": { "type": "integer", "minimum": 0, "description": "how many of the newest selected tags stay" },
                "match": {
                    "description": "globs (`*`, `?`) selecting the tags to prune among (default: every tag)",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
                },
                "exclude": { "type": "array", "items": { "type": "string" }, "description": "globs of tags never deleted" },
                "auth": Auth::schema("registry credentials: `username` + `password` (a secret's name), or `docker-config: true`"),
                "dry-run": { "type": "boolean", "description": "list what would be deleted, delete nothing" }
            },
            "required": ["repository", "keep"],
            "additionalProperties": false
        }))
        .outputs(&["kept", "deleted", "digests"])
        .capability(Capability::Registry)
        .side_effects()
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        if let Some(auth) = config.get("auth") {
            problems.extend(Auth::problems(auth, "/auth"));
        }
        if let Some(Value::String(repo)) = config.get("repository")
            && !repo.contains("${{")
            && (repo.contains('@') || repo.rsplit('/').next().is_some_and(|l| l.contains(':')))
        {
            problems.push(Problem::at(
                "/repository",
                format!("`{repo}` names a tag or digest; give the repository only, e.g. `registry.example.com/team/app`"),
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let patterns = config.pattern.map(OneOrMany::into_vec).unwrap_or_default();
        let auth = config.auth.unwrap_or_default().registry_auth();
        let tags = image::list_tags(&config.repository, &auth)?;
        log::info(&format!("{} has {} tag(s)", config.repository, tags.len()));
        let plan = plan(&tags, &patterns, &config.exclude, config.keep as usize);
        for t in &plan.kept {
            log::info(&format!("keep {}:{t}", config.repository));
        }
        let mut deleted_tags = Vec::new();
        let mut digests = Vec::new();
        for (digest, names) in &plan.delete {
            let what = format!("{}:{} ({digest})", config.repository, names.join(", "));
            if config.dry_run {
                log::info(&format!("dry run: would delete {what}"));
            } else if image::delete_manifest(&config.repository, digest, &auth)? {
                log::info(&format!("deleted {what}"));
            } else {
                log::info(&format!("already gone: {what}"));
            }
            deleted_tags.extend(names.iter().cloned());
            digests.push(digest.clone());
        }
        if plan.delete.is_empty() {
            log::info("nothing to delete");
        }
        set_output("kept", &plan.kept)?;
        set_output("deleted", &deleted_tags)?;
        set_output("digests", &digests)
    }
}

kiln_plugin_sdk::export_plugin!(PruneImages);
