//! Image references: `[registry[:port]/]path[:tag][@digest]`, parsed by the grammar of
//! `distribution/reference` and normalised the way `docker` does it.
//!
//! - no registry means Docker Hub: `alpine` is `docker.io/library/alpine`, `me/app` is
//!   `docker.io/me/app`;
//! - the first path component is a registry when it contains `.` or `:` or is `localhost`
//!   (`localhost:5000/app`, `ghcr.io/org/app`), otherwise it is part of the repository;
//! - `index.docker.io` is written `docker.io`; registry host names are lowercased;
//! - the repository must be lowercase (`My/App` is an error, not a guess);
//! - a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `algorithm:hex` with the hex
//!   length of its algorithm (`sha256`: 64, `sha384`: 96, `sha512`: 128), lowercase;
//! - the name (`registry/repository`) is at most 255 characters.
//!
//! [`Reference`]'s `Display` is the full form (`docker.io/library/alpine:3.20`);
//! [`Reference::familiar`] is docker's short form (`alpine:3.20`). Neither adds `:latest`:
//! ask [`Reference::tag_or_latest`] for the tag a pull would use.

use std::fmt;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Longest `registry/repository` distribution accepts.
pub const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a string is not an image reference. Each message quotes the reference and says what to
/// write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "the image reference is empty\n  hint: write `name[:tag]`, e.g. `alpine:3.20` or `ghcr.io/org/app:1.0`"
    )]
    Empty,
    #[error("`{reference}` has the character `{ch}` at column {column}, {reason}\n  hint: {hint}")]
    BadCharacter {
        reference: String,
        ch: char,
        /// 1-based, in characters.
        column: usize,
        reason: &'static str,
        hint: &'static str,
    },
    #[error(
        "`{reference}` has uppercase letters in its repository `{repository}`\n  hint: repository names must be lowercase; write `{lowercase}`"
    )]
    Uppercase {
        reference: String,
        repository: String,
        lowercase: String,
    },
    #[error(
        "`{reference}` is too long: its name has {len} characters, at most {NAME_MAX} are allowed\n  hint: shorten the repository path"
    )]
    TooLong { reference: String, len: usize },
    #[error("`{reference}` is not a valid image reference: {reason}\n  hint: {hint}")]
    Invalid {
        reference: String,
        reason: String,
        hint: &'static str,
    },
    #[error("`{reference}` has an invalid tag `{tag}`: {reason}\n  hint: {hint}")]
    InvalidTag {
        reference: String,
        tag: String,
        reason: String,
        hint: &'static str,
    },
    #[error("`{reference}` has an invalid digest `{digest}`: {reason}\n  hint: {hint}")]
    InvalidDigest {
        reference: String,
        digest: String,
        reason: String,
        hint: &'static str,
    },
}

const TAG_HINT: &str =
    "a tag is up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`";
const DIGEST_HINT: &str = "write the digest as `sha256:` followed by 64 lowercase hex digits";

