//! Cache keys, hashed explicitly field by field.
//!
//! A key must stay the same across Rust versions, platforms, struct layouts and map orders,
//! so nothing here goes through `std::hash::Hash` (whose output is neither specified nor stable)
//! or through `serde_json`'s text (whose object order depends on how a map was built). Every
//! value is written in a canonical, type-tagged, length-prefixed form, so two different inputs
//! can never produce the same byte stream.
//!
//! A key is made of named parts. Each part is hashed on its own (sha256 of its canonical bytes),
//! and the key is sha256 over the domain, then each part's name and digest in the order they
//! were added. [`Key::parts`] keeps the part digests so a user can see which part changed
//! between two runs (`kiln run --explain-cache`).
//!
//! Changing the encoding of any part changes every key: bump the domain's version when you do,
//! and the golden-key test below will tell you that you did.

use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::Digest;

/// Something that knows how to feed itself into a [`Part`], field by field.
pub trait CacheKey {
    fn cache_key(&self, part: &mut Part);
}

/// The canonical writer of one part. Every method writes a type tag, then the value.
#[derive(Clone)]
pub struct Part {
    sha: Sha256,
}

impl Default for Part {
    fn default() -> Self {
        Part::new()
    }
}

impl Part {
    pub fn new() -> Part {
        Part { sha: Sha256::new() }
    }

    fn tag(&mut self, tag: u8) {
        self.sha.update([tag]);
    }

    fn len(&mut self, n: usize) {
        self.sha.update((n as u64).to_le_bytes());
    }

    /// A string, length-prefixed.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.tag(b's');
        self.len(s.len());
        self.sha.update(s.as_bytes());
        self
    }

    /// Raw bytes, length-prefixed.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.tag(b'b');
        self.len(b.len());
        self.sha.update(b);
        self
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.tag(b'u');
        self.sha.update(n.to_le_bytes());
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.tag(if b { b'T' } else { b'F' });
        self
    }

    /// A list: its length, then each item written by `item`.
    pub fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Part, &T)) -> &mut Self {
        self.tag(b'l');
        self.len(items.len());
        for i in items {
            item(self, i);
        }
        self
    }

    /// Anything that implements [`CacheKey`].
    pub fn value(&mut self, v: &impl CacheKey) -> &mut Self {
        v.cache_key(self);
        self
    }

    /// A JSON value in canonical form: object keys sorted by their bytes, numbers as their
    /// shortest text, every node type-tagged and length-prefixed.
    pub fn json(&mut self, v: &Value) -> &mut Self {
        match v {
            Value::Null => self.tag(b'n'),
            Value::Bool(true) => self.tag(b't'),
            Value::Bool(false) => self.tag(b'f'),
            Value::Number(n) => {
                self.tag(b'd');
                let text = n.to_string();
                self.len(text.len());
                self.sha.update(text.as_bytes());
            }
            Value::String(s) => {
                self.tag(b'j');
                self.len(s.len());
                self.sha.update(s.as_bytes());
            }
            Value::Array(items) => {
                self.tag(b'a');
                self.len(items.len());
                for i in items {
                    self.json(i);
                }
            }
            Value::Object(map) => {
                self.tag(b'o');
                self.len(map.len());
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                for (k, v) in entries {
                    self.len(k.len());
                    self.sha.update(k.as_bytes());
                    self.json(v);
                }
            }
        }
        self
    }

    fn finish(self) -> Digest {
        Digest::from_sha256(self.sha.finalize().into())
    }
}

/// Builds a [`Key`] from named parts.
pub struct KeyBuilder {
    domain: String,
    parts: Vec<(String, Digest)>,
}

impl KeyBuilder {
    /// `domain` names what the key is for and its version, e.g. `kiln-step-v1`.
    pub fn new(domain: &str) -> KeyBuilder {
        KeyBuilder {
            domain: domain.to_owned(),
            parts: Vec::new(),
        }
    }

    /// Add part `name`, written by `write`.
    pub fn part(&mut self, name: &str, write: impl FnOnce(&mut Part)) -> &mut Self {
        let mut p = Part::new();
        write(&mut p);
        self.parts.push((name.to_owned(), p.finish()));
        self
    }

    pub fn finish(self) -> Key {
        let mut sha = Sha256::new();
        sha.update((self.domain.len() as u64).to_le_bytes());
        sha.update(self.domain.as_bytes());
        sha.update((self.parts.len() as u64).to_le_bytes());
        for (name, digest) in &self.parts {
            sha.update((name.len() as u64).to_le_bytes());
            sha.update(name.as_bytes());
            sha.update(digest.bytes());
        }
        Key {
            digest: Digest::from_sha256(sha.finalize().into()),
            parts: self.parts,
        }
    }
}

/// A finished key and the digests of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub digest: Digest,
    /// `(name, digest)` in the order they were added.
    pub parts: Vec<(String, Digest)>,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.digest.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Key {
        let mut k = KeyBuilder::new("kiln-test-v1");
        k.part("plugin", |p| {
            p.str("sha256:0123");
        });
        k.part("config", |p| {
            p.json(&json!({ "b": [1, 2.5, "x"], "a": null, "c": { "z": true, "y": false } }));
        });
        k.part("files", |p| {
            p.list(&[("a.txt", 3u64), ("b/c", 0)], |p, (name, n)| {
                p.str(name).u64(*n);
            });
        });
        k.finish()
    }

    /// Catches accidental changes to the encoding: every existing cache entry would be missed
    /// (or worse, if the change made two inputs collide). Bump the domain version instead.
    #[test]
    fn the_key_of_a_fixed_input_is_the_golden_key() {
        assert_eq!(
            sample().digest.to_string(),
            "sha256:12810061b7f1fc15fafb4aa2ba3df2a6ff395c47170152e10e4a5a0eb7ed9e87"
        );
    }

    #[test]
    fn object_key_order_does_not_change_the_key() {
        let mut a = Part::new();
        a.json(&json!({ "x": 1, "y": { "p": 1, "q": 2 } }));
        let mut b = Part::new();
        b.json(&serde_json::from_str(r#"{ "y": { "q": 2, "p": 1 }, "x": 1 }"#).unwrap_or_default());
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn values_of_different_types_or_boundaries_do_not_collide() {
        let digest = |v: Value| {
            let mut p = Part::new();
            p.json(&v);
            p.finish()
        };
        assert_ne!(digest(json!("1")), digest(json!(1)));
        assert_ne!(digest(json!(["ab", "c"])), digest(json!(["a", "bc"])));
        assert_ne!(digest(json!({ "a": "b" })), digest(json!(["a", "b"])));
        assert_ne!(digest(json!(null)), digest(json!(false)));
        let mut a = Part::new();
        a.str("ab").str("c");
        let mut b = Part::new();
        b.str("a").str("bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn part_names_and_order_are_part_of_the_key() {
        let key = |names: &[&str]| {
            let mut k = KeyBuilder::new("d");
            for n in names {
                k.part(n, |p| {
                    p.str("v");
                });
            }
            k.finish().digest
        };
        assert_ne!(key(&["a", "b"]), key(&["b", "a"]));
        assert_ne!(key(&["a"]), key(&["b"]));
        assert_eq!(key(&["a", "b"]), key(&["a", "b"]));
        assert_eq!(sample().parts.len(), 3);
    }
}
