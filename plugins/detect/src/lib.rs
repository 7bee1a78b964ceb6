//! `detect`: write a Dockerfile for a project that has none, so `build` works on it.
//!
//! ```yaml
//! - id: detect
//!   uses: detect
//!   needs: [src]
//!   allow: { workspace: write }
//!   with: { path: app }
//! - id: image
//!   uses: build
//!   needs: [detect]
//!   with:
//!     context: ${{ steps.detect.outputs.context }}
//!     network: ${{ steps.detect.outputs.network }}
//!     tags: registry.example.com/app:1
//! ```
//!
//! Recognised, in this order: an existing Dockerfile (used as is), Go (`go.mod`), Node
//! (`package.json`: a server, or a front-end built and served as static files), Python
//! (`requirements.txt`, `pyproject.toml`, `*.py`), Jupyter notebooks (`*.ipynb` without an app
//! entry point), and a static site (`index.html`). A Procfile's `web:` line is the start command
//! when present. Nothing is run: detection only reads files.
//!
//! With `projects:` (directory globs relative to `path`), every matching directory that is a
//! project (of `language`, when set) gets its own `<dir>/Dockerfile`; the outputs `projects`
//! (the directories, sorted), `count` and `by-project` (per directory: `context`,
//! `dockerfile`, `language`, `generated`, `network`, `port`, `summary` and `image-name`, a
//! valid image repository path) feed a matrix of builds:
//!
//! ```yaml
//! - id: dockerfiles
//!   uses: detect
//!   allow: { workspace: write }
//!   with: { path: repo, projects: "*", language: jupyter }
//! - id: image
//!   uses: build
//!   needs: [dockerfiles]
//!   matrix: { project: "${{ steps.dockerfiles.outputs.projects }}" }
//!   with:
//!     context: ${{ steps.dockerfiles.outputs.by-project[matrix.project].context }}
//!     tags: registry.example.com/${{ steps.dockerfiles.outputs.by-project[matrix.project].image-name }}:1
//! ```

mod project;
mod projects;
mod recipe;

use kiln_plugin_sdk::{
    Capability, Context, Info, Plugin, Problem, StepError, Value, check_config,
    check_relative_path, json, log, no_problems, set_output,
};
use serde::Deserialize;

use crate::project::{Project, PythonProject};
use crate::recipe::{Options, Recipe};

const LANGUAGES: &[&str] = &["auto", "go", "node", "python", "jupyter", "static"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    path: Option<String>,
    dockerfile: Option<String>,
    language: Option<String>,
    base_image: Option<String>,
    builder_image: Option<String>,
    port: Option<u16>,
    start: Option<String>,
    main: Option<String>,
    output: Option<String>,
    #[serde(default)]
    overwrite: bool,
    projects: Option<Patterns>,
}

/// `projects: "*"` or `projects: ["*", "more/*"]`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Patterns {
    One(String),
    Many(Vec<String>),
}

impl Patterns {
    fn into_vec(self) -> Vec<String> {
        match self {
            Patterns::One(p) => vec![p],
            Patterns::Many(v) => v,
        }
    }
}

/// `dir/name` without doubling slashes; `.` means the workspace root.
fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn detect(project: &Project, language: &str, opts: &Options) -> Result<Recipe, String> {
    let python = || PythonProject::read(project);
    match language {
        "go" => recipe::go(project, opts),
        "node" => recipe::node(project, opts),
        "python" => {
            let py = python()?.unwrap_or_default();
            recipe::python(project, &py, opts)
        }
        "jupyter" => {
            let notebooks = project.notebooks();
            if notebooks.is_empty() {
                return Err(
                    "`language: jupyter`, but there is no `*.ipynb` notebook in the project"
                        .to_string(),
                );
            }
            recipe::jupyter(python()?.as_ref(), &notebooks, opts)
        }
        "static" => Ok(recipe::static_site(
            static_root(project).unwrap_or("."),
            opts,
        )),
        _ => {
            if project.exists("go.mod") {
                return recipe::go(project, opts);
            }
            if project.exists("package.json") {
                return recipe::node(project, opts);
            }
            let notebooks = project.notebooks();
            if let Some(py) = python()? {
                let runnable = opts.start.is_some()
                    || recipe::python_start(project, &py, opts.port.unwrap_or(8000)).is_ok();
                if notebooks.is_empty() || runnable {
                    return recipe::python(project, &py, opts);
                }
                return recipe::jupyter(Some(&py), &notebooks, opts);
            }
            if !notebooks.is_empty() {
                return recipe::jupyter(None, &notebooks, opts);
            }
            if let Some(root) = static_root(project) {
                return Ok(recipe::static_site(root, opts));
            }
            Err("cannot tell what kind of project this is: no Dockerfile, `go.mod`, `package.json`, `requirements.txt`, `pyproject.toml`, `*.py`, `*.ipynb` or `index.html`; add a Dockerfile, or set `language:`".to_string())
        }
    }
}

