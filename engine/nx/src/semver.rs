//! Just enough of npm's semver to decide, like Nx, whether a workspace package's version
//! satisfies a dependency range (`*`, `x`, exact, `^`, `~`, comparators, hyphen ranges, `||`).

type Version = (u64, u64, u64);

fn parse_partial(s: &str) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
    let s = s.trim().trim_start_matches(['v', '=']);
    let s = s.split(['-', '+']).next()?;
    let mut parts = s.split('.');
    let mut num = || -> Option<Option<u64>> {
        match parts.next() {
            None | Some("x") | Some("X") | Some("*") => Some(None),
            Some(p) => p.parse().ok().map(Some),
        }
    };
    Some((num()?, num()?, num()?))
}

fn parse_version(s: &str) -> Option<Version> {
    match parse_partial(s)? {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => None,
    }
}

/// Whether `version` satisfies `range` (prerelease tags ignored, as with `includePrerelease`).
pub fn satisfies(version: &str, range: &str) -> bool {
    let Some(v) = parse_version(version) else {
        return false;
    };
    range.split("||").any(|set| satisfies_set(v, set.trim()))
}

fn satisfies_set(v: Version, set: &str) -> bool {
    if set.is_empty() || set == "*" || set == "latest" {
        return true;
    }
    if let Some((lo, hi)) = set.split_once(" - ") {
        return compare(v, ">=", lo) && compare(v, "<=", hi);
    }
    let mut tokens: Vec<String> = Vec::new();
    // Join operators separated from their version by spaces (`>= 1.0.0`).
    let mut pending = String::new();
    for t in set.split_whitespace() {
        if t.chars().all(|c| "<>=~^".contains(c)) {
            pending.push_str(t);
        } else {
            tokens.push(format!("{pending}{t}"));
            pending.clear();
        }
    }
    tokens.iter().all(|t| satisfies_comparator(v, t))
}

fn satisfies_comparator(v: Version, t: &str) -> bool {
    for op in [">=", "<=", ">", "<", "^", "~", "="] {
        if let Some(rest) = t.strip_prefix(op) {
            return compare(v, op, rest);
        }
    }
    compare(v, "=", t)
}

fn compare(v: Version, op: &str, rest: &str) -> bool {
    let Some((a, b, c)) = parse_partial(rest) else {
        return false;
    };
    let lo = (a.unwrap_or(0), b.unwrap_or(0), c.unwrap_or(0));
    match op {
        "^" => {
            let hi = match (a, b, c) {
                (None, _, _) => return true,
                (Some(0), Some(0), Some(p)) => (0, 0, p + 1),
                (Some(0), Some(m), _) if a == Some(0) && (m > 0 || c.is_none()) && b.is_some() => {
                    if m == 0 {
                        (0, 1, 0)
                    } else {
                        (0, m + 1, 0)
                    }
                }
                (Some(0), None, _) => (1, 0, 0),
                (Some(x), _, _) => (x + 1, 0, 0),
            };
            v >= lo && v < hi
        }
        "~" => {
            let hi = match (a, b) {
                (None, _) => return true,
                (Some(x), None) => (x + 1, 0, 0),
                (Some(x), Some(m)) => (x, m + 1, 0),
            };
            v >= lo && v < hi
        }
        "=" => match (a, b, c) {
            (None, _, _) => true,
            (Some(x), None, _) => v.0 == x,
            (Some(x), Some(m), None) => v.0 == x && v.1 == m,
            _ => v == lo,
        },
        ">=" => v >= lo,
        ">" => match (a, b, c) {
            (Some(x), None, _) => v.0 > x,
            (Some(x), Some(m), None) => (v.0, v.1) > (x, m),
            _ => v > lo,
        },
        "<=" => match (a, b, c) {
            (Some(x), None, _) => v.0 <= x,
            (Some(x), Some(m), None) => (v.0, v.1) <= (x, m),
            _ => v <= lo,
        },
        "<" => v < lo,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::satisfies;

    #[test]
    fn ranges_behave_like_npm_semver() {
        let cases = [
            ("1.0.0", "*", true),
            ("1.0.0", "^1.0.0", true),
            ("1.2.3", "^1.0.0", true),
            ("2.0.0", "^1.0.0", false),
            ("1.0.0", "^9.0.0", false),
            ("0.2.5", "^0.2.0", true),
            ("0.3.0", "^0.2.0", false),
            ("1.2.9", "~1.2.0", true),
            ("1.3.0", "~1.2.0", false),
            ("1.0.0", "1.0.0", true),
            ("1.0.1", "1.0.0", false),
            ("1.5.0", ">=1.0.0 <2.0.0", true),
            ("1.5.0", "1.x", true),
            ("3.0.0", "1.x || 3.x", true),
            ("1.5.0", "1.0.0 - 2.0.0", true),
        ];
        for (v, r, want) in cases {
            assert_eq!(satisfies(v, r), want, "{v} in {r}");
        }
    }
}
