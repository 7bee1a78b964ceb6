//! Secret masking: every secret value is replaced by `***` in log lines, errors and outputs.

use aho_corasick::{AhoCorasick, MatchKind};

/// Replaces secret values in text. Built once per run from the values of every secret the run
/// can read.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
}

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

impl Masker {
    /// A masker for these secret values. Empty values are ignored; the longest match wins, so a
    /// secret that contains another is masked whole.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<&str> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        patterns.sort_unstable();
        patterns.dedup();
        if patterns.is_empty() {
            return Masker { matcher: None };
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Masker { matcher }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        match &self.matcher {
            None => text.to_owned(),
            Some(m) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str(MASK);
                    true
                });
                out
            }
        }
    }

    /// Mask every string in a JSON value (keys included).
    pub fn mask_json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.mask(k), self.mask_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_wherever_they_appear() {
        let m = Masker::new(["hunter2", "s3cr3t"]);
        assert_eq!(
            m.mask("token=hunter2 and s3cr3ts hunter2"),
            "token=*** and ***s ***"
        );
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let m = Masker::new(["abc", "abcdef"]);
        assert_eq!(m.mask("xabcdefx abc"), "x***x ***");
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        let m = Masker::new([""]);
        assert!(m.is_empty());
        assert_eq!(m.mask("text"), "text");
    }

    #[test]
    fn json_strings_and_keys_are_masked() {
        let m = Masker::new(["pw"]);
        let v = serde_json::json!({"a": ["pw!", 1], "pw": true});
        assert_eq!(
            m.mask_json(&v),
            serde_json::json!({"a": ["***!", 1], "***": true})
        );
    }
}
