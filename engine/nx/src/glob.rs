//! A small glob matcher with minimatch's semantics for the patterns Nx uses: `*`, `?`, `**`
//! (whole segments), `[...]` classes and `{a,b}` alternatives. Paths are `/`-separated.

/// A compiled glob: one alternative per brace expansion, each a list of segments.
#[derive(Debug, Clone)]
pub struct Glob {
    alternatives: Vec<Vec<Segment>>,
}

#[derive(Debug, Clone)]
enum Segment {
    /// `**`: zero or more whole segments.
    Globstar,
    /// A literal segment (no wildcard), compared directly.
    Literal(String),
    Pattern(Vec<Token>),
}

#[derive(Debug, Clone)]
enum Token {
    Char(char),
    Any,
    One,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let alternatives = expand_braces(pattern)
            .iter()
            .map(|p| {
                let p = p.strip_prefix("./").unwrap_or(p);
                p.split('/')
                    .filter(|s| !s.is_empty())
                    .map(compile_segment)
                    .collect()
            })
            .collect();
        Glob { alternatives }
    }

    pub fn is_match(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.alternatives
            .iter()
            .any(|alt| match_segments(alt, &segments))
    }
}

/// Whether `pattern` contains any glob syntax.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

fn compile_segment(s: &str) -> Segment {
    if s == "**" {
        return Segment::Globstar;
    }
    if !is_glob(s) {
        return Segment::Literal(s.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if !matches!(tokens.last(), Some(Token::Any)) {
                    tokens.push(Token::Any);
                }
            }
            '?' => tokens.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                tokens.push(Token::Char(chars[i]));
            }
            '[' => {
                if let Some((tok, next)) = compile_class(&chars, i) {
                    tokens.push(tok);
                    i = next;
                    continue;
                }
                tokens.push(Token::Char('['));
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    Segment::Pattern(tokens)
}

fn compile_class(chars: &[char], start: usize) -> Option<(Token, usize)> {
    let mut i = start + 1;
    let negated = matches!(chars.get(i), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        if c == ']' && !first {
            return Some((Token::Class { negated, items }, i + 1));
        }
        first = false;
        if i + 2 < chars.len() && chars[i + 1] == '-' && chars[i + 2] != ']' {
            items.push((c, chars[i + 2]));
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
    None
}

fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(Segment::Globstar) => {
            // Collapse consecutive globstars, then try every split.
            let rest = &pattern[1..];
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some(seg) => match path.first() {
            Some(first) if match_segment(seg, first) => match_segments(&pattern[1..], &path[1..]),
            _ => false,
        },
    }
}

fn match_segment(seg: &Segment, text: &str) -> bool {
    match seg {
        Segment::Globstar => true,
        Segment::Literal(l) => l == text,
        Segment::Pattern(tokens) => {
            let chars: Vec<char> = text.chars().collect();
            match_tokens(tokens, &chars)
        }
    }
}

fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    // Iterative wildcard matching with one backtrack point (classic `*` algorithm).
    let (mut t, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < text.len() {
        if t < tokens.len() {
            match &tokens[t] {
                Token::Any => {
                    star = Some((t, s));
                    t += 1;
                    continue;
                }
                tok if single_matches(tok, text[s]) => {
                    t += 1;
                    s += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((st, ss)) => {
                t = st + 1;
                s = ss + 1;
                star = Some((st, ss + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|tok| matches!(tok, Token::Any))
}

fn single_matches(tok: &Token, c: char) -> bool {
    match tok {
        Token::Char(x) => *x == c,
        Token::One => true,
        Token::Any => true,
        Token::Class { negated, items } => {
            items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
    }
}

/// `a/{b,c}/d` -> [`a/b/d`, `a/c/d`], nested braces included.
fn expand_braces(pattern: &str) -> Vec<String> {
    let bytes: Vec<char> = pattern.chars().collect();
    let Some(open) = bytes.iter().position(|&c| c == '{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut part_start = open + 1;
    for (i, &c) in bytes.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(bytes[part_start..i].iter().collect::<String>());
                    let prefix: String = bytes[..open].iter().collect();
                    let suffix: String = bytes[i + 1..].iter().collect();
                    return parts
                        .iter()
                        .flat_map(|p| expand_braces(&format!("{prefix}{p}{suffix}")))
                        .collect();
                }
            }
            ',' if depth == 1 => {
                parts.push(bytes[part_start..i].iter().collect::<String>());
                part_start = i + 1;
            }
            _ => {}
        }
    }
    vec![pattern.to_string()]
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs_match_like_minimatch() {
        let cases = [
            ("packages/*/package.json", "packages/a/package.json", true),
            (
                "packages/*/package.json",
                "packages/a/b/package.json",
                false,
            ),
            ("**/package.json", "package.json", true),
            ("**/package.json", "a/b/package.json", true),
            ("tools/**/*", "tools/gen.js", true),
            ("tools/**/*", "tools/a/b/gen.js", true),
            ("tools/**/*", "other/gen.js", false),
            ("{project.json,**/project.json}", "a/project.json", true),
            ("libs/**/*.spec.ts", "libs/p/src/x.spec.ts", true),
            ("libs/**/*.spec.ts", "libs/p/src/x.ts", false),
            ("b*", "b", true),
            ("b*", "ab", false),
            ("[ab]?", "bx", true),
            ("*.log", "x.log", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).is_match(s), want, "{p} vs {s}");
        }
    }
}
