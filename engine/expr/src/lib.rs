//! The `${{ ... }}` expression language of Kiln pipelines.
//!
//! Expressions appear inside `${{ }}` in strings of a pipeline (`with:`, `env:`, ...) and as
//! `if:` conditions (with or without `${{ }}`). This crate parses them ([`Expr::parse`],
//! [`Template::parse`]), lists the context paths they read ([`Expr::references`]) so a pipeline
//! can be checked before it runs, and evaluates them against a [`Scope`].
//!
//! # Language reference
//!
//! The language follows GitHub Actions expressions; the differences are listed at the end.
//!
//! ## Literals
//!
//! | Literal | Examples |
//! |---------|----------|
//! | null    | `null` |
//! | boolean | `true`, `false` |
//! | number  | `3`, `-1`, `0.5`, `-1.5` (no exponents, no hexadecimal) |
//! | string  | `'text'`, `'it''s'` — single quotes only; write `''` for a quote inside |
//!
//! ## Contexts
//!
//! A name (letters, digits, `_` and `-`, not starting with a digit or `-`) reads a context:
//! `env`, `matrix`, `steps`, `event`, `git`, `secrets`, `run`, `inputs`. What a context holds
//! depends on where the expression is used. Inside a context:
//!
//! - `steps.build.outputs.digest` reads a property (names may contain `-`: `steps.my-step`);
//! - `env['MY VAR']` reads a property whose name is a string;
//! - `matrix.targets[0]` reads an array element (indexes start at 0);
//! - `matrix.images[matrix.i]` indexes by the value of another expression.
//!
//! A context, property or element that does not exist is `null`, never an error:
//! `steps.nope.outputs.x` is `null`, and so is `'text'.length` or `env[1]`.
//!
//! ## Operators
//!
//! From the tightest binding to the loosest:
//!
//! | Operator | Meaning |
//! |----------|---------|
//! | `( )` | grouping |
//! | `[ ]`, `.` | index, property |
//! | `!` | not |
//! | `<`, `<=`, `>`, `>=` | ordering |
//! | `==`, `!=` | equality |
//! | `&&` | and |
//! | `\|\|` | or |
//!
//! Operators of the same level group from the left: `a == b == c` is `(a == b) == c`.
//!
//! **Truthiness.** `null`, `false`, `0` and `''` are false; every other value, including empty
//! arrays and objects, is true. `!` gives the opposite boolean.
//!
//! **`&&` and `||`** stop at the first operand that decides the result and give that operand
//! itself, not a boolean: `inputs.tag || 'latest'` is the tag when it is set and non-empty,
//! else `'latest'`; `a && b` is `a` when `a` is false, else `b`. Operands after the deciding one
//! are not evaluated.
//!
//! **`==` and `!=`** compare strictly: values of different types are never equal (`1 == '1'`
//! is false, `null == false` is false). Numbers compare by value (`1 == 1.0`), strings
//! case-sensitively (`'a' == 'A'` is false), arrays element by element, objects by having the
//! same keys with equal values.
//!
//! **`<`, `<=`, `>`, `>=`** compare two numbers by value, or two strings character by character
//! (by Unicode code point, so `'B' < 'a'`). Any other pair is an evaluation error naming both
//! types, e.g. "cannot order a string and a number".
//!
//! ## Functions
//!
//! Function names are case-sensitive. Calling an unknown function, or a function with the wrong
//! number of arguments, is a syntax error. Where a function expects a string or an array, a
//! `null` argument (a missing value) counts as empty; other wrong types are evaluation errors.
//!
//! | Function | Result |
//! |----------|--------|
//! | `contains(haystack, needle)` | string: whether `needle` (a string, number or boolean) is a substring, case-sensitively; array: whether an element `==` `needle`; `null`: false |
//! | `startsWith(string, prefix)` | whether `string` starts with `prefix`, case-sensitively; false if either is `null` |
//! | `endsWith(string, suffix)` | whether `string` ends with `suffix`, case-sensitively; false if either is `null` |
//! | `format(template, v0, v1, ...)` | `template` with `{0}`, `{1}`, ... replaced by the values written as in a string (see Templates); `{{` and `}}` are literal braces. A placeholder without a value is an error, found when parsing if `template` is a literal |
//! | `join(array, separator = ',')` | the elements, each written as in a string, separated by `separator`; a string is returned as is, `null` gives `''` |
//! | `toJSON(value)` | `value` as pretty-printed JSON (two-space indent) |
//! | `fromJSON(text)` | the JSON value `text` holds, e.g. `fromJSON('[1, 2]')[0]` is `1` |
//! | `length(value)` | characters of a string, elements of an array, keys of an object; `null` gives `0` |
//! | `success()` | true unless a step this one needs failed or the run was cancelled |
//! | `failure()` | true if a step this one needs (directly or not) failed |
//! | `cancelled()` | true if the run was cancelled |
//! | `always()` | true |
//!
//! A condition that calls a status function decides for itself whether its step runs after a
//! failure or a cancellation; [`Expr::uses_status_function`] tells the engine which ones do.
//!
//! ## Templates
//!
//! A string with `${{ expression }}` parts is a [`Template`]. `}}` inside a string literal does
//! not end the expression: `${{ format('{{x}}') }}` is the text `{x}`. There is no way to write
//! a literal `${{` in a template.
//!
//! A string that is exactly one `${{ }}` (no other characters, not even spaces) takes the type of
//! its value: `${{ fromJSON('[1, 2]') }}` is an array. Otherwise each value is written into the
//! string: a string as is, `null` as nothing, anything else as compact JSON (`true`, `3`,
//! `[1,2]`).
//!
//! ## Limits
//!
//! `(`, `[`, `!` and function calls may nest at most [`MAX_DEPTH`] levels deep.
//!
//! ## Differences from GitHub Actions
//!
//! - String comparison (`==`, `<`, `contains`, `startsWith`, `endsWith`) is case-sensitive;
//!   GitHub ignores case. Compare explicitly when you mean it: `x == 'Linux' || x == 'linux'`.
//! - `==` never converts types (GitHub turns `'1' == 1` into a number comparison), and
//!   ordering anything but two numbers or two strings is an error instead of a conversion.
//! - No object filters (`steps.*.outputs`) and no hexadecimal or exponent number literals.
//! - Every offset this crate reports is a byte offset.
//!
//! # Example
//!
//! ```
//! use kiln_expr::{Scope, Template};
//! use serde_json::json;
//!
//! let mut scope = Scope::default();
//! scope.roots.insert("matrix".into(), json!({ "os": "linux", "arch": "arm64" }));
//!
//! let template = Template::parse("build-${{ matrix.os }}-${{ matrix.arch || 'amd64' }}")?;
//! assert_eq!(template.eval(&scope)?, json!("build-linux-arm64"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;
mod value;

