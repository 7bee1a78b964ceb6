//! Finds the module specifiers a JS/TS file imports: `import … from 'x'`, `import 'x'`,
//! `export … from 'x'`, `import('x')` and `require('x')` — skipping comments, strings, template
//! literals and regular expressions so that text inside them is never taken for an import.

/// File extensions whose sources Nx analyses for imports.
pub const SOURCE_EXTENSIONS: &[&str] = &["ts", "tsx", "js", "jsx", "mjs", "cjs", "mts", "cts"];

pub fn is_source_file(path: &str) -> bool {
    match path.rsplit_once('.') {
        Some((stem, ext)) => !stem.ends_with(".d") && SOURCE_EXTENSIONS.contains(&ext),
        None => false,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Prev {
    /// Start, an operator or punctuation after which a `/` starts a regex.
    Operator,
    /// An identifier, number, `)` or `]`: a following `/` divides.
    Value,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    None,
    /// After `import`/`export`: waiting for `from '…'` (or `import '…'`).
    ImportExport,
    /// After `from` within an import/export.
    From,
    /// After `import` or `require`: expecting `(`.
    Call,
    /// After `import(` / `require(`: expecting a string.
    CallArg,
}

/// Returns the specifiers in source order (duplicates possible).
pub fn find_imports(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev = Prev::Operator;
    let mut state = State::None;
    let mut after_dot = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'\'' | b'"' => {
                let start = i + 1;
                i = skip_string(b, i);
                let text = &src[start..i.saturating_sub(1).max(start)];
                match state {
                    State::From | State::CallArg => out.push(text.to_string()),
                    State::ImportExport if is_bare_import_start(src, start) => {
                        out.push(text.to_string())
                    }
                    _ => {}
                }
                state = if state == State::ImportExport && !is_bare_import_start(src, start) {
                    State::ImportExport
                } else {
                    State::None
                };
                prev = Prev::Value;
                after_dot = false;
            }
            b'`' => {
                i = skip_template(b, i);
                prev = Prev::Value;
                state = State::None;
                after_dot = false;
            }
            b'/' => {
                if prev == Prev::Operator {
                    i = skip_regex(b, i);
                    prev = Prev::Value;
                } else {
                    i += 1;
                    prev = Prev::Operator;
                }
                if state != State::ImportExport {
                    state = State::None;
                }
                after_dot = false;
            }
            c if c == b'_' || c == b'$' || c.is_ascii_alphanumeric() || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i] == b'_'
                        || b[i] == b'$'
                        || b[i].is_ascii_alphanumeric()
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = &src[start..i];
                let keyword_ok = !after_dot;
                state = match (word, state) {
                    ("import", _) if keyword_ok => {
                        // `import(` is a dynamic import; `import x from`, `import '…'` static.
                        match next_non_space(b, i) {
                            Some(b'(') => State::Call,
                            Some(b'.') => State::None,
                            _ => State::ImportExport,
                        }
                    }
                    ("export", _) if keyword_ok => State::ImportExport,
                    ("require", _) if keyword_ok => State::Call,
                    ("from", State::ImportExport) => State::From,
                    (_, State::ImportExport) => State::ImportExport,
                    _ => State::None,
                };
                prev = if matches!(
                    word,
                    "return"
                        | "typeof"
                        | "case"
                        | "in"
                        | "of"
                        | "new"
                        | "delete"
                        | "void"
                        | "throw"
                        | "else"
                        | "yield"
                        | "await"
                ) {
                    Prev::Operator
                } else {
                    Prev::Value
                };
                after_dot = false;
            }
            b'(' => {
                state = if state == State::Call {
                    State::CallArg
                } else {
                    State::None
                };
                prev = Prev::Operator;
                after_dot = false;
                i += 1;
            }
            b')' | b']' => {
                prev = Prev::Value;
                if state != State::ImportExport {
                    state = State::None;
                }
                after_dot = false;
                i += 1;
            }
            b';' => {
                state = State::None;
                prev = Prev::Operator;
                after_dot = false;
                i += 1;
            }
            b'.' => {
                after_dot = !(b.get(i + 1) == Some(&b'.') && b.get(i + 2) == Some(&b'.'));
                if after_dot {
                    i += 1;
                } else {
                    i += 3;
                }
                if state != State::ImportExport {
                    state = State::None;
                }
                prev = Prev::Operator;
            }
            _ => {
                // `{`, `}`, `*`, `,` and friends keep an import/export clause going.
                if state != State::ImportExport {
                    state = State::None;
                }
                prev = Prev::Operator;
                after_dot = false;
                i += 1;
            }
        }
    }
    out
}

/// Whether the string starting at `start` directly follows `import` (a side-effect import).
fn is_bare_import_start(src: &str, start: usize) -> bool {
    src[..start - 1].trim_end().ends_with("import")
}

fn next_non_space(b: &[u8], mut i: usize) -> Option<u8> {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    b.get(i).copied()
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return i + 1,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_template(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'`' if depth == 0 => return i + 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
            }
            b'}' if depth > 0 => {
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_regex(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                in_class = true;
                i += 1
            }
            b']' => {
                in_class = false;
                i += 1
            }
            b'/' if !in_class => {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                return i;
            }
            b'\n' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::find_imports;

    #[test]
    fn every_import_form_is_found() {
        let src = r#"
import a from 'static';
import { b, c } from "named";
import type { T } from 'types';
import 'side-effect';
export * from 'star';
export { d } from 'reexport';
const e = require('required');
const f = await import('dynamic');
import * as ns from 'namespace';
"#;
        assert_eq!(
            find_imports(src),
            [
                "static",
                "named",
                "types",
                "side-effect",
                "star",
                "reexport",
                "required",
                "dynamic",
                "namespace"
            ]
        );
    }

    #[test]
    fn text_in_comments_strings_and_regexes_is_not_an_import() {
        let src = r#"
// import x from 'comment';
/* require('block') */
const s = "import y from 'string'";
const t = `require('template') ${1}`;
const r = /import z from 'regex'/g;
const ratio = a / b / c;
obj.require('member');
export const from = 1;
const u = 'after';
"#;
        assert!(find_imports(src).is_empty(), "{:?}", find_imports(src));
    }
}
