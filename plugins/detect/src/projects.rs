//! `projects:`: the project directories under `path` that match directory globs (seed 003's
//! one image per notebook project).
//!
//! A pattern is matched against a directory's path relative to `path`, segment by segment:
//! `*` matches any characters within one segment, `?` one character, `**` any number of
//! segments (also none). Hidden directories and the ones never searched (`node_modules`,
//! `.git`, …) are not entered.

use std::path::Path;

use crate::project::{Project, SKIP_DIRS};

/// How deep below `path` directories are looked at (a `**` stops here).
pub const MAX_DEPTH: usize = 8;

/// Whether `name` (one path segment) matches `pattern` (one segment with `*` and `?`).
fn segment_matches(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            segment_matches(&pattern[1..], name)
                || (!name.is_empty() && segment_matches(pattern, &name[1..]))
        }
        (Some('?'), Some(_)) => segment_matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => segment_matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn matches_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(&"**") => (0..=path.len()).any(|skip| matches_segments(&pattern[1..], &path[skip..])),
        Some(p) => {
            let Some(first) = path.first() else {
                return false;
            };
            let p: Vec<char> = p.chars().collect();
            let n: Vec<char> = first.chars().collect();
            segment_matches(&p, &n) && matches_segments(&pattern[1..], &path[1..])
        }
    }
}

/// Whether the relative directory path `dir` (`a/b`) matches the glob `pattern`.
pub fn matches(pattern: &str, dir: &str) -> bool {
    let pattern: Vec<&str> = pattern
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let path: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    matches_segments(&pattern, &path)
}

/// What is wrong with a pattern, if anything.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("a `projects` pattern is empty; use e.g. `*` for every directory".into());
    }
    if pattern.starts_with('/') {
        return Some(format!(
            "`projects` pattern `{pattern}` is absolute; it is matched against directories relative to `path`"
        ));
    }
    if pattern.split('/').any(|s| s == "..") {
        return Some(format!(
            "`projects` pattern `{pattern}` has `..`; projects must be inside `path`"
        ));
    }
    None
}

/// The directories under `root` (relative paths, sorted) that match any of `patterns`.
pub fn matching_dirs(root: &Path, patterns: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    walk(root, "", 0, patterns, &mut found);
    found.sort();
    found
}

fn walk(root: &Path, rel: &str, depth: usize, patterns: &[String], found: &mut Vec<String>) {
    if depth >= MAX_DEPTH {
        return;
    }
    let project = Project {
        root: root.to_path_buf(),
    };
    for name in project.dirs_in(rel) {
        if name.starts_with('.') || SKIP_DIRS.contains(&name.as_str()) {
            continue;
        }
        let dir = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if patterns.iter().any(|p| matches(p, &dir)) {
            found.push(dir.clone());
        }
        walk(root, &dir, depth + 1, patterns, found);
    }
}

/// A name for the project's image: lowercase, `/`-separated components of letters, digits and
/// single `.`, `_`, `-` between them (what an image repository path allows).
pub fn image_name(dir: &str) -> String {
    let components: Vec<String> = dir
        .split('/')
        .map(|c| {
            let mut out = String::new();
            for ch in c.chars().flat_map(char::to_lowercase) {
                let keep = ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '-';
                let ch = if keep { ch } else { '-' };
                let sep = !ch.is_ascii_alphanumeric();
                if sep && (out.is_empty() || out.ends_with(['.', '_', '-'])) {
                    continue;
                }
                out.push(ch);
            }
            out.trim_end_matches(['.', '_', '-']).to_string()
        })
        .filter(|c| !c.is_empty())
        .collect();
    if components.is_empty() {
        "project".to_string()
    } else {
        components.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segment_by_segment() {
        assert!(matches("*", "sales"));
        assert!(!matches("*", "team/sales"));
        assert!(matches("*/*", "team/sales"));
        assert!(matches("notebooks/*", "notebooks/sales"));
        assert!(!matches("notebooks/*", "notebooks"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**/nb-*", "a/nb-1"));
        assert!(matches("**/nb-*", "nb-2"));
        assert!(matches("s?les", "sales"));
        assert!(!matches("s?les", "sles"));
        assert!(matches("./*", "x"));
    }

    #[test]
    fn image_names_are_valid_repository_paths() {
        assert_eq!(image_name("Sales Forecast"), "sales-forecast");
        assert_eq!(image_name("team/Weather_2024"), "team/weather_2024");
        assert_eq!(image_name("--x--"), "x");
        assert_eq!(image_name("???"), "project");
    }
}
