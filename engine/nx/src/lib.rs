//! Nx "affected" detection in pure Rust: the projects `nx show projects --affected --base=B
//! --head=H` prints, computed from two snapshots of the repository and the diff between them.
//!
//! No I/O of its own, no async, no engine crates: the caller (the `kiln nx affected` CLI, or a
//! WASI plugin reading `/workspace` for head and a host git call for base) implements
//! [`Snapshot`] and supplies the [`Change`] list of `git diff base...head`.
//!
//! ```no_run
//! # use kiln_nx::*;
//! # fn run(base: &dyn Snapshot, head: &dyn Snapshot, changes: &[Change]) -> Result<(), Error> {
//! for project in affected(base, head, changes)? {
//!     println!("{} ({})", project.name, project.root);
//! }
//! # Ok(()) }
//! ```
//!
//! The result is sorted by project name (Nx prints graph-discovery order, which depends on its
//! file walker; the set is the same). Every rule and its evidence in the corpus of real-Nx runs
//! is listed in this crate's README.

pub mod glob;
mod ignore;
mod imports;
mod json;
mod semver;

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use crate::glob::Glob;
use crate::ignore::Ignore;
use crate::json::{DiffKind, JsonChange};

/// How a file changed between base and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// Moved from `old_path` to `path` (treated as a deletion plus an addition, like Nx).
    Renamed,
}

/// One entry of `git diff --name-status base...head`. Paths are relative to the repository root
/// and `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
    /// The path before a rename; `None` for every other kind.
    pub old_path: Option<String>,
}

impl Change {
    pub fn new(kind: ChangeKind, path: impl Into<String>) -> Change {
        Change {
            kind,
            path: path.into(),
            old_path: None,
        }
    }

    pub fn renamed(old_path: impl Into<String>, path: impl Into<String>) -> Change {
        Change {
            kind: ChangeKind::Renamed,
            path: path.into(),
            old_path: Some(old_path.into()),
        }
    }
}

/// Read access to the workspace at one commit (paths relative to the repository root,
/// `/`-separated).
pub trait Snapshot {
    /// The file's bytes, or `None` when the commit has no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Every tracked file. Only called on the head snapshot.
    fn list(&self) -> Result<Vec<String>, Error>;
}

/// What Nx calls `projectType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProjectType {
    Application,
    Library,
    Unknown,
}

/// One Nx project at head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub name: String,
    /// Directory relative to the repository root; `.` for a root project.
    pub root: String,
    pub tags: Vec<String>,
    pub kind: ProjectType,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "not an nx workspace: there is no `nx.json` and the root `package.json` declares no `workspaces`\n  hint: point kiln at the root of an Nx workspace, or add an `nx.json` there"
    )]
    NotAWorkspace,
    #[error(
        "cannot parse `{path}` at {line}:{column}: {message}\n  hint: fix the JSON in `{path}`; Nx cannot build its project graph from it either"
    )]
    InvalidJson {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "the root `package.json` is an Nx project (it has an `nx` key) but has no `name`\n  hint: add a `name` to `package.json`"
    )]
    RootProjectWithoutName,
    #[error("cannot read `{path}`: {message}\n  hint: check that the file exists at this commit")]
    Read { path: String, message: String },
}

impl Error {
    /// For [`Snapshot`] implementations: a file that exists but could not be read.
    pub fn read(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Read {
            path: path.into(),
            message: message.into(),
        }
    }
}

const LOCK_FILES: &[&str] = &["yarn.lock", "package-lock.json", "pnpm-lock.yaml"];
const JS_FAMILY: &[&str] = &[
    "@nx/workspace",
    "@nx/js",
    "@nx/node",
    "@nx/next",
    "@nx/react",
    "@nx/angular",
    "@nx/web",
];

