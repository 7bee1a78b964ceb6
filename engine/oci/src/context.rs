//! The build context's `.dockerignore`, read and matched the way Docker and BuildKit do.
//!
//! # `.dockerignore`
//! - one pattern a line; a UTF-8 byte-order mark, surrounding white space and blank lines are
//!   ignored; a line whose first character is `#` is a comment (`  #x` is a pattern);
//! - each pattern is cleaned like Go's `filepath.Clean` (`a//b/../c/` is `a/c`) and a leading
//!   `/` is dropped: patterns are relative to the context root, never "anywhere below";
//! - Go's `filepath.Match` syntax: `*` (any run without `/`), `?` (one character but `/`),
//!   `[abc]`, `[a-z]`, `[^a-z]` (only `^` negates: `[!a]` is `!` or `a`, as in Go), `\x` (a
//!   literal `x`); plus `**`, any number of directories (`**/x`, `a/**/b`, `a/**`);
//! - a pattern matches a path when it matches the path itself or one of its parent
//!   directories, so `build` excludes everything under `build/`;
//! - `!pattern` is an exception that re-includes; the last pattern that matches decides.
//!
//! A directory that is excluded is still walked when an exception could match something
//! beneath it (`!build/keep.txt`, `!**/*.md`); otherwise its contents are skipped unread.
//!
//! The context itself is sent to BuildKit file by file from its directory
//! (`buildkit::filesync`), with these patterns and the ones BuildKit's frontend sends.

/// Why a `.dockerignore` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(
        "`.dockerignore` line {line}: `{pattern}` is not a valid pattern: {reason}\n  hint: {hint}"
    )]
    BadPattern {
        line: usize,
        pattern: String,
        reason: String,
        hint: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// Patterns

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `**` at the end: anything.
    Rest,
    /// `**` (or `**/`) before more pattern: nothing, or anything ending with `/`.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches_char(&self, c: char) -> bool {
        match self {
            Token::Lit(l) => *l == c,
            Token::One => c != '/',
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            Token::Star | Token::Rest | Token::Dirs => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned, without the leading `!`.
    text: String,
    exclusion: bool,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Whether the pattern matches all of `path`.
    fn matches(&self, path: &[char]) -> bool {
        Matcher::new(&self.tokens, path, false).run()
    }

    /// Whether the pattern could match some path that starts with `prefix`.
    fn could_match_under(&self, prefix: &[char]) -> bool {
        Matcher::new(&self.tokens, prefix, true).run()
    }
}

/// Memoised matching of tokens against characters. In prefix mode, running out of input is a
/// success: whatever tokens remain can match some continuation.
struct Matcher<'a> {
    tokens: &'a [Token],
    input: &'a [char],
    prefix: bool,
    memo: Vec<Option<bool>>,
}

impl<'a> Matcher<'a> {
    fn new(tokens: &'a [Token], input: &'a [char], prefix: bool) -> Matcher<'a> {
        Matcher {
            tokens,
            input,
            prefix,
            memo: vec![None; (tokens.len() + 1) * (input.len() + 1)],
        }
    }

    fn run(&mut self) -> bool {
        self.at(0, 0)
    }

    fn at(&mut self, t: usize, i: usize) -> bool {
        let key = t * (self.input.len() + 1) + i;
        if let Some(Some(known)) = self.memo.get(key) {
            return *known;
        }
        let result = self.compute(t, i);
        if let Some(slot) = self.memo.get_mut(key) {
            *slot = Some(result);
        }
        result
    }

    fn compute(&mut self, t: usize, i: usize) -> bool {
        let n = self.input.len();
        if self.prefix && i == n {
            return true;
        }
        let Some(token) = self.tokens.get(t) else {
            return i == n;
        };
        match token {
            Token::Star => {
                let mut k = i;
                loop {
                    if self.at(t + 1, k) {
                        return true;
                    }
                    match self.input.get(k) {
                        Some(&c) if c != '/' => k += 1,
                        _ => return false,
                    }
                }
            }
            Token::Rest => (i..=n).any(|k| self.at(t + 1, k)),
            Token::Dirs => {
                if self.at(t + 1, i) {
                    return true;
                }
                (i + 1..=n).any(|k| self.input[k - 1] == '/' && self.at(t + 1, k))
            }
            single => match self.input.get(i) {
                Some(&c) if single.matches_char(c) => self.at(t + 1, i + 1),
                _ => false,
            },
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Compiles a cleaned pattern; the error is the reason it is malformed (as Go's
/// `filepath.Match` would refuse it).
fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    tokens.push(Token::Lit(next));
                }
                None => return Err("it ends with a lone `\\`".to_string()),
            },
            '[' => {
                let (token, next) = class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            other => tokens.push(Token::Lit(other)),
        }
    }
    Ok(tokens)
}

