//! Remote URLs: the forms git accepts, what the grant check and the mirror key see, and how a
//! URL is shown (never with a password).

use std::fmt;
use std::path::PathBuf;

use crate::GitError;

/// Where a remote lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Reached over the network: `https://`, `http://`, `ssh://`, `git://`, or scp-like
    /// `user@host:path`.
    Network {
        scheme: Scheme,
        /// Lowercase host name or address (IPv6 without brackets).
        host: String,
        port: u16,
        /// User name written in the URL, if any (never a password).
        user: Option<String>,
        /// Path on the server, starting with `/` (scp-like paths get one).
        path: String,
    },
    /// A repository on this machine: `file:///path` or an absolute path.
    Local(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
            Scheme::Ssh => "ssh",
            Scheme::Git => "git",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
            Scheme::Ssh => 22,
            Scheme::Git => 9418,
        }
    }
}

/// A parsed remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// The URL handed to libgit2 (as written, minus nothing: it never holds a password).
    raw: String,
    pub location: Location,
}

impl RemoteUrl {
    /// Parses the URL forms git accepts. A password inside the URL is refused: credentials come
    /// from secrets, so that they never end up in logs, `.git/config` or the mirror cache.
    pub fn parse(url: &str) -> Result<RemoteUrl, GitError> {
        let url = url.trim();
        let invalid = |reason: &str, hint: &str| GitError::InvalidUrl {
            url: redact(url),
            reason: reason.to_string(),
            hint: hint.to_string(),
        };
        if url.is_empty() {
            return Err(invalid("it is empty", "write the repository's clone URL"));
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "a `file://` URL needs an absolute path",
                    "write it as `file:///abs/path/repo.git`",
                ));
            }
            return Ok(RemoteUrl {
                raw: url.to_string(),
                location: Location::Local(PathBuf::from(rest)),
            });
        }
        if url.starts_with('/') {
            return Ok(RemoteUrl {
                raw: url.to_string(),
                location: Location::Local(PathBuf::from(url)),
            });
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "https" => Scheme::Https,
                "http" => Scheme::Http,
                "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
                "git" => Scheme::Git,
                other => {
                    return Err(invalid(
                        &format!("scheme `{other}` is not supported"),
                        "use https://, http://, ssh://, git://, file:// or user@host:path",
                    ));
                }
            };
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((userinfo, hostport)) => {
                    if userinfo.contains(':') {
                        return Err(invalid(
                            "it contains a password",
                            "remove it from the URL and pass credentials from a secret with `auth:`",
                        ));
                    }
                    (Some(userinfo.to_string()), hostport)
                }
                None => (None, authority),
            };
            let (host, port) = split_host_port(hostport)
                .ok_or_else(|| invalid("its host or port is not valid", "write `host[:port]`"))?;
            if host.is_empty() {
                return Err(invalid("it has no host", "write `scheme://host/path`"));
            }
            return Ok(RemoteUrl {
                raw: url.to_string(),
                location: Location::Network {
                    scheme,
                    host,
                    port: port.unwrap_or(scheme.default_port()),
                    user: user.filter(|u| !u.is_empty()),
                    path: path.to_string(),
                },
            });
        }
        // scp-like: [user@]host:path (the colon comes before any slash).
        if let Some(colon) = url.find(':')
            && !url[..colon].contains('/')
        {
            let (user, host) = match url[..colon].rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, &url[..colon]),
            };
            let path = &url[colon + 1..];
            if host.is_empty() || path.is_empty() {
                return Err(invalid(
                    "it is not a valid scp-like address",
                    "write `user@host:path/repo.git`",
                ));
            }
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            return Ok(RemoteUrl {
                raw: url.to_string(),
                location: Location::Network {
                    scheme: Scheme::Ssh,
                    host: host.to_ascii_lowercase(),
                    port: 22,
                    user,
                    path,
                },
            });
        }
        Err(invalid(
            "it is a relative path",
            "write an absolute path, a `file://` URL or a network URL",
        ))
    }

    /// The URL as given to libgit2.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `host:port` for network remotes: what a step's `allow.net` must list.
    pub fn endpoint(&self) -> Option<String> {
        match &self.location {
            Location::Network { host, port, .. } if host.contains(':') => {
                Some(format!("[{host}]:{port}"))
            }
            Location::Network { host, port, .. } => Some(format!("{host}:{port}")),
            Location::Local(_) => None,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.location, Location::Local(_))
    }

    /// The user named in the URL, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.location {
            Location::Network { user, .. } => user.as_deref(),
            Location::Local(_) => None,
        }
    }

    /// A normal form that names the same repository however it was written: the mirror key.
    /// Lowercase scheme and host, explicit port, no user, no trailing `/` or `.git`.
    pub fn canonical(&self) -> String {
        match &self.location {
            Location::Network {
                scheme,
                host,
                port,
                path,
                ..
            } => {
                let path = path.trim_end_matches('/');
                let path = path.strip_suffix(".git").unwrap_or(path);
                format!("{}://{host}:{port}{path}", scheme.as_str())
            }
            Location::Local(p) => {
                let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                let s = p.to_string_lossy();
                let s = s.trim_end_matches('/');
                format!("file://{}", s.strip_suffix(".git").unwrap_or(s))
            }
        }
    }

    /// Resolves a submodule URL written relative to this one (`../other.git`).
    pub fn join(&self, relative: &str) -> Result<RemoteUrl, GitError> {
        if !(relative.starts_with("./") || relative.starts_with("../")) {
            return RemoteUrl::parse(relative);
        }
        let mut base = self.raw.trim_end_matches('/').to_string();
        let mut rest = relative;
        loop {
            if let Some(r) = rest.strip_prefix("./") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("../") {
                rest = r;
                match base.rfind(['/', ':']) {
                    Some(i) if !base[..i].ends_with('/') => base.truncate(i),
                    _ => {
                        return Err(GitError::InvalidUrl {
                            url: relative.to_string(),
                            reason: format!("it climbs above `{}`", redact(&self.raw)),
                            hint: "fix the submodule's url in .gitmodules".into(),
                        });
                    }
                }
            } else {
                break;
            }
        }
        let sep = if base.ends_with(':') { "" } else { "/" };
        RemoteUrl::parse(&format!("{base}{sep}{rest}"))
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_ascii_lowercase(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => Some((h.to_ascii_lowercase(), Some(p.parse().ok()?))),
        Some((h, _)) => Some((h.to_ascii_lowercase(), None)),
        None => Some((s.to_ascii_lowercase(), None)),
    }
}

