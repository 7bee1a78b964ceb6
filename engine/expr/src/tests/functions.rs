use serde_json::json;

use super::{eval, eval_error, parse, scope_with, syntax_error};
use crate::Status;

#[test]
fn contains_finds_a_substring_case_sensitively() {
    assert_eq!(eval("contains('hello world', 'lo w')"), json!(true));
    assert_eq!(eval("contains('hello', 'Hello')"), json!(false));
    assert_eq!(eval("contains('hello', '')"), json!(true));
}

#[test]
fn contains_finds_an_array_element_with_equality() {
    assert_eq!(eval("contains(event.labels, 'bug')"), json!(true));
    assert_eq!(eval("contains(event.labels, 'Bug')"), json!(false));
    assert_eq!(eval("contains(fromJSON('[1, 2]'), 2.0)"), json!(true));
    assert_eq!(eval("contains(fromJSON('[1, 2]'), '2')"), json!(false));
}

#[test]
fn contains_writes_a_number_or_boolean_needle_as_text() {
    assert_eq!(eval("contains('node-18', 18)"), json!(true));
    assert_eq!(eval("contains('is true', true)"), json!(true));
}

#[test]
fn contains_in_null_is_false() {
    assert_eq!(eval("contains(event.missing, 'x')"), json!(false));
}

#[test]
fn contains_rejects_other_types() {
    assert!(
        eval_error("contains(matrix.n, 3)")
            .starts_with("`contains` searches a string or an array, got a number")
    );
    assert!(
        eval_error("contains('abc', null)")
            .starts_with("`contains` cannot search a string for `null`")
    );
}

#[test]
fn starts_with_and_ends_with_compare_case_sensitively() {
    assert_eq!(
        eval("startsWith('refs/tags/v1', 'refs/tags/')"),
        json!(true)
    );
    assert_eq!(eval("startsWith('refs/tags/v1', 'Refs/')"), json!(false));
    assert_eq!(eval("endsWith('app.tar.gz', '.gz')"), json!(true));
    assert_eq!(eval("endsWith('app.tar.gz', '.GZ')"), json!(false));
}

#[test]
fn starts_with_and_ends_with_are_false_for_null() {
    assert_eq!(eval("startsWith(event.missing, 'a')"), json!(false));
    assert_eq!(eval("endsWith('a', event.missing)"), json!(false));
}

#[test]
fn starts_with_and_ends_with_reject_other_types() {
    assert_eq!(
        eval_error("startsWith(matrix.n, '3')"),
        "`startsWith` needs two strings, got a number and a string (in `startsWith(matrix.n, '3')`)"
    );
    assert!(eval_error("endsWith('a', fromJSON('[]'))").contains("got a string and an array"));
}

#[test]
fn format_replaces_numbered_placeholders() {
    assert_eq!(
        eval("format('{0}-{1}-{0}', matrix.os, matrix.n)"),
        json!("linux-3-linux")
    );
    assert_eq!(eval("format('no placeholders')"), json!("no placeholders"));
}

#[test]
fn format_writes_double_braces_as_single_braces() {
    assert_eq!(eval("format('{{{0}}}', 'x')"), json!("{x}"));
    assert_eq!(eval("format('{{0}}', 'x')"), json!("{0}"));
}

