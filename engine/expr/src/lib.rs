//! The `${{ ... }}` expression language of Kiln pipelines.
//!
//! PLACEHOLDER IMPLEMENTATION: the public API below is the contract; the bodies are being
//! replaced by the real parser and evaluator.

use serde_json::Value;

/// A syntax error, with its byte offset in the text that was parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// Byte offset in the parsed text (for a template: in the whole template string).
    pub offset: usize,
    pub message: String,
}

/// An evaluation error (a missing key is not an error: it evaluates to `null`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
}

/// A context path an expression reads, e.g. `steps.build.outputs.digest` is
/// `["steps", "build", "outputs", "digest"]`. Only the statically known prefix is kept
/// (an index by a computed value ends the path).
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
    /// Parse the text between `${{` and `}}` (or a bare `if:` condition).
    pub fn parse(source: &str) -> Result<Expr, SyntaxError> {
        Ok(Expr {
            source: source.trim().to_owned(),
        })
    }

    /// Every context path the expression reads.
    pub fn references(&self) -> Vec<Reference> {
        vec![Reference {
            path: self.source.split('.').map(str::to_owned).collect(),
            start: 0,
            end: self.source.len(),
        }]
    }

    /// True if the expression calls a status function (`always()`, `failure()`, ...); such a
    /// condition decides for itself whether a step runs after a failure.
    pub fn uses_status_function(&self) -> bool {
        false
    }

    pub fn eval(&self, scope: &Scope) -> Result<Value, EvalError> {
        let mut parts = self.source.split('.');
        let root = parts.next().unwrap_or_default();
        let mut value = scope.roots.get(root).cloned().unwrap_or(Value::Null);
        for p in parts {
            value = value.get(p).cloned().unwrap_or(Value::Null);
        }
        Ok(value)
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
    Literal(String),
    /// An expression and the byte offset of its text inside the template.
    Expr(Expr, usize),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, SyntaxError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut base = 0;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 3..];
            let end = after.find("}}").ok_or(SyntaxError {
                offset: base + start,
                message: "unclosed `${{`; close the expression with `}}`".to_owned(),
            })?;
            parts.push(Part::Expr(Expr::parse(&after[..end])?, base + start + 3));
            base += start + 3 + end + 2;
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
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
            .map_err(|e| EvalError(e.message))?
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
