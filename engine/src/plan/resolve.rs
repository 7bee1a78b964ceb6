//! Load each step's plugin and check the step against it: capabilities granted, config
//! accepted by the plugin's `validate`, outputs read from upstream steps declared.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_host::{Capability, Plugin, PluginHost};
use kiln_pipeline::{Axis, Diagnostic, Pipeline, PluginRef, Severity, Span, Step};

use super::{MAX_MATRIX_INSTANCES, Plan, PlanPlugin, step_indices, step_references};
use crate::builtins;

/// Loads plugins named by `uses:`: built-ins from the binary, components from files.
pub struct PluginLoader {
    host: Arc<PluginHost>,
}

/// Why a plugin could not be loaded: a message and what to do.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl PluginLoader {
    pub fn new(host: Arc<PluginHost>) -> Self {
        PluginLoader { host }
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// Load the plugin `uses` names; relative paths are relative to `base_dir` (the pipeline
    /// file's directory).
    pub async fn load(&self, uses: &PluginRef, base_dir: &Path) -> Result<Arc<Plugin>, LoadError> {
        match uses {
            PluginRef::Builtin(name) => {
                let Some(bytes) = builtins::get(name) else {
                    let known: Vec<&str> = builtins::names().collect();
                    let hint = match kiln_pipeline::suggest(name, known.iter().copied()) {
                        Some(c) => format!("did you mean `{c}`? built-ins: {}", known.join(", ")),
                        None => format!(
                            "built-ins: {}; or name a `.wasm` component by path",
                            known.join(", ")
                        ),
                    };
                    return Err(LoadError {
                        code: "K201",
                        message: format!("unknown plugin `{name}`"),
                        hint: Some(hint),
                    });
                };
                self.host.load(name, bytes).await.map_err(|e| LoadError {
                    code: "K202",
                    message: e.to_string(),
                    hint: Some("this is a bug in Kiln's built-in plugin; please report it".into()),
                })
            }
            PluginRef::Path(path) => {
                let full = base_dir.join(path);
                let bytes = tokio::fs::read(&full).await.map_err(|e| LoadError {
                    code: "K202",
                    message: format!("cannot read plugin `{}`: {e}", full.display()),
                    hint: Some(
                        "paths in `uses:` are relative to the pipeline file's directory".into(),
                    ),
                })?;
                self.host.load(path, &bytes).await.map_err(|e| LoadError {
                    code: "K202",
                    message: one_line(&e.to_string()),
                    hint: Some("build it as a WASI 0.2 component for the `kiln:plugin/step` world (see the plugin guide in README.md)".into()),
                })
            }
            PluginRef::Oci(reference) => Err(LoadError {
                code: "K207",
                message: format!(
                    "plugins from OCI registries (`{reference}`) are not supported yet"
                ),
                hint: Some("download the component and name its `.wasm` path in `uses:`".into()),
            }),
        }
    }
}

/// A plan and the loaded plugins it indexes (`plugins[i]` is `plan.plugins[i]`).
pub struct Resolved {
    pub plan: Arc<Plan>,
    pub plugins: Vec<Arc<Plugin>>,
}