/// A URL with any `user:password@` reduced to `***@`, for messages about input that failed to
/// parse (parsed URLs never hold a password).
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@')
            && rest[..at].contains(':')
        {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_get_their_default_port_and_endpoint() {
        let u = RemoteUrl::parse("https://GitHub.com/acme/app.git").unwrap();
        assert_eq!(u.endpoint().as_deref(), Some("github.com:443"));
        assert_eq!(u.canonical(), "https://github.com:443/acme/app");
    }

    #[test]
    fn scp_like_addresses_are_ssh_on_port_22() {
        let u = RemoteUrl::parse("git@gitlab.example.com:team/nb.git").unwrap();
        assert_eq!(u.endpoint().as_deref(), Some("gitlab.example.com:22"));
        assert_eq!(u.user(), Some("git"));
        assert_eq!(u.canonical(), "ssh://gitlab.example.com:22/team/nb");
    }

    #[test]
    fn ssh_urls_keep_an_explicit_port() {
        let u = RemoteUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!(u.endpoint().as_deref(), Some("127.0.0.1:2222"));
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_endpoint() {
        let u = RemoteUrl::parse("http://[::1]:8080/r.git").unwrap();
        assert_eq!(u.endpoint().as_deref(), Some("[::1]:8080"));
    }

    #[test]
    fn the_same_repository_written_two_ways_has_one_mirror_key() {
        let a = RemoteUrl::parse("https://example.com/a/b.git/").unwrap();
        let b = RemoteUrl::parse("https://user@EXAMPLE.com:443/a/b").unwrap();
        assert_eq!(a.canonical(), b.canonical());
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        let e = RemoteUrl::parse("https://me:hunter2@example.com/r.git").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("password"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn relative_paths_and_unknown_schemes_are_refused_with_a_hint() {
        assert!(RemoteUrl::parse("repo.git").is_err());
        assert!(RemoteUrl::parse("ftp://x/r").is_err());
        assert!(RemoteUrl::parse("file://relative").is_err());
    }

    #[test]
    fn local_paths_have_no_endpoint() {
        let u = RemoteUrl::parse("file:///srv/r.git").unwrap();
        assert!(u.is_local());
        assert_eq!(u.endpoint(), None);
    }

    #[test]
    fn relative_submodule_urls_resolve_against_the_parent() {
        let p = RemoteUrl::parse("https://example.com/org/app.git").unwrap();
        assert_eq!(
            p.join("../lib.git").unwrap().as_str(),
            "https://example.com/org/lib.git"
        );
        let s = RemoteUrl::parse("git@example.com:org/app.git").unwrap();
        assert_eq!(
            s.join("../lib.git").unwrap().as_str(),
            "git@example.com:org/lib.git"
        );
        let f = RemoteUrl::parse("/srv/git/app.git").unwrap();
        assert_eq!(
            f.join("./sub.git").unwrap().as_str(),
            "/srv/git/app.git/sub.git"
        );
    }
}