/// Where a static site's `index.html` is: the root, or `public/`.
fn static_root(project: &Project) -> Option<&'static str> {
    ["index.html", "public/index.html"]
        .into_iter()
        .find(|f| project.exists(f))
        .map(|f| if f == "index.html" { "." } else { "public" })
}

struct Detect;

impl Plugin for Detect {
    fn info() -> Info {
        Info::new(
            "detect",
            env!("CARGO_PKG_VERSION"),
            "write a Dockerfile for a Go, Node, Python, Jupyter or static-site project that has none",
        )
        .schema(json!({
            "type": "object",
            "properties": {
                "path": { "type": "string", "description": "the project directory in the workspace (default `.`)" },
                "dockerfile": { "type": "string", "description": "where to write the Dockerfile (default `<path>/Dockerfile`)" },
                "language": { "enum": LANGUAGES, "description": "skip detection (default `auto`)" },
                "base-image": { "type": "string", "description": "the image the app runs on (default: the official image for the language)" },
                "builder-image": { "type": "string", "description": "the image of the build stage (Go; Node front-ends)" },
                "port": { "type": "integer", "minimum": 1, "maximum": 65535, "description": "the port the app listens on (`EXPOSE`, `$PORT`)" },
                "start": { "type": "string", "description": "the command that starts the app (default: detected)" },
                "main": { "type": "string", "description": "Go: the main package to build, e.g. `./cmd/server`" },
                "output": { "type": "string", "description": "Node front-ends: the directory the build writes (default from the tools used: `dist`, `build`, `out`)" },
                "overwrite": { "type": "boolean", "description": "replace an existing Dockerfile (default: an existing one is used as is)" },
                "projects": {
                    "description": "directory globs under `path` (`*`, `notebooks/*`, `**`): one Dockerfile per matching project directory, listed in the `projects` output",
                    "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 } ]
                }
            },
            "additionalProperties": false
        }))
        .outputs(&[
            "dockerfile",
            "context",
            "language",
            "generated",
            "network",
            "port",
            "summary",
            "projects",
            "by-project",
            "count",
        ])
        .capability(Capability::WorkspaceWrite)
    }

