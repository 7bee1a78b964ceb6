//! The built-in functions: names, arities and what they compute.

use serde_json::Value;

use crate::value::{shorten, strict_eq, type_name, with_article};
use crate::{Status, to_display_string};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    Length,
    Success,
    Failure,
    Always,
    Cancelled,
}

impl Function {
    pub const ALL: [Function; 12] = [
        Function::Contains,
        Function::StartsWith,
        Function::EndsWith,
        Function::Format,
        Function::Join,
        Function::ToJson,
        Function::FromJson,
        Function::Length,
        Function::Success,
        Function::Failure,
        Function::Always,
        Function::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Contains => "contains",
            Function::StartsWith => "startsWith",
            Function::EndsWith => "endsWith",
            Function::Format => "format",
            Function::Join => "join",
            Function::ToJson => "toJSON",
            Function::FromJson => "fromJSON",
            Function::Length => "length",
            Function::Success => "success",
            Function::Failure => "failure",
            Function::Always => "always",
            Function::Cancelled => "cancelled",
        }
    }

    /// How the function is called, for messages.
    pub fn signature(self) -> &'static str {
        match self {
            Function::Contains => "contains(haystack, needle)",
            Function::StartsWith => "startsWith(string, prefix)",
            Function::EndsWith => "endsWith(string, suffix)",
            Function::Format => "format('{0} {1}', value0, value1, ...)",
            Function::Join => "join(array, separator = ',')",
            Function::ToJson => "toJSON(value)",
            Function::FromJson => "fromJSON(text)",
            Function::Length => "length(value)",
            Function::Success => "success()",
            Function::Failure => "failure()",
            Function::Always => "always()",
            Function::Cancelled => "cancelled()",
        }
    }

    /// Names are case-sensitive.
    pub fn lookup(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The message for a name that is not a function.
    pub fn unknown_message(name: &str) -> String {
        let known = Function::ALL
            .iter()
            .map(|f| format!("`{}`", f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = Function::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .map(|f| {
                format!(
                    " (function names are case-sensitive: did you mean `{}`?)",
                    f.name()
                )
            })
            .unwrap_or_default();
        format!("unknown function `{name}`{hint}; known functions are {known}")
    }

    /// The least and the most arguments (`None`: no upper bound).
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, Some(2)),
            Function::Format => (1, None),
            Function::Join => (1, Some(2)),
            Function::ToJson | Function::FromJson | Function::Length => (1, Some(1)),
            Function::Success | Function::Failure | Function::Always | Function::Cancelled => {
                (0, Some(0))
            }
        }
    }

    /// `None` if `count` arguments are fine, else the message.
    pub fn check_arity(self, count: usize) -> Option<String> {
        let (min, max) = self.arity();
        if count >= min && max.is_none_or(|max| count <= max) {
            return None;
        }
        let expected = match (min, max) {
            (0, Some(0)) => "no arguments".to_owned(),
            (1, Some(1)) => "1 argument".to_owned(),
            (min, Some(max)) if min == max => format!("{min} arguments"),
            (min, Some(max)) => format!("{min} or {max} arguments"),
            (1, None) => "at least 1 argument".to_owned(),
            (min, None) => format!("at least {min} arguments"),
        };
        Some(format!(
            "`{}` takes {expected}, got {count}; call it as `{}`",
            self.name(),
            self.signature()
        ))
    }

    /// `success()`, `failure()`, `always()`, `cancelled()`.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Failure | Function::Always | Function::Cancelled
        )
    }

    /// Apply the function; the error message names the function. The number of arguments was
    /// checked when parsing.
    pub fn call(self, args: &[&Value], status: Status) -> Result<Value, String> {
        let arg = |i: usize| args.get(i).copied().unwrap_or(&Value::Null);
        match self {
            Function::Contains => contains(arg(0), arg(1)).map(Value::Bool),
            Function::StartsWith => affix(self, arg(0), arg(1), |s, p| s.starts_with(p)),
            Function::EndsWith => affix(self, arg(0), arg(1), |s, p| s.ends_with(p)),
            Function::Format => {
                let Value::String(template) = arg(0) else {
                    return Err(format!(
                        "`format` needs a string as its first argument, got {}",
                        with_article(type_name(arg(0)))
                    ));
                };
                let values = args.get(1..).unwrap_or_default();
                let values: Vec<String> = values.iter().map(|v| to_display_string(v)).collect();
                format_string(template, &values).map(Value::String)
            }
            Function::Join => join(arg(0), args.get(1).copied()),
            Function::ToJson => serde_json::to_string_pretty(arg(0))
                .map(Value::String)
                .map_err(|e| format!("`toJSON` failed: {e}")),
            Function::FromJson => match arg(0) {
                Value::String(text) => serde_json::from_str(text).map_err(|e| {
                    format!(
                        "`fromJSON` got text that is not JSON (`{}`): {e}",
                        shorten(text, 40)
                    )
                }),
                other => Err(format!(
                    "`fromJSON` needs a string, got {}",
                    with_article(type_name(other))
                )),
            },
            Function::Length => match arg(0) {
                Value::Null => Ok(Value::from(0)),
                Value::String(s) => Ok(Value::from(s.chars().count())),
                Value::Array(items) => Ok(Value::from(items.len())),
                Value::Object(map) => Ok(Value::from(map.len())),
                other => Err(format!(
                    "`length` needs a string, an array or an object, got {}",
                    with_article(type_name(other))
                )),
            },
            Function::Success => Ok(Value::Bool(!status.failed && !status.cancelled)),
            Function::Failure => Ok(Value::Bool(status.failed)),
            Function::Always => Ok(Value::Bool(true)),
            Function::Cancelled => Ok(Value::Bool(status.cancelled)),
        }
    }
}

