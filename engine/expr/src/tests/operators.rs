use serde_json::json;

use super::{eval, eval_error};

#[test]
fn null_true_false_numbers_and_strings_are_literals() {
    assert_eq!(eval("null"), json!(null));
    assert_eq!(eval("true"), json!(true));
    assert_eq!(eval("false"), json!(false));
    assert_eq!(eval("3"), json!(3));
    assert_eq!(eval("-1.5"), json!(-1.5));
    assert_eq!(eval("'text'"), json!("text"));
}

#[test]
fn integers_stay_integers() {
    assert!(eval("3").is_i64());
    assert!(eval("-7").is_i64());
    assert!(eval("0.5").is_f64());
}

#[test]
fn a_doubled_single_quote_is_a_quote_inside_a_string() {
    assert_eq!(eval("'it''s'"), json!("it's"));
    assert_eq!(eval("''''"), json!("'"));
    assert_eq!(eval("''"), json!(""));
}

#[test]
fn a_property_path_reads_nested_context_values() {
    assert_eq!(eval("steps.build.outputs.digest"), json!("sha256:abc"));
    assert_eq!(eval("matrix")["os"], json!("linux"));
    assert_eq!(eval("matrix.targets"), json!(["amd64", "arm64"]));
}

#[test]
fn whitespace_between_tokens_is_ignored() {
    assert_eq!(eval("  env . NAME\n"), json!("kiln"));
}

#[test]
fn property_names_may_contain_dashes() {
    assert_eq!(eval("steps.my-step.outputs.x"), json!("y"));
}

