//! What a project directory holds: the facts the Dockerfile is written from.
//!
//! Detection reads a few well-known files and never runs anything. The order decides when
//! several markers are present: an existing Dockerfile, then `go.mod`, `package.json`, Python
//! markers (a notebook project when it has notebooks and no app entry point), notebooks alone,
//! then a static site (`index.html`).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Directories never searched for notebooks or entry points.
pub const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".ipynb_checkpoints",
    "vendor",
    "dist",
    "build",
    "target",
];

/// How deep below the project root notebooks are looked for.
const NOTEBOOK_DEPTH: usize = 3;

/// A project directory on the (guest) filesystem.
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn file(&self, name: &str) -> Option<String> {
        let path = self.root.join(name);
        if path.is_file() {
            fs::read_to_string(path).ok()
        } else {
            None
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        self.root.join(name).exists()
    }

    /// Names of regular files directly in `dir` (relative to the root), sorted.
    pub fn files_in(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Names of subdirectories of `dir`, sorted, without the ones never searched.
    pub fn dirs_in(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !SKIP_DIRS.contains(&n.as_str()))
            .collect();
        names.sort();
        names
    }

    /// Notebooks (`*.ipynb`) up to [`NOTEBOOK_DEPTH`] levels down, relative paths, sorted.
    pub fn notebooks(&self) -> Vec<String> {
        let mut found = Vec::new();
        self.walk_notebooks(Path::new(""), 0, &mut found);
        found.sort();
        found
    }

    fn walk_notebooks(&self, rel: &Path, depth: usize, found: &mut Vec<String>) {
        let rel_str = rel.to_string_lossy().into_owned();
        for name in self.files_in(&rel_str) {
            if name.ends_with(".ipynb") {
                found.push(rel.join(&name).to_string_lossy().into_owned());
            }
        }
        if depth < NOTEBOOK_DEPTH {
            for dir in self.dirs_in(&rel_str) {
                self.walk_notebooks(&rel.join(dir), depth + 1, found);
            }
        }
    }

    /// The `web:` command of a Procfile (the Heroku and Nixpacks convention).
    pub fn procfile_web(&self) -> Option<String> {
        let text = self.file("Procfile")?;
        text.lines().find_map(|l| {
            let (kind, cmd) = l.split_once(':')?;
            (kind.trim() == "web" && !cmd.trim().is_empty()).then(|| cmd.trim().to_string())
        })
    }
}

/// `go.mod`: what the build needs to know.
#[derive(Debug, Default)]
pub struct GoModule {
    pub module: String,
    /// `major.minor` of the `toolchain` line, else of the `go` line.
    pub version: Option<String>,
    pub has_requires: bool,
}

impl GoModule {
    pub fn parse(text: &str) -> GoModule {
        let mut m = GoModule::default();
        let mut go = None;
        let mut toolchain = None;
        let mut in_require = false;
        for raw in text.lines() {
            let line = raw.split("//").next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if in_require {
                if line == ")" {
                    in_require = false;
                } else {
                    m.has_requires = true;
                }
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("module"), Some(name)) => m.module = name.trim_matches('"').to_string(),
                (Some("go"), Some(v)) => go = Some(v.to_string()),
                (Some("toolchain"), Some(v)) => {
                    toolchain = Some(v.trim_start_matches("go").to_string())
                }
                (Some("require"), Some("(")) => in_require = true,
                (Some("require"), Some(_)) => m.has_requires = true,
                _ => {}
            }
        }
        m.version = toolchain.or(go).and_then(|v| major_minor(&v));
        m
    }
}

/// `1.22.3` -> `1.22`; `1.22` stays; anything else is dropped.
pub fn major_minor(v: &str) -> Option<String> {
    let mut parts = v.split('.');
    let major = parts.next()?;
    let minor = parts.next()?;
    let minor: String = minor.chars().take_while(|c| c.is_ascii_digit()).collect();
    (major.chars().all(|c| c.is_ascii_digit()) && !major.is_empty() && !minor.is_empty())
        .then(|| format!("{major}.{minor}"))
}

/// The first run of digits in `text` (`>=18.2` -> `18`, `^20` -> `20`).
pub fn first_number(text: &str) -> Option<String> {
    let digits: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (!digits.is_empty()).then_some(digits)
}

/// The first `major.minor` in `text` (`>=3.10` -> `3.10`, `python-3.11.4` -> `3.11`).
pub fn first_version(text: &str) -> Option<String> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    major_minor(&rest)
}

/// The Go main package to build: `.` when the root is a main package, else the one main
/// package under `cmd/` (or the one named like the module when there are several).
pub fn go_main(project: &Project, module: &str) -> Result<String, String> {
    if is_go_main(project, "") {
        return Ok(".".to_string());
    }
    let mains: Vec<String> = project
        .dirs_in("cmd")
        .into_iter()
        .filter(|d| is_go_main(project, &format!("cmd/{d}")))
        .collect();
    let last = module.rsplit('/').next().unwrap_or_default();
    match mains.as_slice() {
        [one] => Ok(format!("./cmd/{one}")),
        [] => Err(
            "no main package: neither the root nor a directory under `cmd/` has `package main`; set `main:` to the package to build, e.g. `./server`".to_string(),
        ),
        many => match many.iter().find(|m| *m == last) {
            Some(m) => Ok(format!("./cmd/{m}")),
            None => Err(format!(
                "several main packages under `cmd/` ({}); set `main:` to the one to build, e.g. `./cmd/{}`",
                many.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                many[0]
            )),
        },
    }
}

