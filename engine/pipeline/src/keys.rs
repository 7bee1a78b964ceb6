//! The one table of keys and value patterns, read by both the parser and [`crate::schema`].
//!
//! A test checks that every object in the JSON Schema lists exactly these keys, so the schema
//! given to editors cannot drift from what the parser accepts.

/// Keys of the top-level mapping.
pub(crate) const TOP_KEYS: &[&str] = &["name", "on", "env", "steps", "concurrency"];
/// Keys of `concurrency:` in its long form.
pub(crate) const CONCURRENCY_KEYS: &[&str] = &["group", "cancel-in-progress"];
/// Keys of `on:`.
pub(crate) const ON_KEYS: &[&str] = &["push", "pull_request", "manual", "schedule"];
/// Keys of an `on.schedule` entry.
pub(crate) const SCHEDULE_KEYS: &[&str] = &["cron"];
/// The events `on:` accepts in its short forms (`on: push`, `on: [push, pull_request]`).
pub(crate) const EVENTS: &[&str] = &["push", "pull_request", "manual"];
/// Keys of `on.push` and `on.pull_request`.
pub(crate) const FILTER_KEYS: &[&str] = &["branches", "tags", "paths", "paths-ignore"];
/// Keys of `on.manual` (none yet: `manual: {}`).
pub(crate) const MANUAL_KEYS: &[&str] = &[];
/// Keys of a step.
pub(crate) const STEP_KEYS: &[&str] = &[
    "id",
    "uses",
    "with",
    "needs",
    "if",
    "matrix",
    "env",
    "secrets",
    "timeout",
    "retry",
    "continue-on-error",
    "allow",
    "cache",
];
/// Keys of `cache:` in its long form.
pub(crate) const CACHE_KEYS: &[&str] = &["inputs", "outputs"];
/// Keys of `retry:` in its long form.
pub(crate) const RETRY_KEYS: &[&str] = &["attempts", "backoff", "max-backoff"];
/// Keys of `allow:`.
pub(crate) const ALLOW_KEYS: &[&str] = &["workspace", "net"];
/// Values of `allow.workspace`.
pub(crate) const WORKSPACE_MODES: &[&str] = &["read", "write"];
/// The roots an expression may read.
pub(crate) const ROOTS: &[&str] = &[
    "env", "matrix", "steps", "event", "git", "secrets", "run", "vars",
];

/// Step ids and matrix axis names.
pub(crate) const ID_PATTERN: &str = "^[a-z][a-z0-9_-]*$";
/// Longest step id.
pub(crate) const ID_MAX_LEN: usize = 64;
/// Built-in plugin names.
pub(crate) const BUILTIN_PATTERN: &str = "^[a-z][a-z0-9-]*$";
/// Secret names.
pub(crate) const SECRET_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Environment variable names.
pub(crate) const ENV_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// A pinned OCI reference.
pub(crate) const OCI_PATTERN: &str = "^oci://[^@\\s]+@sha256:[0-9a-f]{64}$";
/// A plugin component on disk.
pub(crate) const WASM_PATTERN: &str = "\\.wasm$";
/// `allow.net` entries.
/// `host:port`, or a value with an expression (`${{ vars.REGISTRY }}`) resolved when the step runs.
pub(crate) const NET_PATTERN: &str =
    "^((\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}|.*\\$\\{\\{.*\\}\\}.*)$";
/// Durations, as humantime reads them (`90s`, `20m`, `1h30m`, `500ms`).
pub(crate) const DURATION_PATTERN: &str = "^\\s*([0-9]+(\\.[0-9]+)?\\s*[a-zµ]+\\s*)+$";
/// A value that is exactly one `${{ ... }}` expression.
pub(crate) const SINGLE_EXPR_PATTERN: &str = "^\\s*\\$\\{\\{.*\\}\\}\\s*$";
/// Most attempts `retry:` may ask for.
pub(crate) const MAX_ATTEMPTS: i64 = 10;

/// `^[a-z][a-z0-9_-]*$`, at most 64 chars.
pub(crate) fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= ID_MAX_LEN
}

