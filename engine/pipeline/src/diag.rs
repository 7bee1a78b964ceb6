//! Diagnostics: what is wrong, where, and what to do.
//!
//! Every diagnostic has a stable code, so tools and tests can match on it:
//!
//! | code | severity | meaning |
//! |------|----------|---------|
//! | K001 | error | YAML syntax error (including tabs used for indentation), at the scanner's position |
//! | K002 | error | wrong type: says what was expected and what was found |
//! | K003 | error | unknown key, with "did you mean" when a known key is close |
//! | K004 | error | missing required key (`name`, `steps`, a step's `id` or `uses`, `retry.attempts`), or an empty file |
//! | K005 | error | invalid value: pattern, range, duration, plugin reference (an OCI reference must be pinned by digest), `allow.net` entry, empty list |
//! | K006 | error | duplicate key in a mapping (the first one is kept) |
//! | K007 | error | unsupported YAML: several documents, custom tags, merge keys (`<<`), alias expansion or nesting beyond the limits |
//! | K008 | warning | the same entry twice in `needs`, `secrets` or `allow.net` |
//! | K101 | error | duplicate step id |
//! | K102 | error | `needs` names a step that does not exist |
//! | K103 | error | dependency cycle (printed as a path), or a step that needs itself |
//! | K104 | error | expression syntax error in a `${{ }}` template or `if:` |
//! | K105 | error | bad context reference: unknown root, `steps.X` that is unknown, not a (transitive) need, the step itself, or not `steps.X.outputs...`; `steps`, `matrix` or `secrets` in the pipeline-level `env` |
//! | K106 | error | `matrix.K` in a step without a matrix axis `K` (or in a matrix axis itself) |
//! | K107 | error | `secrets.NAME` in a step whose `secrets:` does not list `NAME` |

use std::fmt::Write as _;
use std::sync::Arc;

/// The stable diagnostic codes and what each one means (the table above, as data).
pub const CODES: &[(&str, Severity, &str)] = &[
    ("K001", Severity::Error, "YAML syntax error"),
    ("K002", Severity::Error, "wrong type"),
    ("K003", Severity::Error, "unknown key"),
    ("K004", Severity::Error, "missing required key"),
    ("K005", Severity::Error, "invalid value"),
    ("K006", Severity::Error, "duplicate key"),
    ("K007", Severity::Error, "unsupported YAML feature"),
    ("K008", Severity::Warning, "duplicate list entry"),
    ("K101", Severity::Error, "duplicate step id"),
    ("K102", Severity::Error, "unknown step in `needs`"),
    ("K103", Severity::Error, "dependency cycle"),
    ("K104", Severity::Error, "expression syntax error"),
    ("K105", Severity::Error, "bad context reference"),
    ("K106", Severity::Error, "unknown matrix axis"),
    ("K107", Severity::Error, "secret not listed in `secrets`"),
];

/// A pipeline file as read: its display path (as the user named it) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as given to [`crate::parse`], shown in diagnostics.
    pub path: String,
    /// The whole text of the file.
    pub text: String,
}

/// A range in a [`SourceFile`]: 1-based line and column (in characters) of start and end, and
/// byte offsets. The end is exclusive: `end_col` is the column just after the last character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// 1-based line of the first character.
    pub line: u32,
    /// 1-based column (in characters) of the first character.
    pub col: u32,
    /// 1-based line of the end.
    pub end_line: u32,
    /// 1-based column (in characters) just after the last character.
    pub end_col: u32,
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just after the last character.
    pub end: usize,
}

/// How bad a [`Diagnostic`] is. Any error means the pipeline must not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth fixing; the pipeline can still run.
    Warning,
    /// The pipeline cannot run.
    Error,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem. `code` is stable (documented in the README) so tools can match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// One of [`CODES`].
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Lowercase sentence with the offending value in backticks.
    pub message: String,
    /// The file the problem is in.
    pub file: Arc<SourceFile>,
    /// Where in the file; `None` when the problem is the file as a whole (e.g. it is empty).
    pub span: Option<Span>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// True if any diagnostic is an error, i.e. the pipeline must not run.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// Render diagnostics for humans, like rustc (no colors), with a summary line per file:
///
/// ```text
/// error[K003]: unknown key `neds` in step `build`
///   --> pipelines/invalid/unknown-key.yaml:7:5
///    |
///  7 |     neds: [checkout]
///    |     ^^^^
///    = hint: did you mean `needs`?
///
/// error: 1 problem in pipelines/invalid/unknown-key.yaml
/// ```
///
/// Tabs in source lines are shown as four spaces (the carets follow). Empty input renders as
/// an empty string.
pub fn render(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        render_one(&mut out, d);
        out.push('\n');
    }
    // One summary per file, in order of first appearance.
    let mut files: Vec<(&str, usize, usize)> = Vec::new();
    for d in diags {
        let idx = match files.iter().position(|f| f.0 == d.file.path) {
            Some(i) => i,
            None => {
                files.push((&d.file.path, 0, 0));
                files.len() - 1
            }
        };
        if let Some(f) = files.get_mut(idx) {
            if d.is_error() {
                f.1 += 1;
            } else {
                f.2 += 1;
            }
        }
    }
    for (path, errors, warnings) in files {
        let total = errors + warnings;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let _ = if errors == 0 {
            writeln!(out, "warning: {total} warning{} in {path}", plural(total))
        } else if warnings == 0 {
            writeln!(out, "error: {total} problem{} in {path}", plural(total))
        } else {
            writeln!(
                out,
                "error: {total} problems ({warnings} warning{}) in {path}",
                plural(warnings)
            )
        };
    }
    out
}

