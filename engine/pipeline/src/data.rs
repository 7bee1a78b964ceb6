//! Plain YAML data files (such as `kiln serve`'s configuration) read with the same parser as
//! pipelines: the document as JSON plus the span of every value by JSON Pointer, so a consumer
//! that deserializes it can point at `file:line:col` when a value is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::{Diagnostic, Severity, SourceFile, Span};
use crate::yaml::{self, Kind, Loaded, Node, ScalarValue, Source};

/// A YAML document as JSON, with where each value was written.
#[derive(Debug, Clone)]
pub struct Data {
    pub file: Arc<SourceFile>,
    /// The document (`null` for an empty file).
    pub value: serde_json::Value,
    /// Span of each value by JSON Pointer (`""` is the whole document).
    pub spans: BTreeMap<String, Span>,
}

impl Data {
    /// Where the value at `pointer` (or its nearest written ancestor) is.
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

    /// An error diagnostic at the value `pointer` names.
    pub fn error(&self, pointer: &str, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic {
            code: "K005",
            severity: Severity::Error,
            message,
            file: Arc::clone(&self.file),
            span: self.span_at(pointer),
            hint,
        }
    }
}

/// Read `text` (shown as `path` in diagnostics) as one YAML document. Syntax errors, duplicate
/// keys and unsupported YAML are errors, as in pipeline files; keys must be strings.
pub fn parse_data(path: &str, text: &str) -> Result<Data, Vec<Diagnostic>> {
    let file = Arc::new(SourceFile {
        path: path.to_owned(),
        text: text.to_owned(),
    });
    let source = Source::new(text);
    let diag = |code: &'static str, span: Option<Span>, message: String, hint: Option<String>| {
        Diagnostic {
            code,
            severity: Severity::Error,
            message,
            file: Arc::clone(&file),
            span,
            hint,
        }
    };
    match yaml::load(&source) {
        Loaded::Empty => Ok(Data {
            file: Arc::clone(&file),
            value: serde_json::Value::Null,
            spans: BTreeMap::new(),
        }),
        Loaded::Fatal(p) => Err(vec![diag(
            p.code,
            Some(source.span(p.start, p.end)),
            p.message,
            p.hint,
        )]),
        Loaded::Doc(root, problems) => {
            let mut diags: Vec<Diagnostic> = problems
                .into_iter()
                .map(|p| diag(p.code, Some(source.span(p.start, p.end)), p.message, p.hint))
                .collect();
            let mut spans = BTreeMap::new();
            let value = to_json(
                &source,
                &root,
                String::new(),
                &mut spans,
                &mut |span, what| {
                    diags.push(diag(
                        "K002",
                        Some(span),
                        format!("keys must be strings, found {what}"),
                        Some("quote the key".to_owned()),
                    ));
                },
            );
            if diags.is_empty() {
                Ok(Data {
                    file: Arc::clone(&file),
                    value,
                    spans,
                })
            } else {
                Err(diags)
            }
        }
    }
}

fn to_json(
    source: &Source<'_>,
    node: &Node,
    pointer: String,
    spans: &mut BTreeMap<String, Span>,
    bad_key: &mut dyn FnMut(Span, &'static str),
) -> serde_json::Value {
    use serde_json::Value;
    spans.insert(pointer.clone(), source.span(node.start, node.end));
    match &node.kind {
        Kind::Map(pairs) => {
            let mut obj = serde_json::Map::new();
            for (k, v) in pairs {
                let Some(key) = k.scalar().map(|s| s.text.clone()) else {
                    bad_key(source.span(k.start, k.end), k.kind_name());
                    continue;
                };
                let escaped = key.replace('~', "~0").replace('/', "~1");
                let child = if v.start == v.end && v.is_null() {
                    // `key:` with nothing after it: point at the key.
                    spans.insert(format!("{pointer}/{escaped}"), source.span(k.start, k.end));
                    Value::Null
                } else {
                    to_json(source, v, format!("{pointer}/{escaped}"), spans, bad_key)
                };
                obj.insert(key, child);
            }
            Value::Object(obj)
        }
        Kind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(source, item, format!("{pointer}/{i}"), spans, bad_key))
                .collect(),
        ),
        Kind::Scalar(s) => match s.value {
            ScalarValue::Null => Value::Null,
            ScalarValue::Bool(b) => Value::Bool(b),
            ScalarValue::Int(i) => Value::from(i),
            ScalarValue::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            ScalarValue::Str => Value::String(s.text.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_becomes_json_with_the_span_of_every_value() {
        let data =
            parse_data("c.yaml", "listen: 127.0.0.1:8080\nqueue:\n  max_runs: 4\n").expect("valid");
        assert_eq!(
            data.value,
            serde_json::json!({ "listen": "127.0.0.1:8080", "queue": { "max_runs": 4 } })
        );
        let span = data.span_at("/queue/max_runs").expect("span");
        assert_eq!((span.line, span.col), (3, 13));
        let fallback = data.span_at("/queue/missing").expect("parent span");
        assert_eq!(fallback.line, 3);
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_are_diagnostics() {
        let errs = parse_data("c.yaml", "a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(errs[0].code, "K006");
        let errs = parse_data("c.yaml", "a: [1\n").expect_err("syntax");
        assert_eq!(errs[0].code, "K001");
    }

    #[test]
    fn an_empty_file_is_null() {
        assert_eq!(
            parse_data("c.yaml", "# nothing\n").expect("ok").value,
            serde_json::Value::Null
        );
    }
}