/// `^[a-z][a-z0-9-]*$`.
pub(crate) fn is_builtin(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `^[A-Z_][A-Z0-9_]*$`.
pub(crate) fn is_secret_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`.
pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Check a `host:port` entry of `allow.net`; the error says what is wrong.
/// Whether `s` is `host:port` (a DNS name or IP address, a port 1-65535); the error says why not.
pub fn check_host_port(s: &str) -> Result<(), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected `host:port`".to_owned());
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("the port `{port}` is not a number"));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => {}
        _ => return Err(format!("the port `{port}` is not between 1 and 65535")),
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            Ok(())
        } else {
            Err(format!("`{inner}` is not an IPv6 address"))
        };
    }
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if host.contains(':') {
        return Err("write an IPv6 address in brackets, e.g. `[::1]:443`".to_owned());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(())
}

/// Check a `cache.inputs`/`cache.outputs` glob: relative to the workspace, no `..`, valid
/// glob syntax (the same rules as `kiln_cache::files`). The error is a message and a hint.
pub(crate) fn check_glob(pattern: &str) -> Result<(), (String, String)> {
    let body = pattern.strip_prefix('!').unwrap_or(pattern);
    let body = body.trim_start_matches("./").trim_end_matches('/');
    if body.trim().is_empty() {
        return Err((
            "the pattern is empty".to_owned(),
            "remove it, or name files such as `src/**` or `Cargo.lock`".to_owned(),
        ));
    }
    if body.starts_with('/') || body.split('/').any(|s| s == "..") {
        return Err((
            "it leaves the workspace".to_owned(),
            "write patterns relative to the workspace, without `/` at the start or `..`".to_owned(),
        ));
    }
    globset::GlobBuilder::new(body)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|_| ())
        .map_err(|e| {
            (
                e.kind().to_string(),
                "globs use `*`, `**`, `?`, `[abc]` and `{a,b}`; `!` at the start excludes"
                    .to_owned(),
            )
        })
}

/// Check a `sha256:<64 hex>` digest.
pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The candidate closest to `word`, if it is close enough to be what the user meant.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normalize = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let w = normalize(word);
    let limit = match w.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(&w, &normalize(c));
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = v;
        }
    }
    d[a.len() * width + b.len()]
}

/// `` `a`, `b` and `c` `` for messages.
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_misspellings_get_a_suggestion() {
        assert_eq!(suggest("neds", STEP_KEYS.iter().copied()), Some("needs"));
        assert_eq!(
            suggest("timout", STEP_KEYS.iter().copied()),
            Some("timeout")
        );
        assert_eq!(
            suggest("continue_on_error", STEP_KEYS.iter().copied()),
            Some("continue-on-error")
        );
        assert_eq!(suggest("usse", STEP_KEYS.iter().copied()), Some("uses"));
        assert_eq!(suggest("ID", STEP_KEYS.iter().copied()), Some("id"));
    }

    #[test]
    fn distant_words_get_no_suggestion() {
        assert_eq!(suggest("banana", STEP_KEYS.iter().copied()), None);
        assert_eq!(suggest("x", STEP_KEYS.iter().copied()), None);
    }

    #[test]
    fn ids_follow_the_documented_pattern() {
        assert!(is_id("build"));
        assert!(is_id("a1_b-c"));
        assert!(!is_id("Build"));
        assert!(!is_id("1build"));
        assert!(!is_id(""));
        assert!(!is_id(&"a".repeat(65)));
        assert!(is_id(&"a".repeat(64)));
    }

    #[test]
    fn host_port_entries_are_checked() {
        assert!(check_host_port("deployer.internal:443").is_ok());
        assert!(check_host_port("10.0.0.1:8080").is_ok());
        assert!(check_host_port("[::1]:443").is_ok());
        assert!(check_host_port("example.com").is_err());
        assert!(check_host_port("example.com:0").is_err());
        assert!(check_host_port("example.com:65536").is_err());
        assert!(check_host_port(":443").is_err());
        assert!(check_host_port("bad_host:443").is_err());
        assert!(check_host_port("::1:443").is_err());
    }

    #[test]
    fn digests_must_be_full_lowercase_sha256() {
        assert!(is_sha256_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(&format!("sha512:{}", "a".repeat(64))));
    }
}
