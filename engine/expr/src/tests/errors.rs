use super::{eval_error, syntax_error};

#[test]
fn an_unknown_function_is_a_syntax_error_listing_the_known_ones() {
    let error = syntax_error("a == nope(1)");
    assert_eq!(error.offset, 5);
    assert_eq!(
        error.message,
        "unknown function `nope`; known functions are `contains`, `startsWith`, `endsWith`, \
         `format`, `join`, `toJSON`, `fromJSON`, `length`, `success`, `failure`, `always`, \
         `cancelled`"
    );
}

#[test]
fn function_names_are_case_sensitive_and_the_right_case_is_suggested() {
    let error = syntax_error("tojson(env)");
    assert_eq!(error.offset, 0);
    assert!(
        error.message.starts_with(
            "unknown function `tojson` (function names are case-sensitive: did you mean `toJSON`?)"
        ),
        "{error}"
    );
}

#[test]
fn a_wrong_number_of_arguments_is_a_syntax_error_at_the_function_name() {
    let error = syntax_error("true && contains('a')");
    assert_eq!(error.offset, 8);
    assert_eq!(
        error.message,
        "`contains` takes 2 arguments, got 1; call it as `contains(haystack, needle)`"
    );
    assert_eq!(syntax_error("always(1)").offset, 0);
    assert_eq!(syntax_error("format()").offset, 0);
    assert_eq!(syntax_error("join(a, b, c)").offset, 0);
}

#[test]
fn a_function_name_without_parentheses_is_a_syntax_error() {
    let error = syntax_error("always");
    assert_eq!(
        error.message,
        "`always` is a function; call it as `always()`"
    );
}

#[test]
fn a_missing_property_name_says_what_came_before() {
    let error = syntax_error("steps.a.)");
    assert_eq!(error.offset, 8);
    assert_eq!(
        error.message,
        "unexpected `)` after `steps.a.`; expected a property name"
    );
}

#[test]
fn an_expression_that_ends_early_says_what_is_missing() {
    let error = syntax_error("steps.a.");
    assert_eq!(error.offset, 8);
    assert_eq!(
        error.message,
        "unexpected end of expression after `steps.a.`; expected a property name"
    );
    let error = syntax_error("a ==");
    assert_eq!(error.offset, 4);
    assert_eq!(
        error.message,
        "unexpected end of expression after `a ==`; expected a value"
    );
}

#[test]
fn a_number_after_a_dot_suggests_an_index() {
    let error = syntax_error("matrix.targets.0");
    assert_eq!(error.offset, 15);
    assert!(
        error
            .message
            .ends_with("expected a property name (index an array with `[0]`)")
    );
}

#[test]
fn an_unclosed_bracket_expects_a_closing_bracket() {
    let error = syntax_error("env['a' 'b']");
    assert_eq!(error.offset, 8);
    assert_eq!(
        error.message,
        "unexpected `'b'` after `env['a'`; expected `]`"
    );
}

#[test]
fn an_unclosed_parenthesis_expects_a_closing_parenthesis() {
    let error = syntax_error("(a || b");
    assert_eq!(error.offset, 7);
    assert_eq!(
        error.message,
        "unexpected end of expression after `(a || b`; expected `)`"
    );
}

#[test]
fn a_missing_comma_between_arguments_expects_a_comma_or_parenthesis() {
    let error = syntax_error("contains(a b)");
    assert_eq!(error.offset, 11);
    assert_eq!(
        error.message,
        "unexpected `b` after `contains(a`; expected `,` or `)`"
    );
}

#[test]
fn a_trailing_comma_in_a_call_expects_a_value() {
    let error = syntax_error("contains(a, b,)");
    assert_eq!(error.offset, 14);
    assert_eq!(
        error.message,
        "unexpected `)` after `contains(a, b,`; expected a value"
    );
}

#[test]
fn two_values_in_a_row_expect_an_operator() {
    let error = syntax_error("a b");
    assert_eq!(error.offset, 2);
    assert_eq!(
        error.message,
        "unexpected `b` after `a`; expected an operator (`==`, `!=`, `<`, `&&`, `||`, ...) or the end of the expression"
    );
}

#[test]
fn an_operator_at_the_start_says_so() {
    let error = syntax_error("&& a");
    assert_eq!(error.offset, 0);
    assert_eq!(error.message, "unexpected `&&`; expected a value");
}

#[test]
fn a_long_context_in_a_message_is_shortened_to_its_end() {
    let source = format!("{} == )", "a".repeat(100));
    let message = syntax_error(&source).message;
    assert!(
        message.starts_with("unexpected `)` after `…aaaa"),
        "{message}"
    );
    assert!(message.len() < 120, "{message}");
}

#[test]
fn an_empty_expression_is_a_syntax_error() {
    assert!(syntax_error("").message.starts_with("empty expression"));
    assert!(
        syntax_error("  \n ")
            .message
            .starts_with("empty expression")
    );
}

#[test]
fn an_unterminated_string_is_reported_at_its_quote() {
    let error = syntax_error("a == 'abc");
    assert_eq!(error.offset, 5);
    assert!(
        error
            .message
            .starts_with("unterminated string; close it with `'`")
    );
}

#[test]
fn double_quotes_suggest_single_quotes() {
    let error = syntax_error(r#"a == "x""#);
    assert_eq!(error.offset, 5);
    assert_eq!(
        error.message,
        "unexpected character `\"`; strings use single quotes, like `'text'`"
    );
}

#[test]
fn operators_from_other_languages_suggest_the_right_one() {
    assert!(
        syntax_error("a & b")
            .message
            .ends_with("use `&&` for \"and\"")
    );
    assert!(
        syntax_error("a | b")
            .message
            .ends_with("use `||` for \"or\"")
    );
    assert!(syntax_error("a - b").message.contains("no subtraction"));
}

#[test]
fn syntax_error_offsets_are_byte_offsets() {
    let error = syntax_error("'é' == )");
    assert_eq!(error.offset, 8);
}

#[test]
fn a_number_too_large_for_json_is_a_syntax_error() {
    let error = syntax_error(&"9".repeat(400));
    assert_eq!(error.offset, 0);
    assert!(error.message.ends_with("is too large"));
}

#[test]
fn ordering_values_of_other_types_names_both_types() {
    assert_eq!(
        eval_error("matrix.os < 3"),
        "cannot order a string and a number; `<`, `<=`, `>` and `>=` need two numbers or two strings (in `matrix.os < 3`)"
    );
    assert!(eval_error("null >= 1").starts_with("cannot order `null` and a number"));
    assert!(eval_error("matrix.targets > env").starts_with("cannot order an array and an object"));
}

#[test]
fn evaluation_errors_quote_the_failing_part_only() {
    assert_eq!(
        eval_error("env.NAME == 'kiln' && length(true) > 0"),
        "`length` needs a string, an array or an object, got a boolean (in `length(true)`)"
    );
}
