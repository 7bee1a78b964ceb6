use super::parse;
use crate::Reference;

/// The paths of `source`'s references, with the text each one spans.
fn references(source: &str) -> Vec<(Vec<String>, String)> {
    parse(source)
        .references()
        .into_iter()
        .map(|Reference { path, start, end }| {
            let text = source.get(start..end).unwrap_or("<bad range>");
            (path, text.to_owned())
        })
        .collect()
}

fn r(path: &[&str], text: &str) -> (Vec<String>, String) {
    let path = path.iter().map(|p| (*p).to_owned()).collect();
    (path, text.to_owned())
}

#[test]
fn a_property_path_is_one_reference() {
    assert_eq!(
        references("steps.build.outputs.digest"),
        [r(
            &["steps", "build", "outputs", "digest"],
            "steps.build.outputs.digest"
        )]
    );
    assert_eq!(references("env"), [r(&["env"], "env")]);
}

#[test]
fn reference_offsets_are_byte_offsets_in_the_parsed_text() {
    let expr = parse("  'é' == env.A ");
    assert_eq!(
        expr.references(),
        [Reference {
            path: vec!["env".into(), "A".into()],
            start: 10,
            end: 15
        }]
    );
}

#[test]
fn string_and_number_indexes_are_part_of_the_path() {
    assert_eq!(references("a['b'].c"), [r(&["a", "b", "c"], "a['b'].c")]);
    assert_eq!(references("a[0].b"), [r(&["a", "0", "b"], "a[0].b")]);
}

#[test]
fn a_computed_index_ends_the_path_and_adds_its_own_references() {
    assert_eq!(
        references("a[matrix.i].c"),
        [r(&["a"], "a"), r(&["matrix", "i"], "matrix.i")]
    );
    assert_eq!(
        references("steps.x[matrix.i]['y']"),
        [
            r(&["steps", "x"], "steps.x"),
            r(&["matrix", "i"], "matrix.i")
        ]
    );
}

#[test]
fn references_are_listed_in_source_order() {
    assert_eq!(
        references("env.A == matrix.b || !steps.c.outputs.d"),
        [
            r(&["env", "A"], "env.A"),
            r(&["matrix", "b"], "matrix.b"),
            r(&["steps", "c", "outputs", "d"], "steps.c.outputs.d"),
        ]
    );
}

#[test]
fn function_names_are_not_references_but_their_arguments_are() {
    assert_eq!(
        references("contains(event.labels, env.X)"),
        [
            r(&["event", "labels"], "event.labels"),
            r(&["env", "X"], "env.X")
        ]
    );
}

#[test]
fn paths_into_call_results_are_not_references() {
    assert_eq!(
        references("fromJSON(env.J).a[matrix.i]"),
        [r(&["env", "J"], "env.J"), r(&["matrix", "i"], "matrix.i")]
    );
}

#[test]
fn literals_have_no_references() {
    assert_eq!(references("'a' == 1 || null || true"), []);
}

#[test]
fn a_grouped_context_is_still_a_reference() {
    assert_eq!(references("(env).A"), [r(&["env", "A"], "(env).A")]);
}

#[test]
fn uses_status_function_finds_status_calls_anywhere() {
    for source in [
        "always()",
        "steps.a.outcome == 'x' && always()",
        "!cancelled()",
        "format('{0}', failure())",
        "env[success() && 'a']",
    ] {
        assert!(parse(source).uses_status_function(), "{source}");
    }
}

#[test]
fn uses_status_function_is_false_without_status_calls() {
    for source in ["env.success", "contains(steps.always, 'failure()')", "true"] {
        assert!(!parse(source).uses_status_function(), "{source}");
    }
}
