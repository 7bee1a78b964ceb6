//! What the user wrote, with spans. Produced by [`crate::parse`]; resolved into a Plan by the engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_expr::{Expr, Template};

use crate::diag::{SourceFile, Span};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// What was written.
    pub value: T,
    /// Where: the value itself (a key's span when the value was left empty).
    pub span: Span,
}

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it was read from (diagnostics of later stages point into it).
    pub file: Arc<SourceFile>,
    /// `name:` (empty, spanned at the first key, when missing).
    pub name: Spanned<String>,
    /// `on:`.
    pub on: Triggers,
    /// Pipeline-wide env, in file order. Values are templates (numbers and booleans as text).
    pub env: Vec<(Spanned<String>, Spanned<Template>)>,
    /// Steps in file order; the order breaks ties when several steps are ready at once.
    pub steps: Vec<Step>,
    /// `concurrency:` (used by `kiln serve`; `kiln run` ignores it).
    pub concurrency: Option<Concurrency>,
}

/// `concurrency:`: runs of one group run one at a time. `concurrency: NAME` or
/// `concurrency: { group: NAME, cancel-in-progress: true }`; the group is a template that may
/// read `event`, `git` and `run`, like the pipeline's `env`.
#[derive(Debug, Clone)]
pub struct Concurrency {
    pub group: Spanned<Template>,
    /// A new run cancels the older runs of its group instead of waiting for them.
    pub cancel_in_progress: bool,
}

/// `on:`: which events start the pipeline. Absent means manual runs only.
#[derive(Debug, Clone, Default)]
pub struct Triggers {
    /// `on.push` (`push:` with no value, or `on: push`, gives an empty filter).
    pub push: Option<EventFilter>,
    /// `on.pull_request`; `branches` match the target branch.
    pub pull_request: Option<EventFilter>,
    /// `on: { manual: {} }`, or implied by an empty `on:`.
    pub manual: bool,
    /// `on.schedule`: when `kiln serve` starts the pipeline by itself (it must also be listed
    /// in the server's `schedules:`).
    pub schedule: Vec<Schedule>,
}

/// One `on.schedule` entry.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written.
    pub cron: Spanned<String>,
    pub parsed: crate::cron::Cron,
}

/// Glob filters of one event kind; empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `branches:` globs.
    pub branches: Vec<Spanned<String>>,
    /// `tags:` globs.
    pub tags: Vec<Spanned<String>>,
    /// `paths:` globs: run if a changed file matches one.
    pub paths: Vec<Spanned<String>>,
    /// `paths-ignore:` globs: skip if every changed file matches one.
    pub paths_ignore: Vec<Spanned<String>>,
}

/// One entry of `steps:`.
#[derive(Debug, Clone)]
pub struct Step {
    /// `id:`, unique in the pipeline.
    pub id: Spanned<String>,
    /// `uses:`.
    pub uses: Spanned<PluginRef>,
    /// `with:` as JSON (strings may hold `${{ }}` templates) and where each part was written.
    pub with: Config,
    /// `needs:`, as written (a bare string is a list of one).
    pub needs: Vec<Spanned<String>>,
    /// `if:`, written with or without `${{ }}`.
    pub condition: Option<Spanned<Expr>>,
    /// `matrix:`.
    pub matrix: Option<Matrix>,
    /// `env:` of the step, in file order, added to the pipeline's.
    pub env: Vec<(Spanned<String>, Spanned<Template>)>,
    /// Names of the secrets the step may read (`${{ secrets.NAME }}`).
    pub secrets: Vec<Spanned<String>>,
    /// `timeout:` (always more than zero).
    pub timeout: Option<Spanned<Duration>>,
    /// `retry:`, with defaults filled in.
    pub retry: Option<Spanned<Retry>>,
    /// `continue-on-error: true`.
    pub continue_on_error: bool,
    /// `allow:`.
    pub allow: Allow,
    /// `cache:`.
    pub cache: StepCache,
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
    /// Axis name and values, in file order (at least one axis unless there were errors).
    pub axes: Vec<(Spanned<String>, Spanned<Axis>)>,
    /// The whole `matrix:` mapping.
    pub span: Span,
}

/// The values of one matrix axis.
#[derive(Debug, Clone)]
pub enum Axis {
    /// Literal strings, numbers or booleans (never templates), at least one.
    Values(Vec<serde_json::Value>),
    /// Exactly one `${{ }}` expression (no text around it) that must yield a list when the
    /// step becomes ready. It may read `steps` (needs), `env`, `event`, `git`, `run`, listed
    /// `secrets`, but not `matrix`.
    Dynamic(Template),
}

/// `retry:`: `retry: 3` or `retry: { attempts: 3, backoff: 10s, max-backoff: 5m }`.
/// `attempts` counts every try (3 = the first + 2 retries); the delay doubles from `backoff` up
/// to `max-backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// 1 to 10.
    pub attempts: u32,
    /// The first delay (default 1s; may be zero).
    pub backoff: Duration,
    /// The longest delay (default 5m, or `backoff` if that is longer); never below `backoff`.
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

/// `cache:`: whether the step cache may skip this step by replaying an earlier result, and
/// what its key covers. See the step cache in README.md for the automatic rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepCache {
    pub mode: CacheMode,
    /// `inputs:` globs: the files whose content is part of the key. `None`: the whole workspace.
    pub inputs: Option<Vec<Spanned<String>>>,
    /// `outputs:` globs: the files saved with the entry and restored on a hit.
    pub outputs: Vec<Spanned<String>>,
    /// Where `cache:` was written.
    pub span: Option<Span>,
}

/// How a step is cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// No `cache:`: cached when Kiln can tell it is safe (the plugin reaches nothing but the
    /// workspace, writes nothing to it, and does not declare side effects).
    #[default]
    Auto,
    /// `cache: false`: never.
    Off,
    /// `cache: true` or a mapping: always (the user vouches that the key covers what matters).
    On,
}

impl Pipeline {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id.value == id)
    }
}

impl Config {
    /// Where the value at a JSON Pointer was written, or its nearest written ancestor (a
    /// plugin may complain about `/tags/3` of a list that a template filled in).
    pub fn span_at(&self, pointer: &str) -> Option<Span> {
        let mut p = pointer;
        loop {
            if let Some(span) = self.spans.get(p) {
                return Some(*span);
            }
            let cut = p.rfind('/')?;
            p = p.get(..cut)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_at_falls_back_to_the_nearest_written_ancestor() {
        let span = |line| Span {
            line,
            ..Span::default()
        };
        let config = Config {
            value: serde_json::json!({ "tags": ["a"] }),
            spans: BTreeMap::from([
                (String::new(), span(1)),
                ("/tags".to_owned(), span(2)),
                ("/tags/0".to_owned(), span(3)),
            ]),
        };
        assert_eq!(config.span_at("/tags/0").map(|s| s.line), Some(3));
        assert_eq!(config.span_at("/tags/5").map(|s| s.line), Some(2));
        assert_eq!(config.span_at("/other/x").map(|s| s.line), Some(1));
        assert_eq!(Config::default().span_at("/x"), None);
    }
}