fn render_one(out: &mut String, d: &Diagnostic) {
    let _ = writeln!(out, "{}[{}]: {}", d.severity.as_str(), d.code, d.message);
    let width = d.span.map_or(1, |s| s.line.to_string().len());
    let pad = " ".repeat(width + 1);
    match d.span {
        None => {
            let _ = writeln!(out, "{pad}--> {}", d.file.path);
        }
        Some(span) => {
            let _ = writeln!(out, "{pad}--> {}:{}:{}", d.file.path, span.line, span.col);
            let line_text = d
                .file
                .text
                .split('\n')
                .nth(span.line.saturating_sub(1) as usize)
                .unwrap_or("")
                .trim_end_matches('\r');
            let line_text = line_text.strip_prefix('\u{feff}').unwrap_or(line_text);
            let shown: String = line_text
                .chars()
                .map(|c| {
                    if c == '\t' {
                        "    ".to_owned()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            let width_of = |c: char| if c == '\t' { 4 } else { 1 };
            let before: usize = line_text
                .chars()
                .take(span.col.saturating_sub(1) as usize)
                .map(width_of)
                .sum();
            let last_col = if span.end_line == span.line {
                span.end_col
            } else {
                u32::try_from(line_text.chars().count() + 1).unwrap_or(u32::MAX)
            };
            let carets: usize = line_text
                .chars()
                .skip(span.col.saturating_sub(1) as usize)
                .take(last_col.saturating_sub(span.col) as usize)
                .map(width_of)
                .sum::<usize>()
                .max(1);
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(
                out,
                "{}",
                format!("{:>w$} | {shown}", span.line, w = width + 1).trim_end()
            );
            let _ = writeln!(out, "{pad} | {}{}", " ".repeat(before), "^".repeat(carets));
        }
    }
    if let Some(hint) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {hint}");
    }
}

/// Diagnostics as JSON, for tools: an array of
/// `{code, severity, file, line, col, end_line, end_col, message, hint}` (positions and hint
/// are `null` when absent; columns are 1-based characters, the end exclusive).
pub fn to_json(diags: &[Diagnostic]) -> serde_json::Value {
    serde_json::Value::Array(
        diags
            .iter()
            .map(|d| {
                serde_json::json!({
                    "code": d.code,
                    "severity": d.severity,
                    "file": d.file.path,
                    "line": d.span.map(|s| s.line),
                    "col": d.span.map(|s| s.col),
                    "end_line": d.span.map(|s| s.end_line),
                    "end_col": d.span.map(|s| s.end_col),
                    "message": d.message,
                    "hint": d.hint,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(text: &str, span: Option<Span>, hint: Option<&str>) -> Diagnostic {
        Diagnostic {
            code: "K003",
            severity: Severity::Error,
            message: "unknown key `neds` in step `build`".to_owned(),
            file: Arc::new(SourceFile {
                path: "p.yaml".to_owned(),
                text: text.to_owned(),
            }),
            span,
            hint: hint.map(str::to_owned),
        }
    }

    fn span(line: u32, col: u32, end_col: u32) -> Span {
        Span {
            line,
            col,
            end_line: line,
            end_col,
            start: 0,
            end: 0,
        }
    }

    #[test]
    fn render_points_carets_under_the_span_and_adds_a_summary() {
        let d = diag(
            "a: 1\nb:\n  neds: [x]\n",
            Some(span(3, 3, 7)),
            Some("did you mean `needs`?"),
        );
        let expected = "\
error[K003]: unknown key `neds` in step `build`
  --> p.yaml:3:3
   |
 3 |   neds: [x]
   |   ^^^^
   = hint: did you mean `needs`?

error: 1 problem in p.yaml
";
        assert_eq!(render(&[d]), expected);
    }

    #[test]
    fn render_expands_tabs_and_keeps_carets_aligned() {
        let d = diag("\tx: y\n", Some(span(1, 2, 3)), None);
        assert!(render(&[d]).contains(" 1 |     x: y\n   |     ^\n"));
    }

    #[test]
    fn render_without_a_span_names_only_the_file() {
        let d = diag("", None, None);
        assert!(render(&[d]).contains("  --> p.yaml\n"));
    }

    #[test]
    fn render_of_nothing_is_empty() {
        assert_eq!(render(&[]), "");
    }

    #[test]
    fn summary_counts_warnings_apart() {
        let mut w = diag("a\n", Some(span(1, 1, 2)), None);
        w.severity = Severity::Warning;
        assert!(render(std::slice::from_ref(&w)).ends_with("warning: 1 warning in p.yaml\n"));
        let e = diag("a\n", Some(span(1, 1, 2)), None);
        assert!(render(&[e, w]).ends_with("error: 2 problems (1 warning) in p.yaml\n"));
    }

    #[test]
    fn json_has_one_object_per_diagnostic_with_every_field() {
        let d = diag("a\n", Some(span(1, 1, 2)), Some("h"));
        let json = to_json(&[d]);
        assert_eq!(
            json,
            serde_json::json!([{
                "code": "K003", "severity": "error", "file": "p.yaml", "line": 1, "col": 1,
                "end_line": 1, "end_col": 2,
                "message": "unknown key `neds` in step `build`", "hint": "h"
            }])
        );
    }

    #[test]
    fn every_code_is_unique() {
        let mut codes: Vec<&str> = CODES.iter().map(|c| c.0).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len());
    }
}