    fn validate(config: &Value) -> Result<(), Vec<Problem>> {
        check_config::<Config>(config)?;
        let mut problems = Vec::new();
        for key in ["path", "dockerfile"] {
            problems.extend(check_relative_path(config, key));
        }
        if let Some(Value::String(l)) = config.get("language")
            && !l.contains("${{")
            && !LANGUAGES.contains(&l.as_str())
        {
            problems.push(Problem::at(
                "/language",
                format!(
                    "unknown language `{l}`; use one of {}",
                    LANGUAGES.join(", ")
                ),
            ));
        }
        let patterns: Vec<&str> = match config.get("projects") {
            Some(Value::String(p)) => vec![p.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if config.get("projects").is_some() {
            if matches!(config.get("projects"), Some(Value::Array(l)) if l.is_empty()) {
                problems.push(Problem::at(
                    "/projects",
                    "`projects` is an empty list; give at least one directory glob, e.g. `*`",
                ));
            }
            for p in patterns.iter().filter(|p| !p.contains("${{")) {
                if let Some(why) = projects::pattern_problem(p) {
                    problems.push(Problem::at("/projects", why));
                }
            }
            if config.get("dockerfile").is_some() {
                problems.push(Problem::at(
                    "/dockerfile",
                    "`dockerfile` cannot be combined with `projects`: each project gets `<project>/Dockerfile`",
                ));
            }
        }
        if let Some(Value::String(m)) = config.get("main")
            && !m.contains("${{")
            && !(m == "." || m.starts_with("./"))
        {
            problems.push(Problem::at(
                "/main",
                format!(
                    "`main` `{m}` must be a package path relative to the module, starting with `./`"
                ),
            ));
        }
        no_problems(problems)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let path = config.path.clone().unwrap_or_else(|| ".".to_string());
        let root = ctx.workspace_path(&path)?;
        if !root.is_dir() {
            return Err(StepError::InvalidConfig(format!(
                "`path` `{path}` is not a directory in the workspace; clone the repository first or fix `path:`"
            )));
        }
        let opts = Options {
            base_image: config.base_image.clone(),
            builder_image: config.builder_image.clone(),
            port: config.port,
            start: config.start.clone(),
            main: config.main.clone(),
            output: config.output.clone(),
        };
        let language = config.language.as_deref().unwrap_or("auto");
        if let Some(patterns) = config.projects.clone() {
            return run_projects(&ctx, &config, &path, &root, &patterns.into_vec(), &opts);
        }
        let explicit = config.dockerfile.is_some();
        let dockerfile = config
            .dockerfile
            .clone()
            .unwrap_or_else(|| join(&path, "Dockerfile"));
        let target = ctx.workspace_path(&dockerfile)?;
        let project = Project { root };
        let done = generate(
            &project,
            &path,
            &dockerfile,
            &target,
            explicit,
            language,
            config.overwrite,
            &opts,
        )?;
        set_output("dockerfile", &done.dockerfile)?;
        set_output("context", &done.context)?;
        set_output("language", &done.language)?;
        set_output("generated", &done.generated)?;
        set_output("network", &done.network)?;
        if let Some(port) = done.port {
            set_output("port", &port)?;
        }
        set_output("summary", &done.summary)
    }
}

/// What `detect` did for one project.
struct Generated {
    dockerfile: String,
    context: String,
    language: String,
    generated: bool,
    network: String,
    /// `None` for an existing Dockerfile (Kiln does not read its `EXPOSE`).
    port: Option<u16>,
    summary: String,
}

impl Generated {
    fn to_json(&self, name: &str) -> Value {
        json!({
            "context": self.context,
            "dockerfile": self.dockerfile,
            "language": self.language,
            "generated": self.generated,
            "network": self.network,
            "port": self.port,
            "summary": self.summary,
            "image-name": projects::image_name(name),
        })
    }
}

/// Use the project's own Dockerfile, or write one at `dockerfile` (guest path `target`).
#[allow(clippy::too_many_arguments)]
fn generate(
    project: &Project,
    path: &str,
    dockerfile: &str,
    target: &std::path::Path,
    explicit: bool,
    language: &str,
    overwrite: bool,
    opts: &Options,
) -> Result<Generated, StepError> {
    let existing = if target.is_file() {
        Some(dockerfile.to_string())
    } else if !explicit && project.exists("Containerfile") {
        Some(join(path, "Containerfile"))
    } else {
        None
    };
    if let (Some(found), false) = (&existing, overwrite) {
        log::info(&format!("{found} exists; using it as is"));
        return Ok(Generated {
            dockerfile: found.clone(),
            context: path.to_string(),
            language: "dockerfile".to_string(),
            generated: false,
            network: "none".to_string(),
            port: None,
            summary: format!("existing {found}"),
        });
    }
    let recipe = detect(project, language, opts)
        .map_err(|e| StepError::InvalidConfig(format!("in `{path}`: {e}")))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| StepError::Failed(format!("cannot create `{}`: {e}", parent.display())))?;
    }
    std::fs::write(target, recipe.dockerfile.as_bytes())
        .map_err(|e| StepError::Failed(format!("cannot write `{dockerfile}`: {e}")))?;
    let ignore = project.root.join(".dockerignore");
    if !ignore.exists() {
        let mut text = String::from("# Generated by Kiln's `detect` step.\n");
        for line in recipe.dockerignore {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&ignore, text).map_err(|e| {
            StepError::Failed(format!(
                "cannot write `{}`: {e}",
                join(path, ".dockerignore")
            ))
        })?;
    }
    log::info(&format!(
        "{path}: {} project ({}); wrote {dockerfile}",
        recipe.language, recipe.summary
    ));
    for line in recipe.dockerfile.lines() {
        log::info(&format!("  {line}"));
    }
    if recipe.network != "none" {
        log::info(
            "building downloads dependencies: give the build step `network: default` (the `network` output says so)",
        );
    }
    Ok(Generated {
        dockerfile: dockerfile.to_string(),
        context: path.to_string(),
        language: recipe.language.to_string(),
        generated: true,
        network: recipe.network.to_string(),
        port: Some(recipe.port),
        summary: recipe.summary,
    })
}

