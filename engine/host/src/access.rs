//! What one step's host calls may touch: the workspace (read, or write when granted), the
//! `allow.net` endpoints, and the step's own secrets. Shared by the host interfaces that act
//! for a plugin (`git`, `image`), so each checks grants the same way.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::GUEST_WORKSPACE;
use crate::log::StepLog;

/// A step's grants, as the host interfaces see them.
pub(crate) struct StepAccess {
    /// Host directory of the workspace.
    pub(crate) workspace: PathBuf,
    pub(crate) workspace_write: bool,
    /// `host:port` entries of `allow.net`, lowercase.
    pub(crate) net: Vec<String>,
    pub(crate) secrets: BTreeMap<String, String>,
    pub(crate) log: Arc<StepLog>,
}

/// Why a call was refused.
#[derive(Debug)]
pub(crate) enum AccessError {
    /// A grant is missing; the message says which and how to add it.
    Denied(String),
    /// The host could not check (e.g. the workspace vanished).
    Failed(String),
}

impl StepAccess {
    /// Maps a guest path (`/workspace/x` or `x`) to the host, refusing anything that leaves
    /// the workspace, also through a symlink an earlier step planted.
    pub(crate) fn host_path(&self, guest: &str) -> Result<PathBuf, AccessError> {
        let rel = guest
            .strip_prefix(GUEST_WORKSPACE)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .map(|r| r.trim_start_matches('/'))
            .unwrap_or(guest);
        let mut out = PathBuf::new();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::CurDir => {}
                _ => {
                    return Err(AccessError::Denied(format!(
                        "path `{guest}` leaves the workspace; use a path inside `{GUEST_WORKSPACE}`"
                    )));
                }
            }
        }
        let host = self.workspace.join(&out);
        // The deepest existing ancestor must resolve inside the workspace.
        let root = std::fs::canonicalize(&self.workspace)
            .map_err(|e| AccessError::Failed(format!("workspace: {e}")))?;
        let mut probe = host.as_path();
        loop {
            if let Ok(real) = std::fs::canonicalize(probe) {
                if !real.starts_with(&root) {
                    return Err(AccessError::Denied(format!(
                        "path `{guest}` resolves outside the workspace (through a symlink)"
                    )));
                }
                break;
            }
            match probe.parent() {
                Some(p) => probe = p,
                None => break,
            }
        }
        Ok(host)
    }

    /// The value of the step's secret `name`; `what` says what it is for, in the refusal.
    pub(crate) fn secret(&self, name: &str, what: &str) -> Result<String, AccessError> {
        self.secrets.get(name).cloned().ok_or_else(|| {
            AccessError::Denied(format!(
                "secret `{name}` ({what}) is not available to this step\n  hint: list it in the step's `secrets:` and pass it to the run"
            ))
        })
    }

    /// Refuses an endpoint (`host:port`) the step's `allow.net` does not list.
    pub(crate) fn check_net(&self, endpoint: &str, what: &str) -> Result<(), AccessError> {
        let endpoint = endpoint.to_ascii_lowercase();
        if self.net.contains(&endpoint) {
            Ok(())
        } else {
            Err(AccessError::Denied(format!(
                "{what} `{endpoint}` is not in the step's network grants\n  hint: add `allow: {{ net: [\"{endpoint}\"] }}` to the step"
            )))
        }
    }
}