/// Resolve a parsed pipeline into a plan. Returns the plan unless there were errors, and every
/// diagnostic found (warnings too).
pub async fn resolve(
    pipeline: Pipeline,
    loader: &PluginLoader,
    base_dir: &Path,
) -> (Option<Resolved>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut plugins: Vec<Arc<Plugin>> = Vec::new();
    let mut by_uses: Vec<(&PluginRef, Option<usize>)> = Vec::new();
    let mut by_digest: HashMap<String, usize> = HashMap::new();
    let mut plugin_of_step = Vec::with_capacity(pipeline.steps.len());

    for step in &pipeline.steps {
        let slot = match by_uses.iter().find(|(u, _)| **u == step.uses.value) {
            Some((_, slot)) => *slot,
            None => {
                let slot = match loader.load(&step.uses.value, base_dir).await {
                    Ok(plugin) => {
                        Some(*by_digest.entry(plugin.digest.clone()).or_insert_with(|| {
                            plugins.push(plugin);
                            plugins.len() - 1
                        }))
                    }
                    Err(e) => {
                        diags.push(diag(&pipeline, e.code, step.uses.span, e.message, e.hint));
                        None
                    }
                };
                by_uses.push((&step.uses.value, slot));
                slot
            }
        };
        plugin_of_step.push(slot);
    }

    let mut validated: HashMap<(usize, String), Vec<kiln_host::ConfigProblem>> = HashMap::new();
    for (i, step) in pipeline.steps.iter().enumerate() {
        let Some(slot) = plugin_of_step[i] else {
            continue;
        };
        let plugin = &plugins[slot];
        check_grants(&pipeline, step, plugin, &mut diags);
        check_cache(&pipeline, step, plugin, &mut diags);
        check_matrix_size(&pipeline, step, &mut diags);
        let key = (slot, step.with.value.to_string());
        if !validated.contains_key(&key) {
            let problems = match plugin.validate(&step.with.value).await {
                Ok(p) => p,
                Err(e) => vec![kiln_host::ConfigProblem {
                    pointer: String::new(),
                    message: e.to_string(),
                }],
            };
            validated.insert(key.clone(), problems);
        }
        for problem in validated.get(&key).into_iter().flatten() {
            let span = span_of_pointer(step, &problem.pointer);
            diags.push(diag(
                &pipeline,
                "K205",
                span,
                format!(
                    "plugin `{}` rejects the config of step `{}`: {}",
                    plugin.info.name, step.id.value, problem.message
                ),
                Some(format!(
                    "see `kiln plugins {}` for the keys it takes",
                    plugin.info.name
                )),
            ));
        }
    }
    check_outputs_read(&pipeline, &plugins, &plugin_of_step, &mut diags);

    if diags.iter().any(|d| d.severity == Severity::Error) {
        return (None, diags);
    }
    let plan_plugins = plugins
        .iter()
        .map(|p| PlanPlugin {
            origin: p.origin.clone(),
            digest: p.digest.clone(),
            info: p.info.clone(),
        })
        .collect();
    let slots: Vec<usize> = plugin_of_step
        .into_iter()
        .map(|s| s.unwrap_or_default())
        .collect();
    let plan = Plan::new(Arc::new(pipeline), plan_plugins, &slots);
    (
        Some(Resolved {
            plan: Arc::new(plan),
            plugins,
        }),
        diags,
    )
}

fn diag(
    pipeline: &Pipeline,
    code: &'static str,
    span: Span,
    message: String,
    hint: Option<String>,
) -> Diagnostic {
    Diagnostic {
        code,
        severity: Severity::Error,
        message,
        file: pipeline.file.clone(),
        span: Some(span),
        hint,
    }
}

/// Least privilege both ways: a plugin gets only what the step grants, and a step grants only
/// what the plugin asks for.
fn check_grants(pipeline: &Pipeline, step: &Step, plugin: &Plugin, diags: &mut Vec<Diagnostic>) {
    let wants = |c: Capability| plugin.info.capabilities.contains(&c);
    let name = &plugin.info.name;
    let id = &step.id.value;
    if wants(Capability::WorkspaceWrite) && step.allow.workspace_write.is_none() {
        diags.push(diag(
            pipeline,
            "K203",
            step.uses.span,
            format!("plugin `{name}` needs `workspace-write`, which step `{id}` does not grant"),
            Some("add `allow: { workspace: write }` to the step".into()),
        ));
    }
    if wants(Capability::Network) && step.allow.net.is_empty() {
        diags.push(diag(
            pipeline,
            "K203",
            step.uses.span,
            format!("plugin `{name}` needs `network`, which step `{id}` does not grant"),
            Some("list the hosts it may reach: `allow: { net: [\"host:443\"] }`".into()),
        ));
    }
    if wants(Capability::Http) && step.allow.net.is_empty() {
        diags.push(diag(
            pipeline,
            "K203",
            step.uses.span,
            format!(
                "plugin `{name}` sends HTTP requests, which reach only the hosts in `allow.net`, and step `{id}` lists none"
            ),
            Some("list the hosts it may reach: `allow: { net: [\"host:443\"] }`".into()),
        ));
    }
    if let Some(span) = step.allow.workspace_write
        && !wants(Capability::WorkspaceWrite)
    {
        diags.push(diag(
            pipeline,
            "K204",
            span,
            format!(
                "step `{id}` grants `workspace: write`, but plugin `{name}` does not ask for it"
            ),
            Some("remove the grant: steps get least privilege".into()),
        ));
    }
    // Git, BuildKit, registry and HTTP plugins reach the network through the host, which
    // checks every remote, cache, registry and URL against `allow.net`.
    if let Some(first) = step.allow.net.first()
        && !wants(Capability::Network)
        && !wants(Capability::Git)
        && !wants(Capability::Buildkit)
        && !wants(Capability::Registry)
        && !wants(Capability::Http)
    {
        diags.push(diag(
            pipeline,
            "K204",
            first.span,
            format!("step `{id}` grants network access, but plugin `{name}` does not ask for it"),
            Some("remove `allow.net`: steps get least privilege".into()),
        ));
    }
}

