//! Which context paths a step's expressions read.

use std::collections::BTreeMap;

use kiln_expr::{Reference, Template};
use kiln_pipeline::{Axis, Span, Step};
use serde_json::Value;

/// Every reference in the step's `with:`, `env:`, `if:` and `matrix:`, with the span of the value
/// that holds it. Unparsable templates are skipped (the parser already reported them).
pub fn step_references(step: &Step) -> Vec<(Reference, Span)> {
    let mut out = Vec::new();
    collect_json(&step.with.value, String::new(), step, &mut out);
    for (_, value) in &step.env {
        out.extend(
            value
                .value
                .references()
                .into_iter()
                .map(|r| (r, value.span)),
        );
    }
    if let Some(cond) = &step.condition {
        out.extend(cond.value.references().into_iter().map(|r| (r, cond.span)));
    }
    if let Some(m) = &step.matrix {
        for (_, axis) in &m.axes {
            if let Axis::Dynamic(t) = &axis.value {
                out.extend(t.references().into_iter().map(|r| (r, axis.span)));
            }
        }
    }
    out
}

fn collect_json(value: &Value, pointer: String, step: &Step, out: &mut Vec<(Reference, Span)>) {
    match value {
        Value::String(s) if s.contains("${{") => {
            if let Ok(t) = Template::parse(s) {
                let span = step.with.spans.get(&pointer).copied().unwrap_or(step.span);
                out.extend(t.references().into_iter().map(|r| (r, span)));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_json(v, format!("{pointer}/{i}"), step, out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_json(
                    v,
                    format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                    step,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Indices of the steps whose outputs `step` reads (`steps.<id>...`), sorted.
pub fn steps_read(step: &Step, index_of: &BTreeMap<&str, usize>) -> Vec<usize> {
    let mut reads: Vec<usize> = step_references(step)
        .into_iter()
        .filter_map(|(r, _)| match r.path.as_slice() {
            [root, id, ..] if root == "steps" => index_of.get(id.as_str()).copied(),
            _ => None,
        })
        .collect();
    reads.sort_unstable();
    reads.dedup();
    reads
}