#[test]
fn keywords_are_plain_property_names_after_a_dot() {
    assert_eq!(eval(r#"fromJSON('{"null": 1, "true": 2}').null"#), json!(1));
    assert_eq!(eval(r#"fromJSON('{"null": 1, "true": 2}').true"#), json!(2));
}

#[test]
fn a_missing_root_key_or_element_is_null() {
    assert_eq!(eval("nope"), json!(null));
    assert_eq!(eval("nope.deeper.still"), json!(null));
    assert_eq!(eval("steps.nope.outputs.x"), json!(null));
    assert_eq!(eval("env.NAME.length"), json!(null));
    assert_eq!(eval("matrix.targets.first"), json!(null));
    assert_eq!(eval("matrix.targets[2]"), json!(null));
}

#[test]
fn an_index_by_string_reads_a_property() {
    assert_eq!(eval("env['MY VAR']"), json!("spaced"));
    assert_eq!(
        eval("steps['build'].outputs['digest']"),
        json!("sha256:abc")
    );
}

#[test]
fn an_index_by_number_reads_an_array_element() {
    assert_eq!(eval("matrix.targets[0]"), json!("amd64"));
    assert_eq!(eval("matrix.targets[1]"), json!("arm64"));
    assert_eq!(eval("fromJSON('[10, 20]')[1.0]"), json!(20));
}

#[test]
fn an_index_of_the_wrong_type_is_null() {
    assert_eq!(eval("matrix.targets[-1]"), json!(null));
    assert_eq!(eval("matrix.targets[0.5]"), json!(null));
    assert_eq!(eval("matrix.targets['0']"), json!(null));
    assert_eq!(eval("env[0]"), json!(null));
    assert_eq!(eval("env[null]"), json!(null));
    assert_eq!(eval("'text'[0]"), json!(null));
}

#[test]
fn an_index_by_expression_uses_its_value() {
    assert_eq!(eval("matrix.targets[matrix.i]"), json!("arm64"));
    assert_eq!(
        eval("steps[event.missing || 'build'].outcome"),
        json!("success")
    );
}

#[test]
fn results_of_calls_and_groups_can_be_indexed() {
    assert_eq!(eval("fromJSON(steps.build.outputs.json).k[1]"), json!(2));
    assert_eq!(eval("(event.missing || matrix).os"), json!("linux"));
}

#[test]
fn not_negates_truthiness() {
    assert_eq!(eval("!null"), json!(true));
    assert_eq!(eval("!0"), json!(true));
    assert_eq!(eval("!''"), json!(true));
    assert_eq!(eval("!false"), json!(true));
    assert_eq!(eval("!'a'"), json!(false));
    assert_eq!(eval("!fromJSON('[]')"), json!(false));
    assert_eq!(eval("!fromJSON('{}')"), json!(false));
    assert_eq!(eval("!!matrix.os"), json!(true));
}

#[test]
fn and_returns_the_first_falsy_operand_or_the_last() {
    assert_eq!(eval("env.EMPTY && 'x'"), json!(""));
    assert_eq!(eval("event.count && 'x'"), json!(0));
    assert_eq!(eval("env.NAME && matrix.n"), json!(3));
    assert_eq!(eval("'a' && 'b' && 'c'"), json!("c"));
}

#[test]
fn or_returns_the_first_truthy_operand() {
    assert_eq!(eval("env.EMPTY || matrix.os"), json!("linux"));
    assert_eq!(eval("event.missing || 'default'"), json!("default"));
    assert_eq!(eval("'a' || 'b'"), json!("a"));
}

#[test]
fn or_returns_the_last_operand_when_none_is_truthy() {
    assert_eq!(eval("null || 0"), json!(0));
    assert_eq!(eval("false || null || ''"), json!(""));
}

#[test]
fn and_and_or_do_not_evaluate_operands_after_the_deciding_one() {
    // `'a' < 1` fails when evaluated.
    assert_eq!(eval("true || 'a' < 1"), json!(true));
    assert_eq!(eval("false && 'a' < 1"), json!(false));
    assert!(eval_error("false || 'a' < 1").contains("cannot order"));
}

#[test]
fn equality_compares_types_strictly() {
    assert_eq!(eval("1 == '1'"), json!(false));
    assert_eq!(eval("null == false"), json!(false));
    assert_eq!(eval("0 == false"), json!(false));
    assert_eq!(eval("'' == null"), json!(false));
    assert_eq!(eval("'true' == true"), json!(false));
    assert_eq!(eval("null == null"), json!(true));
    assert_eq!(eval("steps.nope == null"), json!(true));
    assert_eq!(eval("1 != '1'"), json!(true));
}

#[test]
fn numbers_are_equal_by_value() {
    assert_eq!(eval("1 == 1.0"), json!(true));
    assert_eq!(eval("matrix.f == 1.5"), json!(true));
    assert_eq!(eval("matrix.n != 3.0"), json!(false));
    assert_eq!(eval("-0.0 == 0"), json!(true));
}

#[test]
fn strings_compare_case_sensitively() {
    assert_eq!(eval("'a' == 'a'"), json!(true));
    assert_eq!(eval("'a' == 'A'"), json!(false));
    assert_eq!(eval("'a' != 'A'"), json!(true));
}

#[test]
fn arrays_and_objects_compare_by_content() {
    assert_eq!(
        eval(r#"fromJSON('[1, {"a": 2}]') == fromJSON('[1.0, {"a": 2}]')"#),
        json!(true)
    );
    assert_eq!(
        eval(r#"steps.build.outputs.tags == fromJSON('["a", "b"]')"#),
        json!(true)
    );
    assert_eq!(
        eval(r#"steps.build.outputs.tags == fromJSON('["b", "a"]')"#),
        json!(false)
    );
    assert_eq!(
        eval(r#"fromJSON('{"a": 1, "b": 2}') == fromJSON('{"b": 2, "a": 1}')"#),
        json!(true)
    );
}

#[test]
fn ordering_compares_numbers_by_value() {
    assert_eq!(eval("1 < 2"), json!(true));
    assert_eq!(eval("2 <= 2"), json!(true));
    assert_eq!(eval("-1.5 > -2"), json!(true));
    assert_eq!(eval("3 >= 3.0"), json!(true));
    assert_eq!(eval("matrix.n > 3"), json!(false));
    assert_eq!(eval("matrix.f < 1"), json!(false));
}

#[test]
fn ordering_compares_strings_by_code_point() {
    assert_eq!(eval("'a' < 'b'"), json!(true));
    assert_eq!(eval("'B' < 'a'"), json!(true));
    assert_eq!(eval("'abc' >= 'abc'"), json!(true));
    assert_eq!(eval("'abc' > 'ab'"), json!(true));
    assert_eq!(eval("'v10' < 'v9'"), json!(true));
}

#[test]
fn not_binds_tighter_than_ordering() {
    // `(!1) < 2` orders a boolean, which fails; `!(1 < 2)` would be false.
    assert!(eval_error("!1 < 2").contains("cannot order a boolean and a number"));
    assert_eq!(eval("!(1 < 2)"), json!(false));
}

#[test]
fn ordering_binds_tighter_than_equality() {
    // `1 < (2 == 2) < 3` would order a boolean.
    assert_eq!(eval("1 < 2 == 2 < 3"), json!(true));
}

#[test]
fn equality_binds_tighter_than_and() {
    // `1 == (1 && 2) == 2` would be false.
    assert_eq!(eval("1 == 1 && 2 == 2"), json!(true));
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(eval("true || false && false"), json!(true));
    assert_eq!(eval("'a' || 'b' && 'c'"), json!("a"));
    assert_eq!(eval("false && true || 'x'"), json!("x"));
}

#[test]
fn parentheses_override_precedence() {
    assert_eq!(eval("(true || false) && false"), json!(false));
    assert_eq!(eval("!(1 == 2)"), json!(true));
}

#[test]
fn operators_of_one_level_group_from_the_left() {
    // `1 == (1 == true)` would be `1 == false`.
    assert_eq!(eval("1 == 1 == true"), json!(true));
    // `(1 < 2) < 3` orders a boolean.
    assert!(eval_error("1 < 2 < 3").contains("cannot order a boolean and a number"));
}

#[test]
fn a_realistic_condition_evaluates() {
    assert_eq!(
        eval(
            "steps.build.outcome == 'success' && (contains(event.labels, 'ci') || startsWith(event.title, 'Fix')) && !event.draft"
        ),
        json!(true)
    );
}