/// `cache: true` (or a mapping) on a plugin with side effects would skip those effects.
fn check_cache(pipeline: &Pipeline, step: &Step, plugin: &Plugin, diags: &mut Vec<Diagnostic>) {
    if step.cache.mode != kiln_pipeline::CacheMode::On
        || plugin.info.caching != kiln_host::Caching::Never
    {
        return;
    }
    diags.push(diag(
        pipeline,
        "K209",
        step.cache.span.unwrap_or(step.uses.span),
        format!(
            "step `{}` asks to be cached, but plugin `{}` has side effects that a cache hit would skip",
            step.id.value, plugin.info.name
        ),
        Some("remove `cache:` from the step; steps of this plugin always run".into()),
    ));
}

fn check_matrix_size(pipeline: &Pipeline, step: &Step, diags: &mut Vec<Diagnostic>) {
    let Some(m) = &step.matrix else { return };
    let mut n: usize = 1;
    for (_, axis) in &m.axes {
        if let Axis::Values(v) = &axis.value {
            n = n.saturating_mul(v.len());
        }
    }
    if n > MAX_MATRIX_INSTANCES {
        diags.push(diag(
            pipeline,
            "K208",
            m.span,
            format!("the matrix of step `{}` expands to {n} instances, more than {MAX_MATRIX_INSTANCES}", step.id.value),
            Some("split the step or use fewer values".into()),
        ));
    }
}

/// `steps.X.outputs.NAME` must be an output plugin X declares (when it declares any).
fn check_outputs_read(
    pipeline: &Pipeline,
    plugins: &[Arc<Plugin>],
    plugin_of_step: &[Option<usize>],
    diags: &mut Vec<Diagnostic>,
) {
    let index_of = step_indices(pipeline);
    for step in &pipeline.steps {
        for (reference, span) in step_references(step) {
            let [root, id, outputs, name, ..] = reference.path.as_slice() else {
                continue;
            };
            if root != "steps" || outputs != "outputs" {
                continue;
            }
            let Some(&i) = index_of.get(id.as_str()) else {
                continue;
            };
            let Some(Some(slot)) = plugin_of_step.get(i) else {
                continue;
            };
            let info = &plugins[*slot].info;
            if !info.outputs.is_empty() && !info.outputs.iter().any(|o| o == name) {
                diags.push(diag(
                    pipeline,
                    "K206",
                    span,
                    format!(
                        "step `{id}` (plugin `{}`) has no output `{name}`",
                        info.name
                    ),
                    Some(outputs_hint(name, &info.outputs)),
                ));
            }
        }
    }
}

fn outputs_hint(name: &str, outputs: &[String]) -> String {
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let list = names
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match kiln_pipeline::suggest(name, names.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? it sets: {list}"),
        None => format!("it sets: {list}"),
    }
}

/// Error chains from wasmtime can span lines; diagnostics are one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The span of the value at a JSON Pointer in `with:`, or of its nearest written ancestor.
fn span_of_pointer(step: &Step, pointer: &str) -> Span {
    let mut p = pointer;
    loop {
        if let Some(span) = step.with.spans.get(p) {
            return *span;
        }
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => return step.uses.span,
        }
    }
}
