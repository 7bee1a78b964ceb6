//! Diagnostics: what is wrong, where, and what to do.

use std::sync::Arc;

/// A pipeline file as read: its display path (as the user named it) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// A range in a [`SourceFile`]: 1-based line and column (in characters) of start and end, and
/// byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    pub line: u32,
    pub col: u32,
    pub end_line: u32,
    pub end_col: u32,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem. `code` is stable (documented in the README) so tools can match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    /// Lowercase sentence with the offending value in backticks.
    pub message: String,
    pub file: Arc<SourceFile>,
    pub span: Option<Span>,
    /// What to do about it.
    pub hint: Option<String>,
}
