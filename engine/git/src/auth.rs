//! Credentials and SSH host-key checks, and the libgit2 callbacks that apply them.
//!
//! Credential values live only here, on the host: they are handed to libgit2 when the server
//! asks and never written to a repository's config, a log line or an error message.

use std::cell::RefCell;
use std::path::PathBuf;

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// How to authenticate to a remote.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Anonymous (public repositories; over SSH the URL's user, or `git`, with no key).
    #[default]
    None,
    /// HTTPS basic auth. A token is a password (the user name is often ignored by the server;
    /// GitHub wants `x-access-token`, GitLab `oauth2`).
    UserPass { username: String, password: String },
    /// An SSH private key (OpenSSH or PEM), with its passphrase if it has one.
    SshKey {
        username: Option<String>,
        private_key: String,
        passphrase: Option<String>,
    },
}

impl Credentials {
    /// Names the kind of credentials for messages, never the values.
    pub fn describe(&self) -> &'static str {
        match self {
            Credentials::None => "no credentials",
            Credentials::UserPass { .. } => "a user name and password",
            Credentials::SshKey { .. } => "an ssh key",
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// How an SSH server's host key is checked.
#[derive(Debug, Clone, Default)]
pub enum HostKeyCheck {
    /// The user's `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`, like `ssh`.
    #[default]
    System,
    /// The entries of this known_hosts text (a secret's value).
    KnownHosts(String),
    /// Keys pinned in the pipeline: known_hosts lines, or `type base64` for any host.
    Pinned(Vec<String>),
    /// Accept any key: the step opted out of the check.
    AcceptAny,
}

/// What the callbacks saw, read after libgit2 gives up to explain why.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    pub(crate) credential_calls: u32,
    pub(crate) auth_rejected: bool,
    pub(crate) auth_missing: bool,
    pub(crate) host_key: Option<HostKeyProblem>,
}

#[derive(Debug, Clone)]
pub(crate) enum HostKeyProblem {
    Unknown { host: String, key: String },
    Mismatch { host: String, key: String },
    Revoked { host: String },
    Invalid(String),
}

/// The `credentials` callback: offers the configured credentials once, then reports failure
/// (libgit2 would otherwise ask forever).
pub(crate) fn credential(
    creds: &Credentials,
    url_user: Option<&str>,
    allowed: git2::CredentialType,
    attempts: &RefCell<Attempts>,
) -> Result<git2::Cred, git2::Error> {
    use git2::CredentialType as T;
    let mut a = attempts.borrow_mut();
    if allowed.contains(T::USERNAME) {
        let user = match creds {
            Credentials::SshKey {
                username: Some(u), ..
            } => u.as_str(),
            _ => url_user.unwrap_or("git"),
        };
        return git2::Cred::username(user);
    }
    a.credential_calls += 1;
    if a.credential_calls > 1 {
        a.auth_rejected = true;
        return Err(git2::Error::from_str("authentication failed"));
    }
    match creds {
        Credentials::None => {
            a.auth_missing = true;
            Err(git2::Error::from_str("the remote asks for credentials"))
        }
        Credentials::UserPass { username, password }
            if allowed.contains(T::USER_PASS_PLAINTEXT) =>
        {
            git2::Cred::userpass_plaintext(username, password)
        }
        Credentials::SshKey {
            username,
            private_key,
            passphrase,
        } if allowed.contains(T::SSH_KEY) => {
            let user = username.as_deref().or(url_user).unwrap_or("git");
            git2::Cred::ssh_key_from_memory(user, None, private_key, passphrase.as_deref())
        }
        _ => {
            a.auth_rejected = true;
            Err(git2::Error::from_str(
                "the remote asks for another kind of credentials",
            ))
        }
    }
}

/// The `certificate_check` callback for SSH host keys; TLS certificates are left to libgit2's
/// own verification against the system's CA store.
pub(crate) fn check_certificate(
    cert: &git2::cert::Cert<'_>,
    host: &str,
    port: u16,
    policy: &HostKeyCheck,
    attempts: &RefCell<Attempts>,
) -> Result<git2::CertificateCheckStatus, git2::Error> {
    let Some(hostkey) = cert.as_hostkey() else {
        return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
    };
    let (Some(key), Some(kind)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
        attempts.borrow_mut().host_key = Some(HostKeyProblem::Invalid(
            "the server sent no usable host key".into(),
        ));
        return Err(git2::Error::from_str("no host key"));
    };
    let name = known_hosts_name(host, port);
    let shown = format!(
        "{} {}",
        kind.name(),
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let verdict = match policy {
        HostKeyCheck::AcceptAny => Verdict::Match,
        HostKeyCheck::KnownHosts(text) => check(text, &name, kind.name(), key),
        HostKeyCheck::Pinned(lines) => {
            let text: Vec<String> = lines
                .iter()
                .map(|l| {
                    // `type base64` pins the key for whatever host is dialled.
                    if l.split_whitespace().count() <= 2 && l.starts_with(['s', 'e']) {
                        format!("* {l}")
                    } else {
                        l.clone()
                    }
                })
                .collect();
            check(&text.join("\n"), &name, kind.name(), key)
        }
        HostKeyCheck::System => {
            let mut text = String::new();
            for path in system_known_hosts() {
                if let Ok(t) = std::fs::read_to_string(&path) {
                    text.push_str(&t);
                    text.push('\n');
                }
            }
            check(&text, &name, kind.name(), key)
        }
    };
    let problem = match verdict {
        Verdict::Match => return Ok(git2::CertificateCheckStatus::CertificateOk),
        Verdict::Unknown => HostKeyProblem::Unknown {
            host: name,
            key: shown,
        },
        Verdict::Mismatch => HostKeyProblem::Mismatch {
            host: name,
            key: shown,
        },
        Verdict::Revoked => HostKeyProblem::Revoked { host: name },
    };
    attempts.borrow_mut().host_key = Some(problem);
    Err(git2::Error::from_str("host key verification failed"))
}

fn system_known_hosts() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        v.push(PathBuf::from(home).join(".ssh/known_hosts"));
    }
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    v
}