/// Whether `project` is one `language` can containerise (or has its own Dockerfile): the
/// directories `projects:` matches that are not projects are skipped, not errors.
fn is_project(project: &Project, language: &str) -> bool {
    if project.exists("Dockerfile") || project.exists("Containerfile") {
        return true;
    }
    let python = || {
        ["requirements.txt", "pyproject.toml", "setup.py"]
            .iter()
            .any(|f| project.exists(f))
            || project.files_in("").iter().any(|n| n.ends_with(".py"))
    };
    let web = || project.exists("index.html") || project.exists("public/index.html");
    match language {
        "go" => project.exists("go.mod"),
        "node" => project.exists("package.json"),
        "python" => python(),
        "jupyter" => !project.notebooks().is_empty(),
        "static" => web(),
        _ => {
            project.exists("go.mod")
                || project.exists("package.json")
                || python()
                || !project.notebooks().is_empty()
                || web()
        }
    }
}

/// `projects:` mode: one Dockerfile per matching project directory under `path`.
fn run_projects(
    ctx: &Context,
    config: &Config,
    path: &str,
    root: &std::path::Path,
    patterns: &[String],
    opts: &Options,
) -> Result<(), StepError> {
    let language = config.language.as_deref().unwrap_or("auto");
    let dirs = projects::matching_dirs(root, patterns);
    let mut names = Vec::new();
    let mut by_project = serde_json::Map::new();
    let mut network = "none";
    let mut languages = std::collections::BTreeSet::new();
    let mut generated_any = false;
    let mut summaries = Vec::new();
    for dir in &dirs {
        let project = Project {
            root: root.join(dir),
        };
        if !is_project(&project, language) {
            let what = if language == "auto" {
                "a project Kiln recognises".to_string()
            } else {
                format!("a `{language}` project")
            };
            log::info(&format!("{}: not {what}; skipped", join(path, dir)));
            continue;
        }
        let context = join(path, dir);
        let dockerfile = join(&context, "Dockerfile");
        let target = ctx.workspace_path(&dockerfile)?;
        let done = generate(
            &project,
            &context,
            &dockerfile,
            &target,
            false,
            language,
            config.overwrite,
            opts,
        )?;
        if done.network != "none" {
            network = "default";
        }
        generated_any |= done.generated;
        languages.insert(done.language.clone());
        summaries.push(format!("{dir} ({})", done.language));
        by_project.insert(dir.clone(), done.to_json(dir));
        names.push(dir.clone());
    }
    if names.is_empty() {
        return Err(StepError::InvalidConfig(format!(
            "no project directory under `{path}` matches `projects` {}{}; check the patterns (they are matched against directories relative to `path`)",
            patterns
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if dirs.is_empty() {
                String::new()
            } else {
                format!(
                    " with {}",
                    if language == "auto" {
                        "a recognisable project".to_string()
                    } else {
                        format!("a `{language}` project")
                    }
                )
            }
        )));
    }
    let language_out = if languages.len() == 1 {
        languages.into_iter().next().unwrap_or_default()
    } else {
        "mixed".to_string()
    };
    let summary = format!("{} projects: {}", names.len(), summaries.join(", "));
    log::info(&summary);
    set_output("projects", &names)?;
    set_output("count", &names.len())?;
    set_output("by-project", &Value::Object(by_project))?;
    set_output("context", &path)?;
    set_output("language", &language_out)?;
    set_output("generated", &generated_any)?;
    set_output("network", &network)?;
    set_output("summary", &summary)
}

kiln_plugin_sdk::export_plugin!(Detect);
