//! What the user wrote, with spans. Produced by [`crate::parse`]; resolved into a Plan by the engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_expr::{Expr, Template};

use crate::diag::{SourceFile, Span};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: Arc<SourceFile>,
    pub name: Spanned<String>,
    pub on: Triggers,
    /// Pipeline-wide env, in file order. Values are templates (numbers and booleans as text).
    pub env: Vec<(Spanned<String>, Spanned<Template>)>,
    /// Steps in file order; the order breaks ties when several steps are ready at once.
    pub steps: Vec<Step>,
}

/// `on:`: which events start the pipeline. Absent means manual runs only.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    pub push: Option<EventFilter>,
    pub pull_request: Option<EventFilter>,
    /// `on: { manual: {} }`, or implied by an empty `on:`.
    pub manual: bool,
}

/// Glob filters of one event kind; empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub branches: Vec<Spanned<String>>,
    pub tags: Vec<Spanned<String>>,
    pub paths: Vec<Spanned<String>>,
    pub paths_ignore: Vec<Spanned<String>>,
}

/// One entry of `steps:`.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: Spanned<String>,
    pub uses: Spanned<PluginRef>,
    /// `with:` as JSON (strings may hold `${{ }}` templates) and where each part was written.
    pub with: Config,
    pub needs: Vec<Spanned<String>>,
    /// `if:`, written with or without `${{ }}`.
    pub condition: Option<Spanned<Expr>>,
    pub matrix: Option<Matrix>,
    pub env: Vec<(Spanned<String>, Spanned<Template>)>,
    /// Names of the secrets the step may read (`${{ secrets.NAME }}`).
    pub secrets: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<Duration>>,
    pub retry: Option<Spanned<Retry>>,
    pub continue_on_error: bool,
    pub allow: Allow,
    /// The whole step mapping.
    pub span: Span,
}

/// What `uses:` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A built-in plugin shipped in the binary, e.g. `echo`.
    Builtin(String),
    /// A `.wasm` component, relative to the pipeline file's directory unless absolute.
    Path(String),
    /// `oci://registry/repo@sha256:...`, pinned by digest.
    Oci(String),
}

/// A step's `with:` mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// A JSON object (empty when `with:` is absent).
    pub value: serde_json::Value,
    /// Span of each value by JSON Pointer (`""` is the whole mapping, `/tags/0` an item), so a
    /// plugin's complaint about `/tags/0` can point at the line.
    pub spans: BTreeMap<String, Span>,
}

/// `matrix:`: one axis per key. Each axis is a literal list, or an expression that must yield a
/// list when the step becomes ready (dynamic fan-out over an upstream step's outputs).
#[derive(Debug, Clone)]
pub struct Matrix {
    pub axes: Vec<(Spanned<String>, Spanned<Axis>)>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Axis {
    Values(Vec<serde_json::Value>),
    Dynamic(Template),
}

/// `retry:`: `retry: 3` or `retry: { attempts: 3, backoff: 10s, max-backoff: 5m }`.
/// `attempts` counts every try (3 = the first + 2 retries); the delay doubles from `backoff` up
/// to `max-backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// `allow:`: the privileges the step grants its plugin. Least privilege: nothing by default.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    /// `workspace: write` (the workspace is read-only otherwise).
    pub workspace_write: Option<Span>,
    /// `net: ["host:port", ...]`.
    pub net: Vec<Spanned<String>>,
}