/// The name under which known_hosts lists a server: `host`, or `[host]:port` off port 22.
pub(crate) fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Match,
    /// No entry names the host.
    Unknown,
    /// Entries name the host, none with this key.
    Mismatch,
    Revoked,
}

/// Checks a key against known_hosts text (OpenSSH's format: markers, comma-separated patterns
/// with `*`, `?` and `!`, hashed `|1|salt|hash` names).
pub(crate) fn check(text: &str, name: &str, kind: &str, key: &[u8]) -> Verdict {
    let mut host_known = false;
    let mut matched = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut marker = None;
        if first.starts_with('@') {
            marker = Some(first);
            first = fields.next().unwrap_or_default();
        }
        let (Some(line_kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, name) {
            continue;
        }
        let same = line_kind == kind
            && base64::engine::general_purpose::STANDARD
                .decode(b64)
                .is_ok_and(|k| k == key);
        match marker {
            Some("@revoked") if same => return Verdict::Revoked,
            Some(_) => continue,
            None => {
                host_known = true;
                matched |= same;
            }
        }
    }
    if matched {
        Verdict::Match
    } else if host_known {
        Verdict::Mismatch
    } else {
        Verdict::Unknown
    }
}

fn hosts_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(name.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    let mut positive = false;
    for p in patterns.split(',') {
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, name) {
                return false;
            }
        } else if wildcard(p, name) {
            positive = true;
        }
    }
    positive
}

/// `*` and `?` wildcards, case-insensitive, as in OpenSSH's `match_pattern`.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn key() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(KEY_B64)
            .unwrap()
    }

    #[test]
    fn a_listed_key_for_the_host_and_port_matches() {
        let text = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_B64}\n");
        assert_eq!(
            check(&text, "[127.0.0.1]:2222", "ssh-ed25519", &key()),
            Verdict::Match
        );
    }

    #[test]
    fn the_same_host_on_another_port_is_unknown() {
        let text = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_B64}\n");
        assert_eq!(
            check(&text, "[127.0.0.1]:2223", "ssh-ed25519", &key()),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_different_key_for_a_known_host_is_a_mismatch() {
        let text = "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBB\n";
        assert_eq!(
            check(text, "example.com", "ssh-ed25519", &key()),
            Verdict::Mismatch
        );
    }

    #[test]
    fn hashed_host_names_are_matched() {
        // `ssh-keygen -H` form of `example.com`, salt chosen for the test.
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"example.com");
        let b64 = base64::engine::general_purpose::STANDARD;
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_B64}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            check(&line, "example.com", "ssh-ed25519", &key()),
            Verdict::Match
        );
        assert_eq!(
            check(&line, "other.com", "ssh-ed25519", &key()),
            Verdict::Unknown
        );
    }

    #[test]
    fn wildcards_and_negations_follow_openssh() {
        assert!(hosts_match(
            "*.example.com,!bad.example.com",
            "git.example.com"
        ));
        assert!(!hosts_match(
            "*.example.com,!bad.example.com",
            "bad.example.com"
        ));
        assert!(hosts_match("git?.example.com", "git1.example.com"));
    }

    #[test]
    fn a_revoked_key_is_refused_even_when_also_listed() {
        let text = format!("@revoked * ssh-ed25519 {KEY_B64}\nexample.com ssh-ed25519 {KEY_B64}");
        assert_eq!(
            check(&text, "example.com", "ssh-ed25519", &key()),
            Verdict::Revoked
        );
    }

    #[test]
    fn credentials_never_print_their_values() {
        let c = Credentials::UserPass {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
