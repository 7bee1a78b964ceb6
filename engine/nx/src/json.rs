//! JSON as Nx reads it (comments and trailing commas allowed) and Nx's JSON diff.

use serde_json::Value;

/// Parses JSON with `//` and `/* */` comments and trailing commas, like Nx's `readJsonFile`.
/// On failure returns `(line, column, message)` of serde_json's error (positions are kept,
/// because comments are blanked, not removed).
pub fn parse_lenient(text: &str) -> Result<Value, (usize, usize, String)> {
    let cleaned = strip_jsonc(text);
    serde_json::from_str(&cleaned).map_err(|e| {
        let msg = e.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        (e.line(), e.column(), msg)
    })
}

fn strip_jsonc(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let mut in_str = false;
    // Position of a comma that may turn out to be trailing.
    let mut last_comma: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                last_comma = None;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                let end = (i + 2).min(b.len());
                for (k, byte) in out.iter_mut().enumerate().take(end).skip(start) {
                    if b[k] != b'\n' {
                        *byte = b' ';
                    }
                }
                i = end;
                continue;
            }
            b',' => last_comma = Some(i),
            b'}' | b']' => {
                if let Some(k) = last_comma.take() {
                    out[k] = b' ';
                }
            }
            c if c.is_ascii_whitespace() => {}
            _ => last_comma = None,
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    Added,
    Deleted,
    Modified,
}

/// One change between two JSON values, like Nx's `jsonDiff`.
#[derive(Debug, Clone)]
pub struct JsonChange {
    pub kind: DiffKind,
    pub path: Vec<String>,
    pub lhs: Option<Value>,
    pub rhs: Option<Value>,
}

/// Every path whose value was deleted or modified (containers included), then every added path
/// (with its descendants).
pub fn diff(lhs: &Value, rhs: &Value) -> Vec<JsonChange> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    walk(lhs, rhs, &mut Vec::new(), &mut removed, &mut added);
    removed.extend(added);
    removed
}

fn children(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    }
}

fn walk(
    lhs: &Value,
    rhs: &Value,
    path: &mut Vec<String>,
    removed: &mut Vec<JsonChange>,
    added: &mut Vec<JsonChange>,
) {
    if lhs == rhs {
        return;
    }
    let containers_same_kind = matches!(
        (lhs, rhs),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    );
    if !path.is_empty() || !containers_same_kind {
        removed.push(JsonChange {
            kind: DiffKind::Modified,
            path: path.clone(),
            lhs: Some(lhs.clone()),
            rhs: Some(rhs.clone()),
        });
    }
    if !containers_same_kind {
        return;
    }
    let right = children(rhs);
    for (key, lv) in children(lhs) {
        path.push(key.clone());
        match right.iter().find(|(k, _)| *k == key) {
            Some((_, rv)) => walk(lv, rv, path, removed, added),
            None => emit_all(DiffKind::Deleted, lv, path, removed),
        }
        path.pop();
    }
    let left = children(lhs);
    for (key, rv) in right {
        if !left.iter().any(|(k, _)| *k == key) {
            path.push(key);
            emit_all(DiffKind::Added, rv, path, added);
            path.pop();
        }
    }
}

fn emit_all(kind: DiffKind, v: &Value, path: &mut Vec<String>, out: &mut Vec<JsonChange>) {
    let (lhs, rhs) = match kind {
        DiffKind::Deleted => (Some(v.clone()), None),
        _ => (None, Some(v.clone())),
    };
    out.push(JsonChange {
        kind,
        path: path.clone(),
        lhs,
        rhs,
    });
    for (k, child) in children(v) {
        path.push(k);
        emit_all(kind, child, path, out);
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let v =
            parse_lenient("{\n // c\n \"a\": [1, 2,], /* x */ \"b\": \"//\",\n}").expect("parse");
        assert_eq!(v["a"][1], 2);
        assert_eq!(v["b"], "//");
    }

    #[test]
    fn parse_errors_keep_line_and_column() {
        let err = parse_lenient("{\n  \"a\": 1\n  \"b\": 2\n}").expect_err("broken");
        assert_eq!((err.0, err.1), (3, 3));
    }
}
