//! Behaviour tests against the public API. Each test name is the sentence it checks.

mod errors;
mod functions;
mod operators;
mod references;
mod robustness;
mod templates;

use serde_json::{Value, json};

use crate::{Expr, Scope, Status, SyntaxError};

/// The scope most tests evaluate against.
fn scope() -> Scope {
    let roots = json!({
        "env": { "NAME": "kiln", "EMPTY": "", "MY VAR": "spaced" },
        "matrix": { "os": "linux", "i": 1, "n": 3, "f": 1.5, "targets": ["amd64", "arm64"] },
        "steps": {
            "build": {
                "outcome": "success",
                "outputs": { "digest": "sha256:abc", "tags": ["a", "b"], "json": "{\"k\": [1, 2]}" }
            },
            "my-step": { "outputs": { "x": "y" } }
        },
        "event": { "labels": ["bug", "ci"], "count": 0, "draft": false, "title": "Fix it" }
    });
    let Value::Object(roots) = roots else {
        unreachable!("the fixture is an object")
    };
    Scope {
        roots,
        status: Status::default(),
    }
}

fn scope_with(status: Status) -> Scope {
    Scope { status, ..scope() }
}

#[track_caller]
fn parse(source: &str) -> Expr {
    Expr::parse(source).unwrap_or_else(|e| panic!("`{source}` should parse: {e:?}"))
}

#[track_caller]
fn eval(source: &str) -> Value {
    parse(source)
        .eval(&scope())
        .unwrap_or_else(|e| panic!("`{source}` should evaluate: {e}"))
}

#[track_caller]
fn eval_error(source: &str) -> String {
    match parse(source).eval(&scope()) {
        Ok(value) => panic!("`{source}` should fail to evaluate, got {value}"),
        Err(e) => e.0,
    }
}

#[track_caller]
fn syntax_error(source: &str) -> SyntaxError {
    match Expr::parse(source) {
        Ok(expr) => panic!("`{source}` should not parse, got {expr:?}"),
        Err(e) => e,
    }
}