fn contains(haystack: &Value, needle: &Value) -> Result<bool, String> {
    match (haystack, needle) {
        (Value::Null, _) => Ok(false),
        (Value::Array(items), needle) => Ok(items.iter().any(|item| strict_eq(item, needle))),
        (Value::String(text), Value::String(needle)) => Ok(text.contains(needle.as_str())),
        (Value::String(text), Value::Number(_) | Value::Bool(_)) => {
            Ok(text.contains(&to_display_string(needle)))
        }
        (Value::String(_), other) => Err(format!(
            "`contains` cannot search a string for {}; the needle must be a string, a number or a boolean",
            with_article(type_name(other))
        )),
        (other, _) => Err(format!(
            "`contains` searches a string or an array, got {}",
            with_article(type_name(other))
        )),
    }
}

fn affix(
    function: Function,
    text: &Value,
    affix: &Value,
    test: fn(&str, &str) -> bool,
) -> Result<Value, String> {
    match (text, affix) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Bool(false)),
        (Value::String(text), Value::String(affix)) => Ok(Value::Bool(test(text, affix))),
        (text, affix) => Err(format!(
            "`{}` needs two strings, got {} and {}",
            function.name(),
            with_article(type_name(text)),
            with_article(type_name(affix))
        )),
    }
}

fn join(items: &Value, separator: Option<&Value>) -> Result<Value, String> {
    let separator = match separator {
        None => ",",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(format!(
                "`join` needs a string separator, got {}",
                with_article(type_name(other))
            ));
        }
    };
    match items {
        Value::Null => Ok(Value::String(String::new())),
        Value::String(s) => Ok(Value::String(s.clone())),
        Value::Array(items) => Ok(Value::String(
            items
                .iter()
                .map(to_display_string)
                .collect::<Vec<_>>()
                .join(separator),
        )),
        other => Err(format!(
            "`join` needs an array, got {}",
            with_article(type_name(other))
        )),
    }
}

/// Replace `{0}`, `{1}`, ... with `values`; `{{` and `}}` are literal braces.
pub(crate) fn format_string(template: &str, values: &[String]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(brace) = rest.find(['{', '}']) {
        out.push_str(rest.get(..brace).unwrap_or_default());
        let tail = rest.get(brace..).unwrap_or_default();
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(
                "`format` found a `}` that closes nothing; write `}}` for a literal `}`".to_owned(),
            );
        } else {
            let Some(close) = tail.find('}') else {
                return Err(format!(
                    "`format` found a `{{` that is never closed in `{}`; write `{{{{` for a literal `{{`",
                    shorten(tail, 20)
                ));
            };
            let placeholder = tail.get(..=close).unwrap_or_default();
            let digits = tail.get(1..close).unwrap_or_default();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`format` placeholder `{}` is not a number; use `{{0}}`, `{{1}}`, ..., or `{{{{` for a literal `{{`",
                    shorten(placeholder, 20)
                ));
            }
            let value = digits
                .parse::<usize>()
                .ok()
                .and_then(|i| values.get(i))
                .ok_or_else(|| {
                    format!(
                        "`format` placeholder `{placeholder}` has no value: {} given after the format string",
                        match values.len() {
                            0 => "none is".to_owned(),
                            1 => "only 1 is".to_owned(),
                            n => format!("only {n} are"),
                        }
                    )
                })?;
            out.push_str(value);
            rest = tail.get(close + 1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn format_replaces_placeholders_and_unescapes_braces() {
        assert_eq!(
            format_string("{{{0}}}-{1}-{0}", &values(&["a", "b"])),
            Ok("{a}-b-a".to_owned())
        );
    }

    #[test]
    fn format_rejects_a_placeholder_without_a_value() {
        let error = format_string("{0} {2}", &values(&["a", "b"])).expect_err("no `{2}`");
        assert_eq!(
            error,
            "`format` placeholder `{2}` has no value: only 2 are given after the format string"
        );
    }

    #[test]
    fn format_rejects_unbalanced_braces() {
        assert!(format_string("{0", &values(&["a"])).is_err());
        assert!(format_string("a}", &[]).is_err());
        assert!(format_string("{x}", &[]).is_err());
        assert!(format_string("{}", &[]).is_err());
    }

    #[test]
    fn every_function_name_looks_up_to_itself() {
        for function in Function::ALL {
            assert_eq!(Function::lookup(function.name()), Some(function));
        }
        assert_eq!(Function::lookup("tojson"), None);
    }

    #[test]
    fn arity_messages_say_how_to_call_the_function() {
        assert_eq!(
            Function::Join.check_arity(3).as_deref(),
            Some("`join` takes 1 or 2 arguments, got 3; call it as `join(array, separator = ',')`")
        );
        assert_eq!(Function::Format.check_arity(7), None);
        assert_eq!(
            Function::Always.check_arity(1).as_deref(),
            Some("`always` takes no arguments, got 1; call it as `always()`")
        );
    }
}