/// The projects affected by `changes` between `base` and `head`, sorted by name.
pub fn affected(
    base: &dyn Snapshot,
    head: &dyn Snapshot,
    changes: &[Change],
) -> Result<Vec<Project>, Error> {
    let ws = Workspace::load(head)?;
    let touched = ws.touched(base, head, changes)?;
    let names = match touched {
        Touched::All => (0..ws.projects.len()).collect::<BTreeSet<_>>(),
        Touched::Some { projects, npm } => {
            if projects.is_empty() && npm.is_empty() {
                BTreeSet::new()
            } else {
                let graph = ws.graph(head)?;
                graph.dependents_closure(&projects, &npm)
            }
        }
    };
    let mut out: Vec<Project> = names
        .into_iter()
        .map(|i| ws.projects[i].project.clone())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Every project of the workspace at `head`, sorted by name (like `nx show projects`).
pub fn projects(head: &dyn Snapshot) -> Result<Vec<Project>, Error> {
    let ws = Workspace::load(head)?;
    let mut out: Vec<Project> = ws.projects.into_iter().map(|p| p.project).collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Loading the workspace

#[derive(Debug, Clone)]
struct Target {
    name: String,
    executor: Option<String>,
    inputs: Option<Vec<Value>>,
}

#[derive(Debug)]
struct ProjectInfo {
    project: Project,
    package_name: Option<String>,
    package_version: Option<String>,
    /// package.json dependencies (name, range), most important section last.
    deps: Vec<(String, String)>,
    implicit: Vec<String>,
    targets: Vec<Target>,
    named_inputs: Option<serde_json::Map<String, Value>>,
}

struct JsConfig {
    analyze_sources: bool,
    analyze_package_json: bool,
    lockfile_mode: Value,
}

struct Workspace {
    files: Vec<String>,
    ignore: Ignore,
    nx_json: Value,
    root_package: Option<Value>,
    projects: Vec<ProjectInfo>,
    by_root: HashMap<String, usize>,
    js: JsConfig,
}

fn read_text(snap: &dyn Snapshot, path: &str) -> Result<Option<String>, Error> {
    Ok(snap
        .read(path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn read_json(snap: &dyn Snapshot, path: &str) -> Result<Option<Value>, Error> {
    match read_text(snap, path)? {
        None => Ok(None),
        Some(text) => json::parse_lenient(&text)
            .map(Some)
            .map_err(|(line, column, message)| Error::InvalidJson {
                path: path.to_string(),
                line,
                column,
                message,
            }),
    }
}

fn parent_dir(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => ".",
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn project_type(v: Option<&Value>) -> Option<ProjectType> {
    match v.and_then(Value::as_str) {
        Some("application") => Some(ProjectType::Application),
        Some("library") => Some(ProjectType::Library),
        _ => None,
    }
}

fn targets_from_map(map: Option<&Value>) -> Vec<Target> {
    let Some(map) = map.and_then(Value::as_object) else {
        return Vec::new();
    };
    map.iter()
        .map(|(name, t)| Target {
            name: name.clone(),
            executor: t
                .get("executor")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| t.get("command").map(|_| "nx:run-commands".to_string())),
            inputs: t.get("inputs").and_then(Value::as_array).cloned(),
        })
        .collect()
}

fn merge_targets(into: &mut Vec<Target>, from: Vec<Target>) {
    for t in from {
        match into.iter_mut().find(|x| x.name == t.name) {
            Some(existing) => {
                if t.executor.is_some() {
                    existing.executor = t.executor;
                }
                if t.inputs.is_some() {
                    existing.inputs = t.inputs;
                }
            }
            None => into.push(t),
        }
    }
}

/// The `packages:` list of a `pnpm-workspace.yaml` (only that key is read).
fn pnpm_packages(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with([' ', '\t', '-']) {
            inside = trimmed.starts_with("packages:");
            if let Some(rest) = trimmed.strip_prefix("packages:") {
                // Flow style: packages: ['a/*', 'b']
                let rest = rest.trim().trim_start_matches('[').trim_end_matches(']');
                out.extend(
                    rest.split(',')
                        .map(|s| s.trim().trim_matches(['\'', '"']).to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
            continue;
        }
        if inside && let Some(item) = trimmed.strip_prefix('-') {
            let item = item.split(" #").next().unwrap_or("").trim();
            out.push(item.trim_matches(['\'', '"']).to_string());
        }
    }
    out
}

struct WorkspacesMatcher {
    lookup: HashSet<String>,
    positive: Vec<Glob>,
    negative_lookup: HashSet<String>,
    negative: Vec<Glob>,
}

impl WorkspacesMatcher {
    fn new(patterns: Vec<String>) -> WorkspacesMatcher {
        let mut pos: Vec<String> = Vec::new();
        let mut neg: Vec<String> = Vec::new();
        for p in patterns {
            match p.strip_prefix('!') {
                Some(n) => neg.push(n.to_string()),
                None => pos.push(p),
            }
        }
        if !neg.is_empty() && (pos.is_empty() || (pos.len() == 1 && pos[0] == "package.json")) {
            pos.push("**/package.json".into());
        }
        WorkspacesMatcher {
            positive: pos.iter().map(|p| Glob::new(p)).collect(),
            lookup: pos.into_iter().collect(),
            negative: neg.iter().map(|p| Glob::new(p)).collect(),
            negative_lookup: neg.into_iter().collect(),
        }
    }

    fn is_match(&self, path: &str) -> bool {
        (self.lookup.contains(path) || self.positive.iter().any(|g| g.is_match(path)))
            && !self.negative_lookup.contains(path)
            && !self.negative.iter().any(|g| g.is_match(path))
    }
}

fn normalize_workspace_pattern(p: &str) -> String {
    let p = p.strip_prefix("./").unwrap_or(p);
    let (neg, p) = match p.strip_prefix('!') {
        Some(rest) => ("!", rest.strip_prefix("./").unwrap_or(rest)),
        None => ("", p),
    };
    let p = p.trim_end_matches('/');
    if p.ends_with("/package.json") || p == "package.json" {
        format!("{neg}{p}")
    } else {
        format!("{neg}{p}/package.json")
    }
}

/// `getPackageNameFromImportPath`: `@scope/name/deep` -> `@scope/name`, `name/deep` -> `name`.
fn package_name_of(spec: &str) -> &str {
    let mut parts = spec.splitn(3, '/');
    let first = parts.next().unwrap_or("");
    if first.starts_with('@') {
        match parts.next() {
            Some(second) => &spec[..first.len() + 1 + second.len()],
            None => spec,
        }
    } else {
        first
    }
}

impl Workspace {
    fn load(head: &dyn Snapshot) -> Result<Workspace, Error> {
        let all = head.list()?;
        let mut ignore_files = Vec::new();
        for f in &all {
            if (f == ".gitignore" || f == ".nxignore")
                && let Some(text) = read_text(head, f)?
            {
                ignore_files.push((f.clone(), text));
            }
        }
        let ignore = Ignore::new(&ignore_files);
        let files: Vec<String> = all.into_iter().filter(|f| !ignore.is_ignored(f)).collect();

        let nx_json = read_json(head, "nx.json")?;
        let root_package = read_json(head, "package.json")?;

        let mut patterns = Vec::new();
        if let Some(pkg) = &root_package {
            let ws = pkg.get("workspaces");
            let list = match ws {
                Some(Value::Array(_)) => str_list(ws),
                Some(obj) => str_list(obj.get("packages")),
                None => Vec::new(),
            };
            patterns.extend(list.iter().map(|p| normalize_workspace_pattern(p)));
        }
        if let Some(text) = read_text(head, "pnpm-workspace.yaml")? {
            patterns.extend(
                pnpm_packages(&text)
                    .iter()
                    .map(|p| normalize_workspace_pattern(p)),
            );
        }
        if let Some(lerna) = read_json(head, "lerna.json")? {
            let pk = str_list(lerna.get("packages"));
            let pk = if pk.is_empty() {
                vec!["packages/*".to_string()]
            } else {
                pk
            };
            patterns.extend(pk.iter().map(|p| normalize_workspace_pattern(p)));
        }
        if nx_json.is_none() && patterns.is_empty() {
            return Err(Error::NotAWorkspace);
        }
        if root_package.as_ref().is_some_and(|p| p.get("nx").is_some()) {
            patterns.push("package.json".into());
        }
        let nx_json = nx_json.unwrap_or(Value::Object(Default::default()));
        let matcher = WorkspacesMatcher::new(patterns);

        let project_json_roots: HashSet<&str> = files
            .iter()
            .filter(|f| *f == "project.json" || f.ends_with("/project.json"))
            .map(|f| parent_dir(f))
            .collect();

        let mut projects: Vec<ProjectInfo> = Vec::new();
        let mut by_root: HashMap<String, usize> = HashMap::new();
        let layout = nx_json.get("workspaceLayout");
        let apps_dir = layout
            .and_then(|l| l.get("appsDir"))
            .and_then(Value::as_str);
        let libs_dir = layout
            .and_then(|l| l.get("libsDir"))
            .and_then(Value::as_str);

        // package.json nodes first, project.json merged over them (Nx's plugin order).
        for f in files
            .iter()
            .filter(|f| *f == "package.json" || f.ends_with("/package.json"))
        {
            let root = parent_dir(f);
            if !matcher.is_match(f) && !project_json_roots.contains(root) {
                continue;
            }
            let Some(pkg) = (if f == "package.json" {
                root_package.clone()
            } else {
                read_json(head, f)?
            }) else {
                continue;
            };
            let nx = pkg.get("nx");
            let pkg_name = pkg.get("name").and_then(Value::as_str);
            if pkg_name.is_none() && root == "." && nx.and_then(|n| n.get("name")).is_none() {
                return Err(Error::RootProjectWithoutName);
            }
            let name = nx
                .and_then(|n| n.get("name"))
                .and_then(Value::as_str)
                .or(pkg_name)
                .map(str::to_string)
                .unwrap_or_else(|| root.rsplit('/').next().unwrap_or(root).to_lowercase());
            let mut tags = vec![
                if pkg.get("private").and_then(Value::as_bool) == Some(true) {
                    "npm:private".to_string()
                } else {
                    "npm:public".to_string()
                },
            ];
            tags.extend(
                str_list(pkg.get("keywords"))
                    .into_iter()
                    .map(|k| format!("npm:{k}")),
            );
            tags.extend(str_list(nx.and_then(|n| n.get("tags"))));
            let mut targets: Vec<Target> = Vec::new();
            let scripts: Vec<String> = match nx.and_then(|n| n.get("includedScripts")) {
                Some(v) => str_list(Some(v)),
                None => pkg
                    .get("scripts")
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            };
            for s in scripts {
                targets.push(Target {
                    name: s,
                    executor: Some("nx:run-script".into()),
                    inputs: None,
                });
            }
            merge_targets(
                &mut targets,
                targets_from_map(nx.and_then(|n| n.get("targets"))),
            );
            let mut kind = project_type(nx.and_then(|n| n.get("projectType")));
            if kind.is_none() {
                if let Some(a) = apps_dir
                    && Some(a) != libs_dir
                    && root.starts_with(a)
                {
                    kind = Some(ProjectType::Application);
                } else if let Some(l) = libs_dir
                    && root.starts_with(l)
                {
                    kind = Some(ProjectType::Library);
                }
            }
            let mut deps = Vec::new();
            for section in [
                "optionalDependencies",
                "peerDependencies",
                "devDependencies",
                "dependencies",
            ] {
                if let Some(m) = pkg.get(section).and_then(Value::as_object) {
                    for (k, v) in m {
                        let range = v.as_str().unwrap_or("").to_string();
                        match deps
                            .iter_mut()
                            .find(|(n, _): &&mut (String, String)| n == k)
                        {
                            Some(slot) => slot.1 = range,
                            None => deps.push((k.clone(), range)),
                        }
                    }
                }
            }
            by_root.insert(root.to_string(), projects.len());
            projects.push(ProjectInfo {
                project: Project {
                    name,
                    root: root.to_string(),
                    tags,
                    kind: kind.unwrap_or(ProjectType::Unknown),
                },
                package_name: pkg_name.map(str::to_string),
                package_version: pkg
                    .get("version")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                deps,
                implicit: str_list(nx.and_then(|n| n.get("implicitDependencies"))),
                targets,
                named_inputs: nx
                    .and_then(|n| n.get("namedInputs"))
                    .and_then(Value::as_object)
                    .cloned(),
            });
        }

        for f in files
            .iter()
            .filter(|f| *f == "project.json" || f.ends_with("/project.json"))
        {
            let Some(pj) = read_json(head, f)? else {
                continue;
            };
            let root = pj
                .get("root")
                .and_then(Value::as_str)
                .unwrap_or(parent_dir(f))
                .to_string();
            let idx = match by_root.get(&root) {
                Some(&i) => i,
                None => {
                    let name = root.rsplit('/').next().unwrap_or(&root).to_lowercase();
                    by_root.insert(root.clone(), projects.len());
                    projects.push(ProjectInfo {
                        project: Project {
                            name,
                            root: root.clone(),
                            tags: Vec::new(),
                            kind: ProjectType::Unknown,
                        },
                        package_name: None,
                        package_version: None,
                        deps: Vec::new(),
                        implicit: Vec::new(),
                        targets: Vec::new(),
                        named_inputs: None,
                    });
                    projects.len() - 1
                }
            };
            let p = &mut projects[idx];
            if let Some(name) = pj.get("name").and_then(Value::as_str) {
                p.project.name = name.to_string();
            }
            for t in str_list(pj.get("tags")) {
                if !p.project.tags.contains(&t) {
                    p.project.tags.push(t);
                }
            }
            if let Some(k) = project_type(pj.get("projectType")) {
                p.project.kind = k;
            }
            p.implicit.extend(str_list(pj.get("implicitDependencies")));
            merge_targets(&mut p.targets, targets_from_map(pj.get("targets")));
            if let Some(ni) = pj.get("namedInputs").and_then(Value::as_object) {
                p.named_inputs
                    .get_or_insert_with(Default::default)
                    .extend(ni.clone());
            }
        }

        let js = js_config(&nx_json, root_package.as_ref());
        Ok(Workspace {
            files,
            ignore,
            nx_json,
            root_package,
            projects,
            by_root,
            js,
        })
    }

    /// The project owning `path`: the one with the deepest root containing it.
    fn owner(&self, path: &str) -> Option<usize> {
        let mut dir = path;
        while let Some(i) = dir.rfind('/') {
            dir = &dir[..i];
            if let Some(&p) = self.by_root.get(dir) {
                return Some(p);
            }
        }
        self.by_root.get(".").copied()
    }

    fn project_by_name(&self) -> HashMap<&str, usize> {
        self.projects
            .iter()
            .enumerate()
            .map(|(i, p)| (p.project.name.as_str(), i))
            .collect()
    }
}

fn js_config(nx_json: &Value, root_package: Option<&Value>) -> JsConfig {
    if let Some(cfg) = nx_json.get("pluginsConfig").and_then(|p| p.get("@nx/js")) {
        let flag = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(true);
        return JsConfig {
            analyze_sources: flag("analyzeSourceFiles"),
            analyze_package_json: flag("analyzePackageJson"),
            lockfile_mode: cfg
                .get("projectsAffectedByDependencyUpdates")
                .cloned()
                .unwrap_or(Value::String("all".into())),
        };
    }
    let Some(pkg) = root_package else {
        return JsConfig {
            analyze_sources: false,
            analyze_package_json: false,
            lockfile_mode: Value::String("all".into()),
        };
    };
    let has = |name: &str| {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|s| pkg.get(s).and_then(|d| d.get(name)).is_some())
    };
    JsConfig {
        analyze_sources: JS_FAMILY.iter().any(|n| has(n)),
        analyze_package_json: true,
        lockfile_mode: Value::String("all".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Touched projects

enum Touched {
    All,
    Some {
        projects: BTreeSet<usize>,
        /// npm packages (external nodes) whose dependents are affected.
        npm: BTreeSet<String>,
    },
}

impl Workspace {
    fn touched(
        &self,
        base: &dyn Snapshot,
        head: &dyn Snapshot,
        changes: &[Change],
    ) -> Result<Touched, Error> {
        // Nx diffs without rename detection: a rename is a deletion plus an addition.
        let mut files: Vec<(&str, bool)> = Vec::new();
        for c in changes {
            match (&c.kind, &c.old_path) {
                (ChangeKind::Renamed, Some(old)) => {
                    files.push((old, true));
                    files.push((&c.path, false));
                }
                (ChangeKind::Deleted, _) => files.push((&c.path, true)),
                _ => files.push((&c.path, false)),
            }
        }
        files.retain(|(f, _)| !self.ignore.is_ignored(f));
        if files.is_empty() {
            return Ok(Touched::Some {
                projects: BTreeSet::new(),
                npm: BTreeSet::new(),
            });
        }
        if files.iter().any(|(f, _)| *f == "nx.json") {
            return Ok(Touched::All);
        }
        // Deleting a project configuration file affects everything.
        if files.iter().any(|(f, deleted)| {
            *deleted
                && (f.ends_with("/package.json")
                    || f.ends_with("/project.json")
                    || *f == "package.json"
                    || *f == "project.json")
        }) {
            return Ok(Touched::All);
        }
        let mut projects = BTreeSet::new();
        let mut npm = BTreeSet::new();
        for (f, _) in &files {
            if let Some(p) = self.owner(f) {
                projects.insert(p);
            }
        }
        // Files reached by a `{workspaceRoot}/…` input of one of a project's targets.
        for (set, members) in self.workspace_input_sets() {
            if files.iter().any(|(f, _)| set.iter().any(|g| g.is_match(f))) {
                projects.extend(members);
            }
        }
        let external = ExternalPackages::load(head, &self.files)?;
        if files.iter().any(|(f, _)| *f == "package.json")
            && !self.root_package_changes(base, &external, &mut projects, &mut npm)?
        {
            return Ok(Touched::All);
        }
        if let Some((lock, _)) = files.iter().find(|(f, _)| LOCK_FILES.contains(f)) {
            match &self.js.lockfile_mode {
                Value::Array(patterns) => {
                    let pats: Vec<String> = patterns
                        .iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect();
                    projects.extend(self.find_matching_projects(&pats));
                }
                Value::String(s) if s == "auto" => {
                    match changed_lock_packages(base, head, lock, &external)? {
                        Some(names) => npm.extend(names),
                        None => return Ok(Touched::All),
                    }
                }
                _ => return Ok(Touched::All),
            }
        }
        let tsconfig = if self.files.iter().any(|f| f == "tsconfig.base.json") {
            "tsconfig.base.json"
        } else {
            "tsconfig.json"
        };
        if files.iter().any(|(f, _)| *f == tsconfig)
            && !self.tsconfig_changes(base, head, tsconfig, &mut projects)?
        {
            return Ok(Touched::All);
        }
        Ok(Touched::Some { projects, npm })
    }

    /// Distinct sets of `{workspaceRoot}` globs with the projects whose targets use them.
    fn workspace_input_sets(&self) -> Vec<(Vec<Glob>, Vec<usize>)> {
        let empty = serde_json::Map::new();
        let global_named = self
            .nx_json
            .get("namedInputs")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let defaults = self
            .nx_json
            .get("targetDefaults")
            .and_then(Value::as_object);
        let mut sets: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
        let mut cache: HashMap<String, Vec<String>> = HashMap::new();
        for (i, p) in self.projects.iter().enumerate() {
            let mut patterns: Vec<String> = Vec::new();
            for t in &p.targets {
                let inputs = t.inputs.clone().or_else(|| {
                    let d = defaults?;
                    let by_exec = t.executor.as_deref().and_then(|e| d.get(e));
                    let by_name = d.get(&t.name).or_else(|| {
                        d.iter()
                            .find(|(k, _)| glob::is_glob(k) && Glob::new(k).is_match(&t.name))
                            .map(|(_, v)| v)
                    });
                    by_exec
                        .or(by_name)?
                        .get("inputs")
                        .and_then(Value::as_array)
                        .cloned()
                });
                let Some(inputs) = inputs else { continue };
                let key = format!(
                    "{}|{}",
                    Value::Array(inputs.clone()),
                    p.named_inputs.is_some()
                );
                let expanded = match (cache.get(&key), &p.named_inputs) {
                    (Some(e), None) => e.clone(),
                    _ => {
                        let mut named = global_named.clone();
                        if let Some(own) = &p.named_inputs {
                            named.extend(own.clone());
                        }
                        let mut out = Vec::new();
                        expand_inputs(&inputs, &named, &mut Vec::new(), &mut out);
                        if p.named_inputs.is_none() {
                            cache.insert(key, out.clone());
                        }
                        out
                    }
                };
                patterns.extend(expanded);
            }
            if !patterns.is_empty() {
                patterns.sort();
                patterns.dedup();
                sets.entry(patterns).or_default().push(i);
            }
        }
        sets.into_iter()
            .map(|(pats, members)| (pats.iter().map(|p| Glob::new(p)).collect(), members))
            .collect()
    }

    /// The root package.json locator. Returns false when everything is affected.
    fn root_package_changes(
        &self,
        base: &dyn Snapshot,
        external: &ExternalPackages,
        projects: &mut BTreeSet<usize>,
        npm: &mut BTreeSet<String>,
    ) -> Result<bool, Error> {
        let old = read_json(base, "package.json").ok().flatten();
        let (Some(old), Some(new)) = (old, self.root_package.clone()) else {
            // A whole-file change: every npm package is touched.
            npm.extend(external.names.iter().cloned());
            return Ok(true);
        };
        let mut globals: Vec<String> = vec!["nx".into()];
        if let Some(plugins) = self.nx_json.get("plugins").and_then(Value::as_array) {
            for p in plugins {
                let spec = p
                    .as_str()
                    .or_else(|| p.get("plugin").and_then(Value::as_str))
                    .unwrap_or("");
                globals.push(package_name_of(spec).to_string());
            }
        }
        let by_name = self.project_by_name();
        for c in json::diff(&old, &new) {
            let head = c.path.first().map(String::as_str);
            if matches!(head, Some("dependencies") | Some("devDependencies")) && c.path.len() == 2 {
                if c.kind == DiffKind::Deleted {
                    return Ok(false);
                }
                let dep = &c.path[1];
                if external.names.contains(dep) {
                    if globals.contains(dep) {
                        return Ok(false);
                    }
                    npm.insert(dep.clone());
                    if let Some(implementation) = dep.strip_prefix("@types/")
                        && external.names.contains(implementation)
                    {
                        npm.insert(implementation.to_string());
                    }
                } else if let Some(&p) = by_name.get(dep.as_str()) {
                    projects.insert(p);
                }
            } else if matches!(head, Some("overrides") | Some("resolutions"))
                || (head == Some("pnpm") && c.path.get(1).map(String::as_str) == Some("overrides"))
            {
                let is_str = |v: &Option<Value>| matches!(v, Some(Value::String(_)));
                if !is_str(&c.lhs) && !is_str(&c.rhs) {
                    continue;
                }
                let pnpm = head == Some("pnpm");
                let idx = if pnpm { 2 } else { c.path.len() - 1 };
                let Some(mut selector) = c.path.get(idx).map(String::as_str) else {
                    continue;
                };
                if selector == "." && idx > 0 {
                    selector = &c.path[idx - 1];
                }
                let name = override_package_name(selector, pnpm);
                match name {
                    Some(n) if external.names.contains(&n) => {
                        if globals.contains(&n) {
                            return Ok(false);
                        }
                        npm.insert(n);
                    }
                    _ => return Ok(false),
                }
            }
        }
        Ok(true)
    }

    /// The root tsconfig locator. Returns false when everything is affected.
    fn tsconfig_changes(
        &self,
        base: &dyn Snapshot,
        head: &dyn Snapshot,
        file: &str,
        projects: &mut BTreeSet<usize>,
    ) -> Result<bool, Error> {
        let (Ok(old), Ok(new)) = (read_json(base, file), read_json(head, file)) else {
            return Ok(false);
        };
        let changes = json::diff(&old.unwrap_or(Value::Null), &new.unwrap_or(Value::Null));
        let is_paths = |c: &JsonChange| {
            c.path.first().map(String::as_str) == Some("compilerOptions")
                && c.path.get(1).is_none_or(|s| s == "paths")
        };
        if !changes.iter().all(is_paths) {
            return Ok(false);
        }
        for c in changes.iter().filter(|c| c.path.len() == 4) {
            if c.kind == DiffKind::Deleted {
                return Ok(false);
            }
            for v in [&c.lhs, &c.rhs].into_iter().flatten() {
                let Some(path) = v.as_str() else { continue };
                let path = path.strip_prefix("./").unwrap_or(path);
                for (i, p) in self.projects.iter().enumerate() {
                    let root = p.project.root.trim_end_matches('/');
                    if (!root.is_empty() && path.starts_with(&format!("{root}/"))) || path == root {
                        projects.insert(i);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Nx's `findMatchingProjects`: names, globs on names, `tag:` patterns, `!` exclusions.
    fn find_matching_projects(&self, patterns: &[String]) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        for pat in patterns {
            let (neg, pat) = match pat.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, pat.as_str()),
            };
            let matched: Vec<usize> = self
                .projects
                .iter()
                .enumerate()
                .filter(|(_, p)| match pat.strip_prefix("tag:") {
                    Some(tag) => {
                        let g = Glob::new(tag);
                        p.project.tags.iter().any(|t| t == tag || g.is_match(t))
                    }
                    None if pat == "*" => true,
                    None if glob::is_glob(pat) => {
                        Glob::new(pat).is_match(&p.project.name)
                            || Glob::new(pat).is_match(&p.project.root)
                    }
                    None => p.project.name == pat || p.project.root == pat,
                })
                .map(|(i, _)| i)
                .collect();
            for i in matched {
                if neg {
                    out.remove(&i);
                } else {
                    out.insert(i);
                }
            }
        }
        out
    }
}

fn override_package_name(selector: &str, pnpm: bool) -> Option<String> {
    let mut sel = selector;
    if pnpm {
        let b = sel.as_bytes();
        if let Some(i) = (1..b.len()).find(|&i| b[i] == b'>' && !b" |@".contains(&b[i - 1])) {
            sel = &sel[i + 1..];
        }
    }
    let last = sel.rsplit('/').next().unwrap_or(sel);
    let candidate = if sel.contains('/') && sel.starts_with('@') {
        sel
    } else {
        last
    };
    let candidate = candidate.trim();
    let name = if let Some(rest) = candidate.strip_prefix('@') {
        match rest.find('@') {
            Some(i) => &candidate[..i + 1],
            None => candidate,
        }
    } else {
        candidate.split('@').next().unwrap_or(candidate)
    };
    (!name.is_empty() && !name.contains('>')).then(|| name.to_string())
}

/// Expands target inputs into the `{workspaceRoot}` globs they reach (negations do not subtract
/// for affected: Nx's locator matches positive patterns only).
fn expand_inputs(
    inputs: &[Value],
    named: &serde_json::Map<String, Value>,
    seen: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    for input in inputs {
        let (text, is_named) = match input {
            Value::String(s) => (s.as_str(), true),
            Value::Object(o) => {
                if let Some(f) = o.get("fileset").and_then(Value::as_str) {
                    (f, false)
                } else if let Some(n) = o.get("input").and_then(Value::as_str) {
                    if o.get("dependencies").and_then(Value::as_bool) == Some(true)
                        || o.contains_key("projects")
                    {
                        continue;
                    }
                    (n, true)
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        if let Some(p) = text.strip_prefix("{workspaceRoot}/") {
            out.push(p.to_string());
        } else if text.starts_with('!') || text.starts_with('^') || text.starts_with('{') {
            continue;
        } else if is_named
            && !seen.iter().any(|s| s == text)
            && let Some(list) = named.get(text).and_then(Value::as_array)
        {
            seen.push(text.to_string());
            expand_inputs(list, named, seen, out);
            seen.pop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// npm packages known to the lockfile (Nx's external nodes)

#[derive(Default)]
struct ExternalPackages {
    names: HashSet<String>,
}

impl ExternalPackages {
    fn load(snap: &dyn Snapshot, files: &[String]) -> Result<ExternalPackages, Error> {
        for lock in LOCK_FILES {
            if files.iter().any(|f| f == lock)
                && let Some(text) = read_text(snap, lock)?
            {
                return Ok(ExternalPackages {
                    names: lock_fingerprints(lock, &text)
                        .map(|m| m.into_keys().collect())
                        .unwrap_or_default(),
                });
            }
        }
        Ok(ExternalPackages::default())
    }
}

/// package name -> set of "version|integrity" in a lockfile; `None` when it cannot be parsed.
fn lock_fingerprints(file: &str, text: &str) -> Option<HashMap<String, BTreeSet<String>>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    match file {
        "package-lock.json" => {
            let v = json::parse_lenient(text).ok()?;
            if let Some(pk) = v.get("packages").and_then(Value::as_object) {
                for (key, entry) in pk {
                    let Some(i) = key.rfind("node_modules/") else {
                        continue;
                    };
                    if entry.get("link").and_then(Value::as_bool) == Some(true) {
                        continue;
                    }
                    let name = &key[i + "node_modules/".len()..];
                    let fp = format!(
                        "{}|{}",
                        entry.get("version").and_then(Value::as_str).unwrap_or(""),
                        entry.get("integrity").and_then(Value::as_str).unwrap_or("")
                    );
                    out.entry(name.to_string()).or_default().insert(fp);
                }
            } else if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
                for (name, entry) in deps {
                    let fp = format!(
                        "{}|{}",
                        entry.get("version").and_then(Value::as_str).unwrap_or(""),
                        entry.get("integrity").and_then(Value::as_str).unwrap_or("")
                    );
                    out.entry(name.clone()).or_default().insert(fp);
                }
            }
        }
        "yarn.lock" => {
            let mut current: Vec<String> = Vec::new();
            for line in text.lines() {
                if !line.starts_with([' ', '#']) && line.ends_with(':') {
                    current = line
                        .trim_end_matches(':')
                        .split(", ")
                        .map(|s| {
                            let s = s.trim_matches('"');
                            let at = s[1..].find('@').map(|i| i + 1).unwrap_or(s.len());
                            s[..at].to_string()
                        })
                        .collect();
                } else if let Some(v) = line.trim().strip_prefix("version") {
                    let v = v.trim().trim_start_matches(':').trim().trim_matches('"');
                    for n in &current {
                        out.entry(n.clone()).or_default().insert(v.to_string());
                    }
                }
            }
        }
        _ => {
            // pnpm-lock.yaml: keys of `packages:` like `/name@1.0.0:` or `name@1.0.0:`.
            let mut inside = false;
            for line in text.lines() {
                if !line.starts_with(' ') {
                    inside = line.starts_with("packages:");
                    continue;
                }
                if inside && line.starts_with("  ") && !line.starts_with("   ") {
                    let key = line.trim().trim_end_matches(':').trim_matches(['\'', '"']);
                    let key = key.trim_start_matches('/');
                    let at = key[1..].find('@').map(|i| i + 1).unwrap_or(key.len());
                    out.entry(key[..at].to_string())
                        .or_default()
                        .insert(key[at..].to_string());
                }
            }
        }
    }
    Some(out)
}

/// Packages whose lockfile entries changed, or `None` when the change cannot be pinned to
/// packages present at head (then everything is affected).
fn changed_lock_packages(
    base: &dyn Snapshot,
    head: &dyn Snapshot,
    file: &str,
    external: &ExternalPackages,
) -> Result<Option<Vec<String>>, Error> {
    let (Some(old), Some(new)) = (read_text(base, file)?, read_text(head, file)?) else {
        return Ok(None);
    };
    let (Some(old), Some(new)) = (lock_fingerprints(file, &old), lock_fingerprints(file, &new))
    else {
        return Ok(None);
    };
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    if changed.iter().any(|n| !external.names.contains(n)) {
        return Ok(None);
    }
    Ok(Some(changed))
}

// ---------------------------------------------------------------------------------------------
// Project graph

struct Graph {
    /// target project -> projects depending on it.
    dependents: Vec<Vec<usize>>,
    /// npm package -> projects depending on it.
    npm_dependents: HashMap<String, Vec<usize>>,
}

impl Graph {
    fn dependents_closure(
        &self,
        start: &BTreeSet<usize>,
        npm: &BTreeSet<String>,
    ) -> BTreeSet<usize> {
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> = start.iter().copied().collect();
        for n in npm {
            if let Some(d) = self.npm_dependents.get(n) {
                stack.extend(d);
            }
        }
        while let Some(p) = stack.pop() {
            if seen.insert(p) {
                stack.extend(self.dependents[p].iter().filter(|d| !seen.contains(d)));
            }
        }
        seen
    }
}

impl Workspace {
    fn graph(&self, head: &dyn Snapshot) -> Result<Graph, Error> {
        let n = self.projects.len();
        let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        let mut npm_deps: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n];
        let external = if self.js.analyze_package_json || self.js.analyze_sources {
            ExternalPackages::load(head, &self.files)?
        } else {
            ExternalPackages::default()
        };
        let mut by_package: HashMap<&str, usize> = HashMap::new();
        for (i, p) in self.projects.iter().enumerate() {
            if let Some(name) = &p.package_name {
                by_package.entry(name.as_str()).or_insert(i);
            }
        }
        if self.js.analyze_package_json {
            for (i, p) in self.projects.iter().enumerate() {
                for (dep, range) in &p.deps {
                    if let Some(&t) = by_package.get(dep.as_str())
                        && links_to_workspace(&self.projects[t], &p.project.root, range)
                    {
                        if t != i {
                            deps[i].insert(t);
                        }
                        continue;
                    }
                    if external.names.contains(dep) {
                        npm_deps[i].insert(dep.clone());
                    }
                }
            }
        }
        if self.js.analyze_sources {
            self.import_edges(head, &by_package, &external, &mut deps, &mut npm_deps)?;
        }
        // implicitDependencies: names, globs, `*`, and `!name` removing any edge.
        let by_name = self.project_by_name();
        for (i, p) in self.projects.iter().enumerate() {
            for imp in &p.implicit {
                if let Some(neg) = imp.strip_prefix('!') {
                    if let Some(&t) = by_name.get(neg) {
                        deps[i].remove(&t);
                    }
                    continue;
                }
                let targets: Vec<usize> = if let Some(&t) = by_name.get(imp.as_str()) {
                    vec![t]
                } else {
                    self.find_matching_projects(std::slice::from_ref(imp))
                        .into_iter()
                        .collect()
                };
                for t in targets {
                    if t != i {
                        deps[i].insert(t);
                    }
                }
            }
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &t in ds {
                dependents[t].push(i);
            }
        }
        let mut npm_dependents: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, ds) in npm_deps.into_iter().enumerate() {
            for d in ds {
                npm_dependents.entry(d).or_default().push(i);
            }
        }
        Ok(Graph {
            dependents,
            npm_dependents,
        })
    }

    fn import_edges(
        &self,
        head: &dyn Snapshot,
        by_package: &HashMap<&str, usize>,
        external: &ExternalPackages,
        deps: &mut [BTreeSet<usize>],
        npm_deps: &mut [BTreeSet<String>],
    ) -> Result<(), Error> {
        let paths = TsPaths::load(head, &self.files)?;
        let mut cache: HashMap<String, Option<Resolved>> = HashMap::new();
        for f in &self.files {
            if !imports::is_source_file(f) {
                continue;
            }
            let Some(owner) = self.owner(f) else { continue };
            let Some(text) = read_text(head, f)? else {
                continue;
            };
            for spec in imports::find_imports(&text) {
                let resolved = if spec.starts_with("./") || spec.starts_with("../") || spec == "." {
                    let joined = normalize_join(parent_dir(f), &spec);
                    self.owner(&joined).map(Resolved::Project)
                } else {
                    cache
                        .entry(spec.clone())
                        .or_insert_with(|| self.resolve_bare(&spec, &paths, by_package, external))
                        .clone()
                };
                match resolved {
                    Some(Resolved::Project(t)) if t != owner => {
                        deps[owner].insert(t);
                    }
                    Some(Resolved::Npm(name)) => {
                        npm_deps[owner].insert(name);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn resolve_bare(
        &self,
        spec: &str,
        paths: &TsPaths,
        by_package: &HashMap<&str, usize>,
        external: &ExternalPackages,
    ) -> Option<Resolved> {
        if let Some(targets) = paths.resolve(spec) {
            for t in targets {
                let t = t.strip_prefix("./").unwrap_or(&t).to_string();
                if let Some(p) = self.owner(&format!("{t}/")) {
                    return Some(Resolved::Project(p));
                }
            }
        }
        let name = package_name_of(spec);
        if external.names.contains(name) {
            return Some(Resolved::Npm(name.to_string()));
        }
        by_package.get(name).map(|&p| Resolved::Project(p))
    }
}

#[derive(Clone)]
enum Resolved {
    Project(usize),
    Npm(String),
}

/// Nx's `findDependencyInWorkspaceProjects`: `workspace:`, `*`, a matching `file:` path, or a
/// semver range the workspace package's version satisfies.
fn links_to_workspace(target: &ProjectInfo, source_root: &str, range: &str) -> bool {
    if range.starts_with("workspace:") || range == "*" {
        return true;
    }
    if let Some(path) = range.strip_prefix("file:") {
        return normalize_join(source_root, path) == target.project.root;
    }
    target
        .package_version
        .as_deref()
        .is_some_and(|v| semver::satisfies(v, range))
}

fn normalize_join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if dir == "." || dir.is_empty() {
        Vec::new()
    } else {
        dir.split('/').collect()
    };
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// `compilerOptions.paths` of the root tsconfig, matched like TypeScript (exact key first, then
/// the wildcard pattern with the longest prefix).
struct TsPaths {
    exact: HashMap<String, Vec<String>>,
    patterns: Vec<(String, String, Vec<String>)>,
}

impl TsPaths {
    fn load(head: &dyn Snapshot, files: &[String]) -> Result<TsPaths, Error> {
        let mut out = TsPaths {
            exact: HashMap::new(),
            patterns: Vec::new(),
        };
        let file = if files.iter().any(|f| f == "tsconfig.base.json") {
            "tsconfig.base.json"
        } else {
            "tsconfig.json"
        };
        let Ok(Some(cfg)) = read_json(head, file) else {
            return Ok(out);
        };
        let Some(paths) = cfg
            .get("compilerOptions")
            .and_then(|c| c.get("paths"))
            .and_then(Value::as_object)
        else {
            return Ok(out);
        };
        for (key, targets) in paths {
            let targets = str_list(Some(targets));
            match key.split_once('*') {
                Some((prefix, suffix)) => {
                    out.patterns
                        .push((prefix.to_string(), suffix.to_string(), targets))
                }
                None => {
                    out.exact.insert(key.clone(), targets);
                }
            }
        }
        Ok(out)
    }

    fn resolve(&self, spec: &str) -> Option<Vec<String>> {
        if let Some(t) = self.exact.get(spec) {
            return Some(t.clone());
        }
        let (prefix, suffix, targets) = self
            .patterns
            .iter()
            .filter(|(p, s, _)| {
                spec.len() >= p.len() + s.len()
                    && spec.starts_with(p.as_str())
                    && spec.ends_with(s.as_str())
            })
            .max_by_key(|(p, _, _)| p.len())?;
        let star = &spec[prefix.len()..spec.len() - suffix.len()];
        Some(targets.iter().map(|t| t.replacen('*', star, 1)).collect())
    }
}