use std::fmt;

use serde_json::Value;

pub use parser::MAX_DEPTH;

/// A syntax error, with its byte offset in the text that was parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// Byte offset in the parsed text (for a template: in the whole template string).
    pub offset: usize,
    pub message: String,
}

/// An evaluation error (a missing key is not an error: it evaluates to `null`). The message
/// quotes the part of the expression that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    root: ast::Node,
}

/// A context path an expression reads, e.g. `steps.build.outputs.digest` is
/// `["steps", "build", "outputs", "digest"]`. Only the statically known prefix is kept
/// (an index by a computed value ends the path).
///
/// `a['b'].c` is `["a", "b", "c"]` and `a[0]` is `["a", "0"]`. `a[matrix.i].c` gives two
/// references: `["a"]` and `["matrix", "i"]`. Function names are not references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub path: Vec<String>,
    /// Byte range of the reference in the parsed text.
    pub start: usize,
    pub end: usize,
}

/// Status functions (`success()`, `failure()`, `always()`, `cancelled()`) read these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Some step this one needs (transitively) failed.
    pub failed: bool,
    /// The run was cancelled.
    pub cancelled: bool,
}

/// What expressions can read: an object whose keys are the roots (`env`, `matrix`, `steps`,
/// `event`, `git`, `secrets`, ...), plus the status for the status functions.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub roots: serde_json::Map<String, Value>,
    pub status: Status,
}

impl Expr {
    /// Parse the text between `${{` and `}}` (or a bare `if:` condition). Offsets (in errors
    /// and references) are byte offsets in `source`, surrounding whitespace included.
    pub fn parse(source: &str) -> Result<Expr, SyntaxError> {
        Ok(Expr {
            root: parser::parse(source)?,
            source: source.to_owned(),
        })
    }

    /// The text that was parsed, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every context path the expression reads, in source order.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        self.root.references(&mut out);
        out
    }

    /// True if the expression calls a status function (`always()`, `failure()`, ...); such a
    /// condition decides for itself whether a step runs after a failure.
    pub fn uses_status_function(&self) -> bool {
        let mut found = false;
        self.root.walk(&mut |node| {
            found |= matches!(&node.kind, ast::Kind::Call { function, .. } if function.is_status());
        });
        found
    }

    pub fn eval(&self, scope: &Scope) -> Result<Value, EvalError> {
        let evaluator = eval::Evaluator {
            source: &self.source,
            scope,
        };
        Ok(evaluator.eval(&self.root)?.into_owned())
    }
}

