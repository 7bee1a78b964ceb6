//! Rules on JSON values shared by operators and functions: type names, equality, ordering.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// The name used in messages: `null`, `boolean`, `number`, `string`, `array` or `object`.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `==`: same type and same value; numbers by value (`1 == 1.0`); strings case-sensitively;
/// arrays element by element; objects by the same keys with equal values (key order ignored).
pub(crate) fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| strict_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| strict_eq(x, y)))
        }
        _ => false,
    }
}

/// Numbers by value, exactly for integers (no rounding through `f64` when both are integers).
pub(crate) fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let integer = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `<`, `<=`, `>`, `>=`: two numbers by value or two strings by Unicode code point; anything
/// else is an error naming both types.
pub(crate) fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    ordering.ok_or_else(|| {
        format!(
            "cannot order {} and {}; `<`, `<=`, `>` and `>=` need two numbers or two strings",
            with_article(type_name(a)),
            with_article(type_name(b)),
        )
    })
}

/// `an array`, `a string`, `null`.
pub(crate) fn with_article(type_name: &str) -> String {
    match type_name {
        "null" => "`null`".to_owned(),
        "array" | "object" => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or_default()),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn integers_compare_exactly_beyond_float_precision() {
        let big = Number::from(9_007_199_254_740_993_i64);
        let near = Number::from(9_007_199_254_740_992_i64);
        assert_eq!(compare_numbers(&big, &near), Some(Ordering::Greater));
    }

    #[test]
    fn objects_are_equal_whatever_the_key_order() {
        assert!(strict_eq(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1.0})
        ));
        assert!(!strict_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn shorten_cuts_on_a_character_boundary() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ab", 2), "ab");
    }
}
