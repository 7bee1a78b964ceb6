use serde_json::json;

use super::scope;
use crate::{Part, Scope, SyntaxError, Template, eval_json, to_display_string};

#[track_caller]
fn template(text: &str) -> Template {
    Template::parse(text).unwrap_or_else(|e| panic!("`{text}` should parse: {e:?}"))
}

#[track_caller]
fn render(text: &str) -> serde_json::Value {
    template(text)
        .eval(&scope())
        .unwrap_or_else(|e| panic!("`{text}` should evaluate: {e}"))
}

#[track_caller]
fn template_error(text: &str) -> SyntaxError {
    match Template::parse(text) {
        Ok(t) => panic!("`{text}` should not parse, got {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_template_without_expressions_is_literal() {
    let t = template("plain } text {{ }}");
    assert!(t.is_literal());
    assert_eq!(t.parts(), [Part::Literal("plain } text {{ }}".into())]);
    assert_eq!(t.eval(&Scope::default()), Ok(json!("plain } text {{ }}")));
    assert!(template("").is_literal());
    assert_eq!(template("").eval(&Scope::default()), Ok(json!("")));
}

#[test]
fn a_template_splits_into_literals_and_expressions_at_their_offsets() {
    let t = template("a-${{ env.NAME }}-b${{1}}");
    assert!(!t.is_literal());
    let [
        Part::Literal(a),
        Part::Expr(e1, 5),
        Part::Literal(b),
        Part::Expr(e2, 22),
    ] = t.parts()
    else {
        panic!("unexpected parts {:?}", t.parts());
    };
    assert_eq!((a.as_str(), b.as_str()), ("a-", "-b"));
    assert_eq!((e1.source(), e2.source()), (" env.NAME ", "1"));
    assert_eq!(e1.to_string(), "env.NAME");
}

#[test]
fn a_single_expression_keeps_its_json_type() {
    assert_eq!(render("${{ matrix.targets }}"), json!(["amd64", "arm64"]));
    assert_eq!(render("${{ matrix.n }}"), json!(3));
    assert_eq!(render("${{ event.missing }}"), json!(null));
    assert_eq!(
        render("${{ fromJSON('{\"a\": true}') }}"),
        json!({"a": true})
    );
}

#[test]
fn text_around_a_single_expression_makes_a_string() {
    assert_eq!(render(" ${{ matrix.n }}"), json!(" 3"));
    assert_eq!(render("${{ matrix.n }}\n"), json!("3\n"));
}

#[test]
fn interpolation_writes_values_as_display_strings() {
    assert_eq!(
        render("${{ null }}|${{ true }}|${{ matrix.targets }}|${{ matrix.f }}|${{ env.NAME }}"),
        json!(r#"|true|["amd64","arm64"]|1.5|kiln"#)
    );
    assert_eq!(to_display_string(&json!({"a": 1})), r#"{"a":1}"#);
}

#[test]
fn a_closing_brace_pair_inside_a_string_does_not_end_the_expression() {
    assert_eq!(render("${{ format('{{x}}') }}"), json!("{x}"));
    assert_eq!(render("<${{ 'a}}b' }}>"), json!("<a}}b>"));
}

#[test]
fn an_escaped_quote_inside_a_string_keeps_the_string_open() {
    assert_eq!(render("${{ 'it''s }}' }}"), json!("it's }}"));
}

#[test]
fn an_unclosed_expression_is_reported_at_its_opening() {
    let error = template_error("x ${{ env.A");
    assert_eq!(error.offset, 2);
    assert_eq!(
        error.message,
        "unclosed `${{`; close the expression with `}}`"
    );
    assert_eq!(template_error("${{ a }} ${{ b }").offset, 9);
}

#[test]
fn an_unclosed_string_in_a_template_says_the_string_hides_the_end() {
    let error = template_error("tag ${{ 'abc }}");
    assert_eq!(error.offset, 4);
    assert_eq!(
        error.message,
        "unclosed `${{`: the string `'abc }}` never ends, so it hides the `}}`; end the string \
         with `'` (write `''` for a quote inside it)"
    );
}

#[test]
fn an_empty_expression_in_a_template_is_a_syntax_error() {
    let error = template_error("a ${{  }}");
    assert_eq!(error.offset, 2);
    assert!(error.message.starts_with("empty expression `${{ }}`"));
    assert_eq!(template_error("${{}}").offset, 0);
}

#[test]
fn syntax_error_offsets_are_offsets_in_the_whole_template() {
    let text = "image-${{ env.A }}-${{ steps.a.) }}";
    let error = template_error(text);
    assert_eq!(text.get(error.offset..), Some(") }}"));
    assert_eq!(
        error.message,
        "unexpected `)` after `steps.a.`; expected a property name"
    );

    let text = "é ${{ nope() }}";
    let error = template_error(text);
    assert_eq!(text.get(error.offset..), Some("nope() }}"));
}

#[test]
fn template_references_are_offsets_in_the_whole_template() {
    let text = "x ${{ env.A }} ${{ matrix.b[steps.c.outputs.i] }}";
    let found: Vec<(Vec<String>, &str)> = template(text)
        .references()
        .into_iter()
        .map(|r| (r.path, text.get(r.start..r.end).unwrap_or("<bad range>")))
        .collect();
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        found,
        [
            (path(&["env", "A"]), "env.A"),
            (path(&["matrix", "b"]), "matrix.b"),
            (path(&["steps", "c", "outputs", "i"]), "steps.c.outputs.i"),
        ]
    );
}

#[test]
fn a_template_uses_a_status_function_if_any_expression_does() {
    assert!(template("a ${{ env.A }} ${{ failure() }}").uses_status_function());
    assert!(!template("a ${{ env.A }}").uses_status_function());
}

#[test]
fn evaluation_errors_in_a_template_are_returned() {
    let error = template("x ${{ 'a' < 1 }}")
        .eval(&scope())
        .expect_err("ordering a string and a number fails");
    assert!(error.0.starts_with("cannot order a string and a number"));
}

#[test]
fn eval_json_resolves_strings_deeply_and_leaves_keys_and_other_values_alone() {
    let config = json!({
        "image": "app:${{ steps.build.outputs.digest }}",
        "platforms": "${{ matrix.targets }}",
        "${{ env.NAME }}": ["${{ matrix.n }}", 1, true, null, "plain"],
        "nested": { "when": "${{ success() }}" }
    });
    assert_eq!(
        eval_json(&config, &scope()),
        Ok(json!({
            "image": "app:sha256:abc",
            "platforms": ["amd64", "arm64"],
            "${{ env.NAME }}": [3, 1, true, null, "plain"],
            "nested": { "when": true }
        }))
    );
}

#[test]
fn eval_json_reports_syntax_errors_as_eval_errors() {
    let error = eval_json(&json!({"a": ["${{ env. }}"]}), &scope()).expect_err("bad template");
    assert_eq!(
        error.0,
        "unexpected end of expression after `env.`; expected a property name (at byte 9 of `${{ env. }}`)"
    );
}
