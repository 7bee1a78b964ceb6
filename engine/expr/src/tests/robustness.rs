//! No input makes the parser or the evaluator panic or overflow the stack.

use serde_json::json;

use super::scope;
use crate::{Expr, MAX_DEPTH, Scope, SyntaxError, Template};

/// Parse `text` as an expression and as a template, and evaluate whatever parses. Errors must
/// point inside the text, on a character boundary.
fn exercise(text: &str, scope: &Scope) {
    let check = |result: Result<(), SyntaxError>| {
        if let Err(error) = result {
            assert!(
                error.offset <= text.len() && text.is_char_boundary(error.offset),
                "offset {} out of `{text}`",
                error.offset
            );
            assert!(!error.message.is_empty());
        }
    };
    check(Expr::parse(text).map(|expr| {
        let _ = expr.eval(scope);
        let _ = expr.references();
        let _ = expr.uses_status_function();
    }));
    check(Template::parse(text).map(|template| {
        let _ = template.eval(scope);
        for reference in template.references() {
            assert!(text.get(reference.start..reference.end).is_some());
        }
    }));
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

const PIECES: &[&str] = &[
    "${{",
    "}}",
    "{",
    "}",
    "'",
    "''",
    "(",
    ")",
    "[",
    "]",
    ".",
    ",",
    "!",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "=",
    "&",
    "|",
    "-",
    "\"",
    " ",
    "\n",
    "a",
    "env",
    "matrix",
    "steps",
    "build",
    "null",
    "true",
    "false",
    "0",
    "1",
    "-1.5",
    "9999999999999999999999",
    "1e3",
    "é",
    "💥",
    "\u{0}",
    "contains",
    "format",
    "join",
    "toJSON",
    "fromJSON",
    "length",
    "always",
    "startsWith",
    "'{0}'",
    "'{'",
    "'}}'",
    "'[1,2]'",
    "'{\"a\":1}'",
];

#[test]
fn random_input_never_panics() {
    let scope = scope();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let count = rng.below(16);
        let text: String = (0..count)
            .map(|_| {
                PIECES
                    .get(rng.below(PIECES.len()))
                    .copied()
                    .unwrap_or_default()
            })
            .collect();
        exercise(&text, &scope);
    }
}

#[test]
fn every_prefix_and_suffix_of_valid_input_fails_cleanly() {
    let valid = [
        "steps.build.outputs.digest == 'sha256:abc' && !(matrix.n < 2) || env['MY VAR']",
        "format('{0}-{{1}}', matrix.targets[matrix.i], fromJSON('[1, \"é\"]')[1])",
        "x ${{ contains(event.labels, 'ci') }} y ${{ 'it''s }}' }} z",
        "${{ join(matrix.targets, ', ') || always() }}",
    ];
    let scope = scope();
    for text in valid {
        for (cut, _) in text.char_indices() {
            exercise(text.get(..cut).unwrap_or_default(), &scope);
            exercise(text.get(cut..).unwrap_or_default(), &scope);
        }
    }
}

#[test]
fn nesting_up_to_the_limit_parses_and_evaluates() {
    let text = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    let expr = Expr::parse(&text).expect("the limit is allowed");
    assert_eq!(expr.eval(&scope()), Ok(json!(1)));
}

#[test]
fn every_kind_of_nesting_up_to_the_limit_evaluates() {
    let nest = |open: &str, inner: &str, close: &str| {
        format!(
            "{}{inner}{}",
            open.repeat(MAX_DEPTH),
            close.repeat(MAX_DEPTH)
        )
    };
    let cases = [
        (nest("!", "1", ""), json!(true)), // an even number of `!`
        (nest("format('{0}', ", "1", ")"), json!("1")),
        (nest("matrix[", "'os'", "]"), json!(null)),
        (nest("(true && ", "1", ")"), json!(1)),
    ];
    for (text, expected) in cases {
        let expr = Expr::parse(&text).expect("the limit is allowed");
        assert_eq!(expr.eval(&scope()), Ok(expected), "{text}");
    }
}

#[test]
fn nesting_beyond_the_limit_is_a_syntax_error() {
    let text = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let error = Expr::parse(&text).expect_err("one level too deep");
    assert_eq!(error.offset, MAX_DEPTH);
    assert_eq!(
        error.message,
        "expression nests more than 64 levels of `(`, `[`, `!` or function calls; simplify it"
    );
}

#[test]
fn deep_nesting_of_every_kind_is_a_syntax_error_not_a_stack_overflow() {
    for opener in ["(", "!", "a[", "length(", "a[!", "!(", "format('', "] {
        let text = opener.repeat(10_000);
        let error = Expr::parse(&text).expect_err("far too deep");
        assert!(
            error.message.starts_with("expression nests"),
            "{opener}: {error}"
        );
        let error = Template::parse(&format!("${{{{ {text} }}}}")).expect_err("far too deep");
        assert!(
            error.message.starts_with("expression nests"),
            "{opener}: {error}"
        );
    }
}

#[test]
fn long_flat_chains_parse_and_evaluate_without_deep_recursion() {
    for (first, repeated) in [
        ("null", " || null"),
        ("true", " && true"),
        ("true", " == true"),
        ("1", " <= 1 == true"),
        ("matrix", ".a"),
        ("matrix", "['a']"),
        ("matrix", "[0]"),
    ] {
        let text = format!("{first}{}", repeated.repeat(10_000));
        let expr = Expr::parse(&text).expect("flat chains have no depth");
        let _ = expr.eval(&scope());
        let _ = expr.references();
    }
}