/// The expression text, trimmed.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source.trim())
    }
}

/// Truthiness used by `if:`, `!`, `&&` and `||`: `null`, `false`, `0`, `""` are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A string that may contain `${{ expr }}` parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text outside `${{ }}`; never empty.
    Literal(String),
    /// An expression and the byte offset of its text inside the template (just past `${{`).
    Expr(Expr, usize),
}

impl Template {
    /// Split `text` into literal text and expressions. Error offsets are byte offsets in `text`.
    pub fn parse(text: &str) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        let mut literal_start = 0;
        while let Some(found) = text.get(literal_start..).and_then(|rest| rest.find("${{")) {
            let open = literal_start + found;
            let expr_start = open + 3;
            let close = find_close(text, expr_start).map_err(|string_start| SyntaxError {
                offset: open,
                message: unclosed_message(text, string_start),
            })?;
            if open > literal_start {
                let literal = text.get(literal_start..open).unwrap_or_default();
                parts.push(Part::Literal(literal.to_owned()));
            }
            let inner = text.get(expr_start..close).unwrap_or_default();
            if inner.trim().is_empty() {
                return Err(SyntaxError {
                    offset: open,
                    message:
                        "empty expression `${{ }}`; write an expression between `${{` and `}}`"
                            .to_owned(),
                });
            }
            let expr = Expr::parse(inner).map_err(|error| SyntaxError {
                offset: expr_start + error.offset,
                message: error.message,
            })?;
            parts.push(Part::Expr(expr, expr_start));
            literal_start = close + 2;
        }
        if literal_start < text.len() {
            let literal = text.get(literal_start..).unwrap_or_default();
            parts.push(Part::Literal(literal.to_owned()));
        }
        Ok(Template { parts })
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True if the template has no expression.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// References of every expression, with offsets relative to the whole template.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Expr(e, at) = part {
                out.extend(e.references().into_iter().map(|mut r| {
                    r.start += at;
                    r.end += at;
                    r
                }));
            }
        }
        out
    }

    /// True if any expression calls a status function.
    pub fn uses_status_function(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Expr(e, _) if e.uses_status_function()))
    }

    /// A template that is exactly one `${{ expr }}` keeps the expression's JSON type (a list
    /// stays a list); anything else is string interpolation.
    pub fn eval(&self, scope: &Scope) -> Result<Value, EvalError> {
        if let [Part::Expr(e, _)] = self.parts.as_slice() {
            return e.eval(scope);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Expr(e, _) => out.push_str(&to_display_string(&e.eval(scope)?)),
            }
        }
        Ok(Value::String(out))
    }
}

/// The offset of the `}}` that closes an expression starting at `from`, skipping `}}` inside
/// string literals. Without one: the offset of the string literal left open, if any.
fn find_close(text: &str, from: usize) -> Result<usize, Option<usize>> {
    let bytes = text.as_bytes();
    let mut string_start = None;
    let mut i = from;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            // `''` inside a string closes and reopens it, which is all an escape needs.
            b'\'' => {
                string_start = if string_start.is_some() {
                    None
                } else {
                    Some(i)
                }
            }
            b'}' if string_start.is_none() && bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err(string_start)
}

fn unclosed_message(text: &str, string_start: Option<usize>) -> String {
    match string_start.and_then(|start| text.get(start..)) {
        Some(string) => format!(
            "unclosed `${{{{`: the string `{}` never ends, so it hides the `}}}}`; end the string with `'` (write `''` for a quote inside it)",
            value::shorten(string, 30)
        ),
        None => "unclosed `${{`; close the expression with `}}`".to_owned(),
    }
}

/// How a value is written into a string: strings as-is, `null` as empty, others as JSON.
pub fn to_display_string(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Resolve every string in a JSON value as a template (keys are left alone).
pub fn eval_json(value: &Value, scope: &Scope) -> Result<Value, EvalError> {
    Ok(match value {
        Value::String(s) if s.contains("${{") => Template::parse(s)
            .map_err(|e| {
                EvalError(format!(
                    "{} (at byte {} of `{}`)",
                    e.message,
                    e.offset,
                    value::shorten(s, 60)
                ))
            })?
            .eval(scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| eval_json(v, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), eval_json(v, scope)?)))
                .collect::<Result<_, EvalError>>()?,
        ),
        other => other.clone(),
    })
}