#[test]
fn format_writes_values_as_in_a_template() {
    assert_eq!(
        eval("format('[{0}|{1}|{2}|{3}]', null, true, steps.build.outputs.tags, matrix.f)"),
        json!(r#"[|true|["a","b"]|1.5]"#)
    );
}

#[test]
fn format_with_a_literal_template_is_checked_when_parsing() {
    let error = syntax_error("format('{0} {1}', 'a')");
    assert_eq!(error.offset, 7);
    assert_eq!(
        error.message,
        "`format` placeholder `{1}` has no value: only 1 is given after the format string"
    );
    assert_eq!(syntax_error("format('{x}')").offset, 7);
    assert_eq!(syntax_error("format('a } b')").offset, 7);
}

#[test]
fn format_with_a_computed_template_is_checked_when_evaluating() {
    assert_eq!(eval("format(env.NAME, 1)"), json!("kiln"));
    assert!(
        eval_error(r#"format(fromJSON('"{1}"'), 'a')"#)
            .starts_with("`format` placeholder `{1}` has no value")
    );
    assert!(
        eval_error("format(matrix.n)")
            .starts_with("`format` needs a string as its first argument, got a number")
    );
}

#[test]
fn join_uses_a_comma_by_default() {
    assert_eq!(eval("join(matrix.targets)"), json!("amd64,arm64"));
}

#[test]
fn join_uses_the_given_separator_and_writes_elements_as_text() {
    assert_eq!(eval("join(matrix.targets, ' ')"), json!("amd64 arm64"));
    assert_eq!(
        eval("join(fromJSON('[1, null, true, \"x\"]'), '/')"),
        json!("1//true/x")
    );
    assert_eq!(eval("join(fromJSON('[]'), '/')"), json!(""));
}

#[test]
fn join_returns_a_string_as_is_and_null_as_empty() {
    assert_eq!(eval("join('a,b', ' ')"), json!("a,b"));
    assert_eq!(eval("join(event.missing)"), json!(""));
}

#[test]
fn join_rejects_other_types() {
    assert!(eval_error("join(matrix.n)").starts_with("`join` needs an array, got a number"));
    assert!(
        eval_error("join(matrix.targets, 1)")
            .starts_with("`join` needs a string separator, got a number")
    );
}

#[test]
fn to_json_pretty_prints_with_two_spaces() {
    assert_eq!(
        eval("toJSON(steps.build.outputs.tags)"),
        json!("[\n  \"a\",\n  \"b\"\n]")
    );
    assert_eq!(eval("toJSON('x')"), json!("\"x\""));
    assert_eq!(eval("toJSON(null)"), json!("null"));
}

#[test]
fn from_json_parses_any_json_value() {
    assert_eq!(
        eval("fromJSON(steps.build.outputs.json)"),
        json!({"k": [1, 2]})
    );
    assert_eq!(eval("fromJSON('true')"), json!(true));
    assert_eq!(eval("fromJSON('null')"), json!(null));
    assert_eq!(eval("fromJSON(' 1.5 ')"), json!(1.5));
}

#[test]
fn from_json_and_to_json_round_trip() {
    assert_eq!(eval("fromJSON(toJSON(matrix)) == matrix"), json!(true));
}

#[test]
fn from_json_rejects_text_that_is_not_json() {
    let error = eval_error("fromJSON('{nope')");
    assert!(
        error.starts_with("`fromJSON` got text that is not JSON (`{nope`)"),
        "{error}"
    );
    assert!(eval_error("fromJSON(3)").starts_with("`fromJSON` needs a string, got a number"));
}

#[test]
fn length_counts_characters_elements_and_keys() {
    assert_eq!(eval("length('héllo')"), json!(5));
    assert_eq!(eval("length(matrix.targets)"), json!(2));
    assert_eq!(eval("length(env)"), json!(3));
    assert_eq!(eval("length(event.missing)"), json!(0));
    assert!(
        eval_error("length(true)")
            .starts_with("`length` needs a string, an array or an object, got a boolean")
    );
}

#[test]
fn status_functions_read_the_scope_status() {
    let cases = [
        (false, false, [true, false, false, true]),
        (true, false, [false, true, false, true]),
        (false, true, [false, false, true, true]),
        (true, true, [false, true, true, true]),
    ];
    for (failed, cancelled, expected) in cases {
        let scope = scope_with(Status { failed, cancelled });
        let results = ["success()", "failure()", "cancelled()", "always()"].map(|source| {
            parse(source)
                .eval(&scope)
                .expect("status functions evaluate")
        });
        assert_eq!(
            results,
            expected.map(serde_json::Value::Bool),
            "failed: {failed}, cancelled: {cancelled}"
        );
    }
}

#[test]
fn function_arguments_are_full_expressions() {
    assert_eq!(
        eval("contains(fromJSON('[true]'), 1 < 2 && !false)"),
        json!(true)
    );
    assert_eq!(eval("length(format('{0}', (matrix.os)))"), json!(5));
}