fn is_go_main(project: &Project, dir: &str) -> bool {
    project
        .files_in(dir)
        .iter()
        .filter(|n| n.ends_with(".go") && !n.ends_with("_test.go"))
        .any(|n| {
            let path = if dir.is_empty() {
                n.clone()
            } else {
                format!("{dir}/{n}")
            };
            project
                .file(&path)
                .is_some_and(|text| declares_package_main(&text))
        })
}

/// Whether Go source declares `package main` (comments and build tags before it allowed).
fn declares_package_main(text: &str) -> bool {
    let mut in_block = false;
    for raw in text.lines() {
        let mut line = raw.trim();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    in_block = false;
                    line = line[end + 2..].trim();
                }
                None => continue,
            }
        }
        if line.starts_with("/*") {
            if !line.contains("*/") {
                in_block = true;
            }
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        return line
            .strip_prefix("package ")
            .map(|rest| rest.split_whitespace().next() == Some("main"))
            .unwrap_or(false);
    }
    false
}

/// `package.json` facts.
#[derive(Debug)]
pub struct NodePackage {
    pub manager: NodeManager,
    /// The lockfile to copy before installing.
    pub lockfile: Option<&'static str>,
    pub node_major: Option<String>,
    pub start: Option<String>,
    pub main: Option<String>,
    pub build: bool,
    pub has_dependencies: bool,
    /// Names of all dependencies (runtime and dev).
    pub dependency_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeManager {
    Npm,
    Yarn,
    Pnpm,
}

impl NodePackage {
    pub fn read(project: &Project, text: &str) -> Result<NodePackage, String> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| format!("`package.json` is not valid JSON: {e}"))?;
        let (manager, lockfile) = if project.exists("pnpm-lock.yaml") {
            (NodeManager::Pnpm, Some("pnpm-lock.yaml"))
        } else if project.exists("yarn.lock") {
            (NodeManager::Yarn, Some("yarn.lock"))
        } else if project.exists("package-lock.json") {
            (NodeManager::Npm, Some("package-lock.json"))
        } else if project.exists("npm-shrinkwrap.json") {
            (NodeManager::Npm, Some("npm-shrinkwrap.json"))
        } else {
            (NodeManager::Npm, None)
        };
        let script = |name: &str| {
            json.pointer(&format!("/scripts/{name}"))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let deps = |key: &str| -> Vec<String> {
            json.get(key)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let runtime = deps("dependencies");
        let mut names = runtime.clone();
        names.extend(deps("devDependencies"));
        let nvmrc = project.file(".nvmrc").and_then(|t| first_number(&t));
        let engines = json
            .pointer("/engines/node")
            .and_then(Value::as_str)
            .and_then(first_number);
        Ok(NodePackage {
            manager,
            lockfile,
            node_major: nvmrc.or(engines),
            start: script("start"),
            main: json
                .get("main")
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|m| project.exists(m)),
            build: script("build").is_some(),
            has_dependencies: !names.is_empty(),
            dependency_names: names,
        })
    }

    /// Where a front-end build writes its files, from the tools it uses.
    pub fn static_output(&self) -> &'static str {
        let has = |n: &str| self.dependency_names.iter().any(|d| d == n);
        if has("react-scripts") {
            "build"
        } else if has("next") {
            "out"
        } else {
            // vite, astro, parcel, webpack setups, vue-cli, angular (per-project subdir aside)
            "dist"
        }
    }
}

/// Python project facts.
#[derive(Debug, Default)]
pub struct PythonProject {
    pub requirements: bool,
    pub pyproject: bool,
    pub version: Option<String>,
    /// Lowercase names of the declared dependencies.
    pub dependencies: Vec<String>,
    /// The first `[project.scripts]` entry.
    pub script: Option<String>,
}

impl PythonProject {
    /// `None` when nothing marks a Python project.
    pub fn read(project: &Project) -> Result<Option<PythonProject>, String> {
        let requirements = project.file("requirements.txt");
        let pyproject_text = project.file("pyproject.toml");
        let has_py = project.files_in("").iter().any(|n| n.ends_with(".py"));
        if requirements.is_none()
            && pyproject_text.is_none()
            && !project.exists("setup.py")
            && !has_py
        {
            return Ok(None);
        }
        let mut p = PythonProject {
            requirements: requirements.is_some(),
            pyproject: pyproject_text.is_some(),
            ..PythonProject::default()
        };
        if let Some(text) = &requirements {
            p.dependencies.extend(requirement_names(text.lines()));
        }
        if let Some(text) = &pyproject_text {
            let doc: toml::Table = text
                .parse()
                .map_err(|e| format!("`pyproject.toml` is not valid TOML: {e}"))?;
            let project_table = doc.get("project").and_then(|v| v.as_table());
            if let Some(deps) = project_table
                .and_then(|t| t.get("dependencies"))
                .and_then(|v| v.as_array())
            {
                p.dependencies
                    .extend(requirement_names(deps.iter().filter_map(|d| d.as_str())));
            }
            p.version = project_table
                .and_then(|t| t.get("requires-python"))
                .and_then(|v| v.as_str())
                .and_then(first_version);
            p.script = project_table
                .and_then(|t| t.get("scripts"))
                .and_then(|v| v.as_table())
                .and_then(|t| t.keys().next().cloned());
        }
        let pinned = project
            .file(".python-version")
            .or_else(|| project.file("runtime.txt"))
            .and_then(|t| first_version(&t));
        p.version = pinned.or(p.version);
        Ok(Some(p))
    }

    pub fn depends_on(&self, name: &str) -> bool {
        self.dependencies.iter().any(|d| d == name)
    }
}

/// Package names of requirement lines (`Flask[async]>=2 ; python_version>"3"` -> `flask`).
fn requirement_names<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .filter_map(|l| {
            let name: String = l
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            (!name.is_empty()).then(|| name.to_ascii_lowercase().replace('_', "-"))
        })
        .collect()
}