impl Reference {
    /// Parses and normalises an image reference (see the module documentation).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = s.to_string();
        if let Some((i, ch)) = s
            .char_indices()
            .find(|&(_, c)| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(bad_char(s, i, ch, "which image references never contain"));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::Invalid {
                reference,
                reason: "it looks like an image ID (64 hex digits), not a name".to_string(),
                hint: "refer to an image by name, or by digest as `name@sha256:...`",
            });
        }

        // `name[:tag]` and `@digest`: names and tags never contain `@`.
        let (name_tag, digest) = match s.split_once('@') {
            Some((left, right)) => (left, Some(right)),
            None => (s, None),
        };
        let digest = match digest {
            Some(d) => Some(validate_digest(s, d)?),
            None => None,
        };
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|sl| colon > sl) => {
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            _ => (name_tag, None),
        };
        let tag = match tag {
            Some(t) => Some(validate_tag(s, t, name.len() + 1)?),
            None => None,
        };
        if name.is_empty() {
            return Err(ReferenceError::Invalid {
                reference,
                reason: "it has no repository name".to_string(),
                hint: "write the name before `:` or `@`, e.g. `alpine:3.20`",
            });
        }

        // Registry or first path component?
        let (registry, path, path_offset) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_registry(s, first)?;
                (first.to_ascii_lowercase(), rest, first.len() + 1)
            }
            _ => (DOCKER_HUB.to_string(), name, 0),
        };
        validate_path(s, path, path_offset)?;

        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let len = registry.len() + 1 + repository.len();
        if len > NAME_MAX {
            return Err(ReferenceError::TooLong { reference, len });
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry, e.g. `docker.io`, `ghcr.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag, or `latest` when none was written (what `docker pull` would fetch; a reference
    /// with only a digest still answers `latest`, check [`Reference::digest`] first).
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image with another tag (a digest, if any, is kept).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        let shown = format!("{}:{tag}", self.name());
        let tag = validate_tag(&shown, tag, self.name().len() + 1)?;
        Ok(Reference {
            tag: Some(tag),
            ..self.clone()
        })
    }

    /// The same image pinned to a digest (a tag, if any, is kept).
    pub fn with_digest(&self, digest: &str) -> Result<Reference, ReferenceError> {
        let shown = format!("{}@{digest}", self.name());
        let digest = validate_digest(&shown, digest)?;
        Ok(Reference {
            digest: Some(digest),
            ..self.clone()
        })
    }

    /// Docker's short form: `docker.io/library/` and `docker.io/` are left out.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        self.push_suffix(&mut out);
        out
    }

    /// `host:port` of the registry as written (port 443 when none is given), the form of
    /// Kiln's network grants: `docker.io:443`, `localhost:5000`, `[::1]:443`.
    pub fn registry_host(&self) -> String {
        if has_port(&self.registry) {
            self.registry.clone()
        } else {
            format!("{}:443", self.registry)
        }
    }

    /// The host (with its port, when one was written) that serves the registry API:
    /// `registry-1.docker.io` for Docker Hub, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// Whether `host[:port]` (or `[v6][:port]`) names a port.
fn has_port(registry: &str) -> bool {
    match registry.rfind(']') {
        Some(close) => registry[close..].contains(':'),
        None => registry.contains(':'),
    }
}

/// `offset` is the byte offset of `part` inside `whole`; the column counts characters.
fn bad_char(whole: &str, offset: usize, ch: char, reason: &'static str) -> ReferenceError {
    let column = whole
        .get(..offset)
        .map_or(offset, |before| before.chars().count())
        + 1;
    ReferenceError::BadCharacter {
        reference: whole.to_string(),
        ch,
        column,
        reason,
        hint: "write `[registry[:port]/]path[:tag][@digest]`; paths use lowercase letters, digits, `.`, `_`, `-` and `/`",
    }
}

fn validate_tag(whole: &str, tag: &str, offset: usize) -> Result<String, ReferenceError> {
    let invalid = |reason: String| ReferenceError::InvalidTag {
        reference: whole.to_string(),
        tag: tag.to_string(),
        reason,
        hint: TAG_HINT,
    };
    if tag.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if tag.len() > TAG_MAX {
        return Err(invalid(format!(
            "it has {} characters, at most {TAG_MAX} are allowed",
            tag.len()
        )));
    }
    for (i, ch) in tag.char_indices() {
        let word = ch.is_ascii_alphanumeric() || ch == '_';
        let ok = if i == 0 {
            word
        } else {
            word || ch == '.' || ch == '-'
        };
        if !ok {
            let column = whole
                .get(..offset + i)
                .map_or(offset + i, |b| b.chars().count())
                + 1;
            let reason = if i == 0 && (ch == '.' || ch == '-') {
                format!("it starts with `{ch}`")
            } else {
                format!("it has the character `{ch}` (column {column})")
            };
            return Err(invalid(reason));
        }
    }
    Ok(tag.to_string())
}

fn validate_digest(whole: &str, digest: &str) -> Result<String, ReferenceError> {
    let invalid = |reason: String| ReferenceError::InvalidDigest {
        reference: whole.to_string(),
        digest: digest.to_string(),
        reason,
        hint: DIGEST_HINT,
    };
    if digest.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(invalid("it has no `algorithm:` prefix".to_string()));
    };
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        "" => return Err(invalid("its algorithm is empty".to_string())),
        other => {
            return Err(invalid(format!(
                "the algorithm `{other}` is not supported (`sha256`, `sha384`, `sha512` are)"
            )));
        }
    };
    if let Some(ch) = hex
        .chars()
        .find(|c| !(c.is_ascii_digit() || ('a'..='f').contains(c)))
    {
        return Err(invalid(format!("`{ch}` is not a lowercase hex digit")));
    }
    if hex.len() != expected {
        return Err(invalid(format!(
            "`{algorithm}` needs {expected} hex digits, this has {}",
            hex.len()
        )));
    }
    Ok(digest.to_string())
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn validate_registry(whole: &str, registry: &str) -> Result<(), ReferenceError> {
    let invalid = |reason: String| ReferenceError::Invalid {
        reference: whole.to_string(),
        reason,
        hint: "write the registry as `host[:port]`, e.g. `ghcr.io` or `localhost:5000`",
    };
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(invalid(format!(
                "the registry `{registry}` opens `[` without closing it"
            )));
        };
        let addr = &rest[..close];
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(invalid(format!(
                "`[{addr}]` in the registry `{registry}` is not an IPv6 address"
            )));
        }
        let after = &rest[close + 1..];
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => {
                return Err(invalid(format!(
                    "the registry `{registry}` has `{after}` after its address"
                )));
            }
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err(invalid(format!("the registry `{registry}` has no host")));
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(invalid(format!(
                    "`{label}` in the registry `{registry}` is not a valid host name part"
                )));
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(invalid(format!(
            "the port `{port}` of the registry `{registry}` is not a number from 0 to 65535"
        )));
    }
    Ok(())
}

/// `component('/' component)*`, component = `[a-z0-9]+ (sep [a-z0-9]+)*`, sep = `.`, `_`,
/// `__` or one or more `-`. `offset` is where `path` starts in `whole`.
fn validate_path(whole: &str, path: &str, offset: usize) -> Result<(), ReferenceError> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            reference: whole.to_string(),
            repository: path.to_string(),
            lowercase: format!(
                "{}{}{}",
                &whole[..offset],
                path.to_ascii_lowercase(),
                &whole[offset + path.len()..]
            ),
        });
    }
    for (i, ch) in path.char_indices() {
        if !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-' | '/'))
        {
            return Err(bad_char(
                whole,
                offset + i,
                ch,
                "which repository paths cannot contain",
            ));
        }
    }
    let invalid = |reason: String| ReferenceError::Invalid {
        reference: whole.to_string(),
        reason,
        hint: "each path component starts and ends with a letter or digit; separators are `.`, `_`, `__` or dashes",
    };
    for component in path.split('/') {
        if component.is_empty() {
            return Err(invalid(format!(
                "the repository `{path}` has an empty path component"
            )));
        }
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !component.starts_with(alnum) || !component.ends_with(alnum) {
            return Err(invalid(format!(
                "the path component `{component}` must start and end with a letter or digit"
            )));
        }
        // Every run of separator characters must be `.`, `_`, `__` or dashes only.
        for sep in component.split(alnum).filter(|s| !s.is_empty()) {
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
            if !ok {
                return Err(invalid(format!(
                    "the path component `{component}` has the separator `{sep}`"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn err(s: &str) -> ReferenceError {
        Reference::parse(s).unwrap_err()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_bare_name_is_an_official_docker_hub_image() {
        let r = p("alpine");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), None);
        assert_eq!(r.to_string(), "docker.io/library/alpine");
        assert_eq!(r.familiar(), "alpine");
        assert_eq!(r.tag_or_latest(), "latest");
    }

    #[test]
    fn a_user_repository_on_docker_hub_gets_no_library_prefix() {
        let r = p("me/app:1.0");
        assert_eq!(r.to_string(), "docker.io/me/app:1.0");
        assert_eq!(r.familiar(), "me/app:1.0");
    }

    #[test]
    fn a_first_component_with_a_dot_is_a_registry() {
        let r = p("ghcr.io/org/app:v1");
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.repository(), "org/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.familiar(), "ghcr.io/org/app:v1");
    }

    #[test]
    fn a_first_component_with_a_port_is_a_registry() {
        let r = p("registry:5000/app");
        assert_eq!(r.registry(), "registry:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.registry_host(), "registry:5000");
    }

    #[test]
    fn localhost_is_a_registry_even_without_a_port() {
        let r = p("localhost/app");
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.registry_host(), "localhost:443");
    }

    #[test]
    fn a_plain_first_component_is_part_of_the_repository() {
        let r = p("team/sub/app");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "team/sub/app");
    }

    #[test]
    fn localhost_with_a_port_and_no_path_is_a_tagged_hub_image() {
        // As in docker: without a `/` there is no registry, so `:5000` is a tag.
        let r = p("localhost:5000");
        assert_eq!(r.to_string(), "docker.io/library/localhost:5000");
    }

    #[test]
    fn index_docker_io_is_normalised_to_docker_io() {
        let r = p("index.docker.io/library/ubuntu:24.04");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.familiar(), "ubuntu:24.04");
        let r = p("docker.io/ubuntu");
        assert_eq!(r.repository(), "library/ubuntu");
    }

    #[test]
    fn the_registry_host_name_is_lowercased() {
        assert_eq!(p("GHCR.io/org/app").registry(), "ghcr.io");
    }

    #[test]
    fn a_tag_and_a_digest_can_both_be_given() {
        let r = p(&format!("alpine:3.20@{D}"));
        assert_eq!(r.tag(), Some("3.20"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/alpine:3.20@{D}"));
        assert_eq!(r.familiar(), format!("alpine:3.20@{D}"));
    }

    #[test]
    fn a_digest_alone_pins_the_image() {
        let r = p(&format!("localhost:5000/app@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.registry(), "localhost:5000");
    }

    #[test]
    fn a_colon_before_the_last_slash_is_a_port_not_a_tag() {
        let r = p("host:5000/a/b");
        assert_eq!(r.tag(), None);
        assert_eq!(r.registry(), "host:5000");
        assert_eq!(r.repository(), "a/b");
    }

    #[test]
    fn an_ipv6_registry_is_accepted_and_gets_the_default_port() {
        let r = p("[::1]/app:1");
        assert_eq!(r.registry(), "[::1]");
        assert_eq!(r.registry_host(), "[::1]:443");
        let r = p("[fe80::1]:5000/app");
        assert_eq!(r.registry_host(), "[fe80::1]:5000");
    }

    #[test]
    fn the_api_host_of_docker_hub_is_registry_1() {
        assert_eq!(p("alpine").api_host(), "registry-1.docker.io");
        assert_eq!(p("alpine").registry_host(), "docker.io:443");
        assert_eq!(p("quay.io/x/y").api_host(), "quay.io");
        assert_eq!(p("localhost:5000/x").api_host(), "localhost:5000");
    }

    #[test]
    fn separators_inside_path_components_follow_the_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0/b-c.d_e"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a..b", "a___b", "a._b", "-a", "a-", "_a", "a/.b", "a//b", "a/",
        ] {
            assert!(
                matches!(err(bad), ReferenceError::Invalid { .. }),
                "{bad}: {:?}",
                err(bad)
            );
        }
    }

    #[test]
    fn an_empty_reference_is_an_error() {
        assert_eq!(err(""), ReferenceError::Empty);
    }

    #[test]
    fn uppercase_in_the_repository_is_an_error_with_the_lowercase_form() {
        let e = err("ghcr.io/Org/App:V1");
        let ReferenceError::Uppercase { lowercase, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(lowercase, "ghcr.io/org/app:V1");
        let msg = e.to_string();
        assert!(msg.contains("`ghcr.io/Org/App:V1`"), "{msg}");
        assert!(msg.contains("hint:"), "{msg}");
        assert!(matches!(err("MyApp"), ReferenceError::Uppercase { .. }));
    }

    #[test]
    fn a_bad_character_is_named_with_its_column() {
        let e = err("ghcr.io/org/ap!p");
        assert_eq!(
            e,
            ReferenceError::BadCharacter {
                reference: "ghcr.io/org/ap!p".to_string(),
                ch: '!',
                column: 15,
                reason: "which repository paths cannot contain",
                hint: "write `[registry[:port]/]path[:tag][@digest]`; paths use lowercase letters, digits, `.`, `_`, `-` and `/`",
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("`!` at column 15"), "{msg}");
        let e = err("alp ine");
        assert!(
            matches!(
                e,
                ReferenceError::BadCharacter {
                    ch: ' ',
                    column: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = err("alpé");
        assert!(
            matches!(
                e,
                ReferenceError::BadCharacter {
                    ch: 'é',
                    column: 4,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_name_over_255_characters_is_too_long() {
        let long = format!("ghcr.io/{}", "a".repeat(250));
        assert!(matches!(
            err(&long),
            ReferenceError::TooLong { len: 258, .. }
        ));
        let just = format!("ghcr.io/{}", "a".repeat(255 - 8));
        assert!(Reference::parse(&just).is_ok());
    }

    #[test]
    fn invalid_tags_are_refused() {
        for bad in [
            "a:",
            "a:.x",
            "a:-x",
            "a:x+y",
            &format!("a:{}", "x".repeat(129)),
        ] {
            let e = err(bad);
            assert!(
                matches!(e, ReferenceError::InvalidTag { .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains("hint:"));
        }
        assert_eq!(
            p(&format!("a:{}", "x".repeat(128))).tag().map(str::len),
            Some(128)
        );
        assert_eq!(p("a:_x.Y-1").tag(), Some("_x.Y-1"));
    }

    #[test]
    fn invalid_digests_are_refused() {
        let short = "sha256:abc";
        let upper = D.to_uppercase().replacen("SHA256", "sha256", 1);
        let md5 = "md5:0123456789abcdef0123456789abcdef";
        for d in [short, &upper, md5, "sha256", "", ":abc"] {
            let e = err(&format!("alpine@{d}"));
            assert!(
                matches!(e, ReferenceError::InvalidDigest { .. }),
                "{d}: {e:?}"
            );
        }
        let e = err(&format!("alpine@{short}"));
        assert!(e.to_string().contains("`sha256:abc`"), "{e}");
        assert!(e.to_string().contains("64"), "{e}");
        assert!(Reference::parse(&format!("a@sha512:{}", "0".repeat(128))).is_ok());
    }

    #[test]
    fn a_bare_image_id_is_not_taken_for_a_name() {
        assert!(matches!(
            err(&"a".repeat(64)),
            ReferenceError::Invalid { .. }
        ));
    }

    #[test]
    fn bad_registries_are_refused() {
        for bad in [
            "ho_st.io/app",
            "host.io:99999/app",
            "host.io:/app",
            "-h.io/a",
            "[zz]/a",
            "[::1/a",
        ] {
            assert!(
                matches!(
                    err(bad),
                    ReferenceError::Invalid { .. } | ReferenceError::BadCharacter { .. }
                ),
                "{bad}: {:?}",
                err(bad)
            );
        }
    }

    #[test]
    fn a_reference_without_a_name_is_refused() {
        assert!(matches!(err(":tag"), ReferenceError::Invalid { .. }));
        assert!(matches!(
            err(&format!("@{D}")),
            ReferenceError::Invalid { .. }
        ));
    }

    #[test]
    fn with_tag_and_with_digest_validate_and_keep_the_rest() {
        let r = p("ghcr.io/org/app:1");
        let t = r.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "ghcr.io/org/app:2");
        let d = t.with_digest(D).unwrap();
        assert_eq!(d.to_string(), format!("ghcr.io/org/app:2@{D}"));
        assert!(matches!(
            r.with_tag("-x"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            r.with_digest("sha256:x"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
    }

    #[test]
    fn with_tag_keeps_an_existing_digest() {
        let r = p(&format!("alpine@{D}")).with_tag("edge").unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/alpine:edge@{D}"));
        assert_eq!(r.tag_or_latest(), "edge");
    }

    #[test]
    fn tags_may_use_uppercase_letters() {
        assert_eq!(p("ghcr.io/a/b:Release_1").tag(), Some("Release_1"));
    }

    #[test]
    fn parse_is_available_through_from_str() {
        let r: Reference = "quay.io/a/b:1".parse().unwrap();
        assert_eq!(r.name(), "quay.io/a/b");
    }

    #[test]
    fn display_round_trips_through_parse() {
        for s in [
            "alpine",
            "me/app:1",
            "ghcr.io/a/b/c:x@".to_string().as_str(),
        ] {
            let s = if s.ends_with('@') {
                format!("{s}{D}")
            } else {
                s.to_string()
            };
            let r = p(&s);
            assert_eq!(p(&r.to_string()), r);
            assert_eq!(p(&r.familiar()), r);
        }
    }

    #[test]
    fn familiar_keeps_library_for_nested_paths() {
        assert_eq!(p("docker.io/library/a/b").familiar(), "library/a/b");
    }
}
