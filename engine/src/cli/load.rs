//! Read, parse and resolve a pipeline file, keeping every diagnostic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_host::{HostConfig, HostError, PluginHost};
use kiln_pipeline::{Diagnostic, Severity, SourceFile};

use crate::plan::{PluginLoader, Resolved, resolve};

/// The result of loading a pipeline: the plan if it can run, and every diagnostic.
pub struct Loaded {
    pub resolved: Option<Resolved>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.resolved.is_none()
            || self
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
    }
}

/// A plugin host with the on-disk component cache, sized for `jobs` concurrent steps.
pub fn new_host(jobs: usize, memory_limit: Option<u64>) -> Result<Arc<PluginHost>, HostError> {
    new_host_with(jobs, memory_limit, true)
}

/// [`new_host`] whose git layer clones local repositories only when `allow_local` (`kiln run`:
/// yes; `kiln serve`: only when configured).
pub fn new_host_with(
    jobs: usize,
    memory_limit: Option<u64>,
    allow_local: bool,
) -> Result<Arc<PluginHost>, HostError> {
    let mut config = HostConfig {
        cache_dir: Some(crate::dirs::cache_dir().join("components")),
        max_instances: u32::try_from(jobs.saturating_add(4)).unwrap_or(u32::MAX),
        git: Some(Arc::new(crate::dirs::git(allow_local))),
        oci: crate::dirs::builder().map(Arc::new),
        http: crate::dirs::http_client().map(Arc::new),
        // Problems with the store's settings are reported by `kiln run` before it starts.
        cache: crate::dirs::cache_store().ok().map(Arc::new),
        ..HostConfig::default()
    };
    if let Some(limit) = memory_limit {
        config.memory_limit = limit;
    }
    PluginHost::new(config).map(Arc::new)
}

/// Read and check `path` all the way to a plan.
pub async fn load_pipeline(path: &Path, host: &Arc<PluginHost>) -> Loaded {
    let display = path.display().to_string();
    let text = match tokio::fs::read(path).await {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return unreadable(&display, "is not UTF-8 text".to_owned()),
        },
        Err(e) => return unreadable(&display, format!("cannot be read: {e}")),
    };
    let base_dir: PathBuf = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(&display, &text, &base_dir, host).await
}

/// Parse and plan pipeline `text` (named `display` in diagnostics); plugin paths are relative
/// to `base_dir`.
pub async fn load_text(
    display: &str,
    text: &str,
    base_dir: &Path,
    host: &Arc<PluginHost>,
) -> Loaded {
    let (pipeline, mut diagnostics) = kiln_pipeline::parse(display, text);
    let Some(pipeline) = pipeline else {
        return Loaded {
            resolved: None,
            diagnostics,
        };
    };
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Loaded {
            resolved: None,
            diagnostics,
        };
    }
    let loader = PluginLoader::new(host.clone());
    let (resolved, more) = resolve(pipeline, &loader, base_dir).await;
    diagnostics.extend(more);
    Loaded {
        resolved,
        diagnostics,
    }
}

fn unreadable(path: &str, why: String) -> Loaded {
    let file = Arc::new(SourceFile {
        path: path.to_owned(),
        text: String::new(),
    });
    Loaded {
        resolved: None,
        diagnostics: vec![Diagnostic {
            code: "K000",
            severity: Severity::Error,
            message: format!("pipeline file `{path}` {why}"),
            file,
            span: None,
            hint: Some("pass the path of a `.kiln/*.yaml` pipeline file".to_owned()),
        }],
    }
}
