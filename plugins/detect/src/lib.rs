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

mod project;
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
                "overwrite": { "type": "boolean", "description": "replace an existing Dockerfile (default: an existing one is used as is)" }
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
        let project = Project { root };
        let explicit = config.dockerfile.is_some();
        let dockerfile = config
            .dockerfile
            .clone()
            .unwrap_or_else(|| join(&path, "Dockerfile"));
        let target = ctx.workspace_path(&dockerfile)?;
        let existing = if target.is_file() {
            Some(dockerfile.clone())
        } else if !explicit && project.exists("Containerfile") {
            Some(join(&path, "Containerfile"))
        } else {
            None
        };
        if let (Some(found), false) = (&existing, config.overwrite) {
            log::info(&format!("{found} exists; using it as is"));
            set_output("dockerfile", found)?;
            set_output("context", &path)?;
            set_output("language", &"dockerfile")?;
            set_output("generated", &false)?;
            set_output("network", &"none")?;
            set_output("summary", &format!("existing {found}"))?;
            return Ok(());
        }
        let opts = Options {
            base_image: config.base_image,
            builder_image: config.builder_image,
            port: config.port,
            start: config.start,
            main: config.main,
            output: config.output,
        };
        let language = config.language.as_deref().unwrap_or("auto");
        let recipe = detect(&project, language, &opts)
            .map_err(|e| StepError::InvalidConfig(format!("in `{path}`: {e}")))?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StepError::Failed(format!("cannot create `{}`: {e}", parent.display()))
            })?;
        }
        std::fs::write(&target, recipe.dockerfile.as_bytes())
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
                    join(&path, ".dockerignore")
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
        set_output("dockerfile", &dockerfile)?;
        set_output("context", &path)?;
        set_output("language", &recipe.language)?;
        set_output("generated", &true)?;
        set_output("network", &recipe.network)?;
        set_output("port", &recipe.port)?;
        set_output("summary", &recipe.summary)
    }
}

kiln_plugin_sdk::export_plugin!(Detect);
