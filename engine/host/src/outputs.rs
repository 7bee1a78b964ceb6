//! The host side of the `outputs` import: the step's outputs, checked as they are set.
//!
//! A rejected `set` returns the reason to the guest *and* is remembered: the step then ends
//! with [`StepFailure::Protocol`](crate::StepFailure::Protocol) even if the plugin ignores the
//! error, so a broken output can never reach a later step silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::bindings::outputs::Host;
use crate::state::StepState;

/// Most bytes (names plus JSON text) all outputs of one step may hold together.
pub const MAX_OUTPUTS_BYTES: usize = 1 << 20;
/// Longest output name.
const MAX_NAME_LEN: usize = 64;

/// The outputs set so far by one step.
pub(crate) struct Outputs {
    values: BTreeMap<String, (Value, usize)>,
    bytes: usize,
    /// Names the plugin declared in `describe`; empty means any name.
    declared: Arc<[String]>,
    /// The first rejected `set`, and how many more were rejected after it.
    rejected: Option<(String, usize)>,
}

impl Outputs {
    pub(crate) fn new(declared: Arc<[String]>) -> Self {
        Outputs {
            values: BTreeMap::new(),
            bytes: 0,
            declared,
            rejected: None,
        }
    }

    /// Set `name` to the JSON text `json`, or say why not.
    pub(crate) fn set(&mut self, name: &str, json: &str) -> Result<(), String> {
        let result = self.check_and_set(name, json);
        if let Err(reason) = &result {
            match &mut self.rejected {
                Some((_, more)) => *more += 1,
                None => self.rejected = Some((reason.clone(), 0)),
            }
        }
        result
    }

    fn check_and_set(&mut self, name: &str, json: &str) -> Result<(), String> {
        if !valid_name(name) {
            return Err(format!(
                "output name `{}` is invalid: use 1 to {MAX_NAME_LEN} letters, digits, `-` or `_`",
                shorten(name)
            ));
        }
        if !self.declared.is_empty() && !self.declared.iter().any(|d| d == name) {
            return Err(format!(
                "output `{name}` is not declared by the plugin (it declares {})",
                self.declared
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let size = name.len() + json.len();
        let replaced = self.values.get(name).map_or(0, |(_, size)| *size);
        let total = self.bytes - replaced + size;
        if total > MAX_OUTPUTS_BYTES {
            return Err(format!(
                "output `{name}` is too large: the outputs of a step are limited to {} MiB \
                 and would be {total} bytes",
                MAX_OUTPUTS_BYTES >> 20
            ));
        }
        let value: Value = serde_json::from_str(json)
            .map_err(|e| format!("output `{name}` is not valid JSON: {e}"))?;
        self.values.insert(name.to_owned(), (value, size));
        self.bytes = total;
        Ok(())
    }

    /// The contract violation to report, if any `set` was rejected.
    pub(crate) fn violation(&self) -> Option<String> {
        self.rejected.as_ref().map(|(first, more)| match more {
            0 => first.clone(),
            n => format!("{first} (and {n} more rejected outputs)"),
        })
    }

    pub(crate) fn into_values(self) -> BTreeMap<String, Value> {
        self.values.into_iter().map(|(k, (v, _))| (k, v)).collect()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A guest-chosen string cut to a size fit for a message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_NAME_LEN) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

impl Host for StepState {
    async fn set(&mut self, name: String, value: String) -> Result<(), String> {
        let result = self.outputs.set(&name, &value);
        if let Err(reason) = &result {
            tracing::debug!(%reason, "rejected an output");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any() -> Outputs {
        Outputs::new(Arc::from(Vec::new()))
    }

    #[test]
    fn valid_outputs_are_parsed_and_replaced() {
        let mut o = any();
        assert_eq!(o.set("a-b_1", "[1, 2]"), Ok(()));
        assert_eq!(o.set("a-b_1", "\"x\""), Ok(()));
        assert_eq!(o.violation(), None);
        assert_eq!(
            o.into_values(),
            BTreeMap::from([("a-b_1".to_owned(), Value::from("x"))])
        );
    }

    #[test]
    fn bad_names_and_bad_json_are_rejected_and_remembered() {
        let mut o = any();
        assert!(o.set("bad name!", "1").is_err());
        assert!(o.set("", "1").is_err());
        assert!(o.set(&"n".repeat(65), "1").is_err());
        assert!(o.set("ok", "{not json").is_err());
        let violation = o.violation().expect("a violation");
        assert!(violation.contains("`bad name!`"), "{violation}");
        assert!(violation.contains("3 more"), "{violation}");
        assert!(o.into_values().is_empty());
    }

    #[test]
    fn undeclared_outputs_are_rejected() {
        let mut o = Outputs::new(Arc::from(vec!["message".to_owned()]));
        assert_eq!(o.set("message", "1"), Ok(()));
        let err = o.set("other", "1").expect_err("undeclared");
        assert!(err.contains("`message`"), "{err}");
    }

    #[test]
    fn outputs_are_capped_in_total() {
        let mut o = any();
        let big = format!("\"{}\"", "x".repeat(600 << 10));
        assert_eq!(o.set("a", &big), Ok(()));
        assert_eq!(o.set("a", &big), Ok(()), "replacing does not count twice");
        assert!(o.set("b", &big).is_err());
    }
}