/// Parses a character class whose `[` is just before `start`; returns it and the index after
/// its `]`.
fn class(chars: &[char], start: usize) -> Result<(Token, usize), String> {
    let unclosed = || "a `[` is not closed by `]`".to_string();
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(unclosed()),
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1));
            }
            _ => {}
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            if h < lo {
                return Err(format!("the range `{lo}-{h}` is backwards"));
            }
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("a `[` is not closed by `]`".to_string()),
        Some('-') | Some(']') => {
            Err("a character class is empty or has a dangling `-`".to_string())
        }
        Some('\\') => match chars.get(i + 1) {
            Some(&c) => Ok((c, i + 2)),
            None => Err("it ends with a lone `\\`".to_string()),
        },
        Some(&c) => Ok((c, i + 1)),
    }
}

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file; a malformed pattern is an error naming its
    /// line.
    pub fn parse(text: &str) -> Result<DockerIgnore, ContextError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let bad = |reason: String, hint: &'static str| ContextError::BadPattern {
                line,
                pattern: trimmed.to_string(),
                reason,
                hint,
            };
            let (exclusion, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            if exclusion && body.is_empty() {
                return Err(bad(
                    "`!` needs a pattern after it".to_string(),
                    "write `!path` to re-include `path`",
                ));
            }
            let mut text = clean(body);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let tokens = compile(&text).map_err(|reason| {
                bad(
                    reason,
                    "patterns use Go's filepath.Match syntax: `*`, `?`, `[a-z]`, `[^a-z]`, `\\` escapes, and `**`",
                )
            })?;
            patterns.push(Pattern {
                text,
                exclusion,
                tokens,
            });
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The cleaned patterns, exceptions with their `!`, in file order.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is excluded: the last
    /// pattern that matches it or one of its parent directories decides. Matching is the same
    /// for files and directories (a trailing `/` in a pattern is cleaned away, so `logs/`
    /// also excludes a file named `logs`).
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path);
        let path = path.trim_start_matches('/');
        let chars: Vec<char> = path.chars().collect();
        // Ends (exclusive) of each parent directory: `a/b/c` -> `a`, `a/b`.
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            // Only a pattern that can change the answer needs to be tried.
            if pattern.exclusion != excluded {
                continue;
            }
            let hit = pattern.matches(&chars)
                || parents.iter().any(|&end| pattern.matches(&chars[..end]));
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        excluded
    }

    /// Whether a (non-exception) pattern could match something below the directory `rel_dir`:
    /// read as a list of paths to include, whether the directory must be walked.
    pub fn may_match_under(&self, rel_dir: &str) -> bool {
        let dir = clean(rel_dir);
        let mut prefix: Vec<char> = dir.trim_start_matches('/').chars().collect();
        prefix.push('/');
        self.patterns
            .iter()
            .any(|p| !p.exclusion && p.could_match_under(&prefix))
    }

    /// Whether an exception could re-include something below the directory `rel_dir`, so that
    /// an excluded directory must still be walked.
    pub fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        let dir = clean(rel_dir);
        let mut prefix: Vec<char> = dir.trim_start_matches('/').chars().collect();
        prefix.push('/');
        self.patterns
            .iter()
            .any(|p| p.exclusion && p.could_match_under(&prefix))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    fn excluded(text: &str, path: &str) -> bool {
        ignore(text).is_excluded(path)
    }

    // --- cleaning and parsing ---------------------------------------------------------------

    #[test]
    fn clean_follows_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn comments_blank_lines_and_surrounding_space_are_ignored() {
        let ig = ignore("\u{feff}# comment\n\n   \n  *.log  \r\n!keep.log\n");
        assert_eq!(ig.patterns().collect::<Vec<_>>(), ["*.log", "!keep.log"]);
    }

    #[test]
    fn a_hash_after_leading_space_is_a_pattern_not_a_comment() {
        let ig = ignore("  #notes");
        assert_eq!(ig.patterns().collect::<Vec<_>>(), ["#notes"]);
        assert!(ig.is_excluded("#notes"));
    }

    #[test]
    fn patterns_are_cleaned_and_a_leading_slash_is_dropped() {
        let ig = ignore("/build/\n./a//b/../c\n! /dist/x/");
        assert_eq!(
            ig.patterns().collect::<Vec<_>>(),
            ["build", "a/c", "!dist/x"]
        );
    }

    #[test]
    fn a_malformed_pattern_is_an_error_with_its_line() {
        for (text, line) in [
            ("ok\n[abc", 2),
            ("a\nb\n!", 3),
            ("x\\", 1),
            ("[]", 1),
            ("[z-a]", 1),
            ("[a-]", 1),
        ] {
            let e = DockerIgnore::parse(text).unwrap_err();
            let ContextError::BadPattern { line: got, .. } = &e;
            assert_eq!(*got, line, "{text}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("line {line}")), "{msg}");
            assert!(msg.contains("hint:"), "{msg}");
        }
    }

    // --- matching ----------------------------------------------------------------------------

    #[test]
    fn a_star_does_not_cross_directories() {
        assert!(excluded("*.log", "a.log"));
        assert!(!excluded("*.log", "dir/a.log"));
        assert!(excluded("*/*.log", "dir/a.log"));
        assert!(!excluded("*/*.log", "a/b/a.log"));
    }

    #[test]
    fn a_plain_name_matches_only_at_the_root() {
        assert!(excluded("secret", "secret"));
        assert!(!excluded("secret", "sub/secret"));
    }

    #[test]
    fn a_question_mark_is_one_character_but_a_slash() {
        assert!(excluded("a?c", "abc"));
        assert!(!excluded("a?c", "ac"));
        assert!(!excluded("a?c", "a/c"));
    }

    #[test]
    fn character_classes_ranges_and_negation_work() {
        assert!(excluded("file[0-9].txt", "file7.txt"));
        assert!(!excluded("file[0-9].txt", "filex.txt"));
        assert!(excluded("file[^0-9].txt", "filex.txt"));
        assert!(!excluded("file[^0-9].txt", "file7.txt"));
        assert!(excluded("[abc]", "b"));
        assert!(excluded("[\\]]", "]"));
    }

    #[test]
    fn an_exclamation_mark_in_a_class_is_literal_as_in_go() {
        assert!(excluded("[!a]", "!"));
        assert!(excluded("[!a]", "a"));
        assert!(!excluded("[!a]", "b"));
    }

    #[test]
    fn a_backslash_escapes_the_next_character() {
        assert!(excluded("\\*.txt", "*.txt"));
        assert!(!excluded("\\*.txt", "a.txt"));
        assert!(excluded("a\\?", "a?"));
    }

    #[test]
    fn regexp_characters_are_literal() {
        assert!(excluded("a.b+(c)|{d}$", "a.b+(c)|{d}$"));
        assert!(!excluded("a.b", "axb"));
    }

    #[test]
    fn a_double_star_matches_any_number_of_directories() {
        let ig = ignore("**/*.go");
        assert!(ig.is_excluded("main.go"));
        assert!(ig.is_excluded("a/b/c/main.go"));
        assert!(!ig.is_excluded("a/main.rs"));
        let ig = ignore("a/**/b");
        assert!(ig.is_excluded("a/b"));
        assert!(ig.is_excluded("a/x/y/b"));
        assert!(!ig.is_excluded("b"));
        let ig = ignore("**/node_modules");
        assert!(ig.is_excluded("node_modules/x/index.js"));
        assert!(ig.is_excluded("web/app/node_modules/react/package.json"));
    }

    #[test]
    fn a_trailing_double_star_matches_everything_below() {
        let ig = ignore("logs/**");
        assert!(ig.is_excluded("logs/a"));
        assert!(ig.is_excluded("logs/a/b/c"));
        assert!(!ig.is_excluded("logs"));
        assert!(ignore("**").is_excluded("anything/at/all"));
    }

    #[test]
    fn a_double_star_inside_a_name_stays_docker_s_quirk() {
        // moby compiles `a**b` to `a(.*/)?b`: `ab` and `ax/b`, but not `axb`.
        let ig = ignore("a**b");
        assert!(ig.is_excluded("ab"));
        assert!(ig.is_excluded("ax/b"));
        assert!(!ig.is_excluded("axb"));
    }

    #[test]
    fn a_pattern_matching_a_directory_excludes_everything_under_it() {
        let ig = ignore("build");
        assert!(ig.is_excluded("build"));
        assert!(ig.is_excluded("build/out/app.bin"));
        assert!(!ig.is_excluded("builder/x"));
    }

    #[test]
    fn an_exception_re_includes_a_file_under_an_excluded_dir() {
        let ig = ignore("build\n!build/keep.txt");
        assert!(ig.is_excluded("build/other.txt"));
        assert!(!ig.is_excluded("build/keep.txt"));
        assert!(ig.may_reinclude_under("build"));
    }

    #[test]
    fn the_last_matching_pattern_wins() {
        assert!(!excluded("*.md\n!README.md", "README.md"));
        assert!(excluded("*.md\n!README.md\nREADME*", "README.md"));
        assert!(excluded("!a.txt\n*.txt", "a.txt"));
    }

    #[test]
    fn an_exception_for_a_directory_re_includes_its_contents() {
        let ig = ignore("*\n!src");
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(!ig.is_excluded("src"));
        assert!(ig.is_excluded("target"));
    }

    #[test]
    fn exceptions_that_cannot_match_below_a_directory_do_not_force_a_walk() {
        let ig = ignore("node_modules\n!src/**\n!*.md");
        assert!(!ig.may_reinclude_under("node_modules"));
        let ig = ignore("node_modules\n!**/*.md");
        assert!(ig.may_reinclude_under("node_modules"));
        let ig = ignore("a\n!a/*/keep");
        assert!(ig.may_reinclude_under("a"));
        assert!(ig.may_reinclude_under("a/b"));
        assert!(!ig.may_reinclude_under("c"));
    }

    #[test]
    fn a_trailing_slash_does_not_limit_a_pattern_to_directories() {
        let ig = ignore("logs/");
        assert!(ig.is_excluded("logs"));
        assert!(ig.is_excluded("logs/today.txt"));
    }

    #[test]
    fn paths_given_to_is_excluded_are_cleaned() {
        let ig = ignore("a/b");
        assert!(ig.is_excluded("./a/b"));
        assert!(ig.is_excluded("/a//b/c"));
    }

    #[test]
    fn class_and_wildcard_exceptions_are_considered_for_walking() {
        let ig = ignore("vendor\n!vendor/[a-c]*/LICENSE");
        assert!(ig.may_reinclude_under("vendor"));
        assert!(ig.may_reinclude_under("vendor/bar"));
        assert!(!ig.may_reinclude_under("vendor/zed"));
        assert!(!ig.is_excluded("vendor/bar/LICENSE"));
        assert!(ig.is_excluded("vendor/zed/LICENSE"));
    }
}
