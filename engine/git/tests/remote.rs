//! The git layer against real servers on 127.0.0.1: smart HTTP (nginx + git http-backend, basic
//! auth under `/auth/`, anonymous under `/anon/`) and SSH (sshd + git-shell, deploy keys), as
//! `scripts/services.sh up git` starts them. The servers are required: when the script cannot
//! start them the tests fail with its output (CI installs the packages), they are not skipped.
//!
//! Every test makes its own bare repository under `$KILN_GIT_REPOS` (served over both HTTP and
//! SSH) and its own mirror cache, so tests run in parallel.

// Helpers outside `#[test]` functions set up fixtures; a failed setup should panic.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_git::{
    Access, Cancel, CloneOptions, CommitOptions, Credentials, Git, GitConfig, GitError,
    HostKeyCheck, Identity, PushOptions, Pushed, Remote, RemoteUrl,
};

// ---------------------------------------------------------------------------------------------
// support

/// The variables `scripts/services.sh env git` prints, with the servers running.
struct Services {
    vars: HashMap<String, String>,
}

impl Services {
    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the services' env.json"))
    }

    fn file(&self, name: &str) -> String {
        let path = self.var(name);
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {name}={path}: {e}"))
    }

    fn password(&self) -> String {
        self.file("KILN_GIT_HTTP_PASSWORD_FILE").trim().to_string()
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Starts the git servers once per test binary (the script is idempotent and takes a lock, so
/// several test binaries may race) and reads their env.json.
fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let root = workspace_root();
        let script = root.join("scripts/services.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["up", "git"])
            .current_dir(&root)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "`scripts/services.sh up git` failed ({}); the git servers are required for these tests\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let json = std::env::var_os("KILN_GIT_ENV_JSON")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("KILN_SERVICES_DIR")
                    .map(|d| PathBuf::from(d).join("git/env.json"))
            })
            .unwrap_or_else(|| root.join("target/services/git/env.json"));
        let text = std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("read {}: {e}", json.display()));
        let vars: HashMap<String, String> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parse {}: {e}", json.display()));
        Services { vars }
    })
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05+01:00")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05+01:00")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A bare repository served by both servers, the working repository it was pushed from, a
/// private mirror cache and scratch space. The bare repository is removed on drop.
struct Served {
    name: String,
    bare: PathBuf,
    work: PathBuf,
    tmp: tempfile::TempDir,
    git: Git,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bare);
    }
}

impl Served {
    /// `main`: `first` (README.md, src/a.rs, src/b.rs, src/c.rs; tagged `v1`), `second`
    /// (edits a.rs); `dev` branches off `first` and adds dev.txt.
    fn new(test: &str) -> Served {
        static N: AtomicUsize = AtomicUsize::new(0);
        let s = services();
        let name = format!(
            "{test}-{}-{}.git",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let bare = PathBuf::from(s.var("KILN_GIT_REPOS")).join(&name);
        let _ = std::fs::remove_dir_all(&bare);
        git(
            Path::new("/"),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        write(&work, "README.md", "hello\n");
        write(&work, "src/a.rs", &"pub fn a() {}\n".repeat(30));
        write(&work, "src/b.rs", &"pub fn b() -> u32 { 2 }\n".repeat(30));
        write(&work, "src/c.rs", &"pub fn c() {}\n".repeat(30));
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "first"]);
        git(&work, &["tag", "v1"]);
        git(&work, &["checkout", "-q", "-b", "dev"]);
        write(&work, "dev.txt", "dev\n");
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "on dev"]);
        git(&work, &["checkout", "-q", "main"]);
        write(&work, "src/a.rs", &"pub fn a() { todo!() }\n".repeat(30));
        git(&work, &["commit", "-q", "-am", "second"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(&work, &["push", "-q", "origin", "main", "dev", "v1"]);
        let git = Git::new(GitConfig {
            mirror_dir: tmp.path().join("mirrors"),
            mirror_max_bytes: 1 << 30,
            allow_local: false,
        });
        Served {
            name,
            bare,
            work,
            tmp,
            git,
        }
    }

    fn http_auth(&self) -> String {
        format!("{}/{}", services().var("KILN_GIT_HTTP_AUTH_URL"), self.name)
    }

    fn http_anon(&self) -> String {
        format!("{}/{}", services().var("KILN_GIT_HTTP_ANON_URL"), self.name)
    }

    fn ssh(&self) -> String {
        format!("{}/{}", services().var("KILN_GIT_SSH_URL"), self.name)
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Commits on `main` in the working repository and pushes it; returns the new head.
    fn push_commit(&self, path: &str, text: &str, message: &str) -> String {
        write(&self.work, path, text);
        git(&self.work, &["add", "."]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn clone(&self, remote: Remote, reference: Option<&str>, dest: &str) -> Cloned {
        self.clone_with(remote, reference, dest, None)
    }

    fn clone_with(
        &self,
        remote: Remote,
        reference: Option<&str>,
        dest: &str,
        depth: Option<u32>,
    ) -> Cloned {
        self.clone_using(&self.git, remote, reference, dest, depth)
    }

    /// A clone with another `Git` (another mirror cache).
    fn clone_using(
        &self,
        git: &Git,
        remote: Remote,
        reference: Option<&str>,
        dest: &str,
        depth: Option<u32>,
    ) -> Cloned {
        let lines = Mutex::new(Vec::new());
        let options = CloneOptions {
            remote,
            reference: reference.map(str::to_string),
            dest: self.dest(dest),
            depth,
            submodules: false,
            authorize: &|_| Ok(()),
        };
        let result = git.clone_repo(
            &options,
            &|l| lines.lock().unwrap().push(l.to_string()),
            &Cancel::default(),
        );
        Cloned {
            result,
            progress: lines.into_inner().unwrap(),
        }
    }

    /// The pack files of this test's (only) mirror.
    fn mirror_packs(&self) -> usize {
        let mirrors = self.git.mirrors().unwrap();
        assert_eq!(mirrors.len(), 1, "one mirror: {mirrors:?}");
        std::fs::read_dir(mirrors[0].path.join("objects/pack"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
            .count()
    }
}

struct Cloned {
    result: Result<kiln_git::Commit, GitError>,
    progress: Vec<String>,
}

fn url(s: &str) -> RemoteUrl {
    RemoteUrl::parse(s).unwrap()
}

fn userpass(url_: &str, password: &str) -> Remote {
    Remote {
        url: url(url_),
        credentials: Credentials::UserPass {
            username: services().var("KILN_GIT_HTTP_USER").to_string(),
            password: password.to_string(),
        },
        host_key: HostKeyCheck::System,
    }
}

fn deploy_key() -> Credentials {
    Credentials::SshKey {
        username: None,
        private_key: services().file("KILN_GIT_SSH_KEY"),
        passphrase: None,
    }
}

fn known_hosts() -> HostKeyCheck {
    HostKeyCheck::KnownHosts(services().file("KILN_GIT_KNOWN_HOSTS"))
}

fn ssh_remote(url_: &str, credentials: Credentials, host_key: HostKeyCheck) -> Remote {
    Remote {
        url: url(url_),
        credentials,
        host_key,
    }
}

/// `ssh-ed25519 AAAA...` of the server, from the good known_hosts.
fn server_key() -> String {
    let text = services().file("KILN_GIT_KNOWN_HOSTS");
    let line = text.lines().next().unwrap();
    line.split_whitespace()
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ssh_host_name() -> String {
    format!("[127.0.0.1]:{}", services().var("KILN_GIT_SSH_PORT"))
}

/// Asserts that the clone checked out `main` of the served repository.
fn assert_cloned_main(s: &Served, c: &Cloned, dest: &str) {
    let commit = match &c.result {
        Ok(commit) => commit,
        Err(e) => panic!("clone failed: {e}"),
    };
    assert_eq!(commit.sha, git(&s.bare, &["rev-parse", "main"]));
    assert_eq!(commit.reference, "refs/heads/main");
    let ws = s.dest(dest);
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), commit.sha);
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(ws.join("README.md")).unwrap(),
        "hello\n"
    );
}

/// Every file of `dir`, recursively, that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
            {
                hits.push(p);
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[test]
fn http_basic_auth_with_the_right_password_clones() {
    let s = Served::new("http-auth-ok");
    let c = s.clone(userpass(&s.http_auth(), &services().password()), None, "ws");
    assert_cloned_main(&s, &c, "ws");
}

#[test]
fn a_wrong_http_password_is_an_auth_error_naming_the_url_but_not_the_password() {
    let s = Served::new("http-auth-wrong");
    let password = "not-the-password-8f3a1c";
    let c = s.clone(userpass(&s.http_auth(), password), None, "ws");
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::Auth { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains(&s.http_auth()), "{shown}");
    assert!(!shown.contains(password), "{shown}");
    assert!(!c.progress.iter().any(|l| l.contains(password)));
}

#[test]
fn http_without_credentials_where_they_are_needed_is_auth_required() {
    let s = Served::new("http-auth-none");
    let c = s.clone(Remote::new(url(&s.http_auth())), None, "ws");
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::AuthRequired { .. }), "{e:?}");
    assert!(e.to_string().contains(&s.http_auth()), "{e}");
}

#[test]
fn anonymous_http_clones_without_credentials() {
    let s = Served::new("http-anon");
    let c = s.clone(Remote::new(url(&s.http_anon())), None, "ws");
    assert_cloned_main(&s, &c, "ws");
    // `git clone`'s layout: the other branch as a remote-tracking ref, the tag.
    let ws = s.dest("ws");
    assert_eq!(
        git(&ws, &["rev-parse", "origin/dev"]),
        git(&s.bare, &["rev-parse", "dev"])
    );
    assert_eq!(
        git(&ws, &["rev-parse", "v1^{commit}"]),
        git(&s.bare, &["rev-parse", "v1^{commit}"])
    );
    assert_eq!(git(&ws, &["remote", "get-url", "origin"]), s.http_anon());
}

#[test]
fn a_branch_a_tag_and_an_unadvertised_sha_are_cloned_over_http() {
    let s = Served::new("http-refs");
    let anon = || Remote::new(url(&s.http_anon()));
    let c = s.clone(anon(), Some("dev"), "dev");
    assert_eq!(c.result.unwrap().reference, "refs/heads/dev");
    let c = s.clone(anon(), Some("v1"), "tag");
    assert_eq!(
        c.result.unwrap().sha,
        git(&s.bare, &["rev-parse", "v1^{commit}"])
    );
    // A commit no ref points to any more (a force-pushed branch): fetched by its id.
    git(&s.work, &["checkout", "-q", "-b", "gone"]);
    write(&s.work, "gone.txt", "gone\n");
    git(&s.work, &["add", "."]);
    git(&s.work, &["commit", "-q", "-m", "gone"]);
    let hidden = git(&s.work, &["rev-parse", "HEAD"]);
    git(&s.work, &["push", "-q", "origin", "gone"]);
    git(&s.work, &["push", "-q", "origin", ":gone"]);
    git(&s.work, &["checkout", "-q", "main"]);
    let c = s.clone(anon(), Some(&hidden), "hidden");
    let commit = c.result.unwrap();
    assert_eq!(commit.sha, hidden);
    assert_eq!(commit.reference, hidden);
    assert!(s.dest("hidden/gone.txt").is_file());
    // The same shallow, in a fresh cache.
    let fresh = Git::new(GitConfig {
        mirror_dir: s.tmp.path().join("mirrors2"),
        mirror_max_bytes: 1 << 30,
        allow_local: false,
    });
    let c = s.clone_using(&fresh, anon(), Some(&hidden), "hidden-shallow", Some(1));
    assert_eq!(c.result.unwrap().sha, hidden);
    assert_eq!(
        git(&s.dest("hidden-shallow"), &["rev-list", "--count", "HEAD"]),
        "1"
    );
}

// ---------------------------------------------------------------------------------------------
// SSH

#[test]
fn ssh_with_the_deploy_key_and_known_hosts_clones() {
    let s = Served::new("ssh-deploy");
    let c = s.clone(
        ssh_remote(&s.ssh(), deploy_key(), known_hosts()),
        None,
        "ws",
    );
    assert_cloned_main(&s, &c, "ws");
}

#[test]
fn ssh_with_the_passphrase_protected_key_and_its_passphrase_clones() {
    let s = Served::new("ssh-protected");
    let key = Credentials::SshKey {
        username: None,
        private_key: services().file("KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED"),
        passphrase: Some(
            services()
                .file("KILN_GIT_SSH_KEY_PASSPHRASE_FILE")
                .trim()
                .to_string(),
        ),
    };
    let c = s.clone(ssh_remote(&s.ssh(), key, known_hosts()), None, "ws");
    assert_cloned_main(&s, &c, "ws");
}

#[test]
fn a_wrong_ssh_key_passphrase_is_an_auth_error() {
    let s = Served::new("ssh-wrong-passphrase");
    let key = Credentials::SshKey {
        username: None,
        private_key: services().file("KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED"),
        passphrase: Some("wrong-passphrase-61d0".into()),
    };
    let c = s.clone(ssh_remote(&s.ssh(), key, known_hosts()), None, "ws");
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::Auth { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains(&s.ssh()), "{shown}");
    assert!(!shown.contains("wrong-passphrase-61d0"), "{shown}");
}

#[test]
fn a_protected_ssh_key_without_its_passphrase_is_an_auth_error() {
    let s = Served::new("ssh-no-passphrase");
    let key = Credentials::SshKey {
        username: None,
        private_key: services().file("KILN_GIT_SSH_KEY_PASSPHRASE_PROTECTED"),
        passphrase: None,
    };
    let c = s.clone(ssh_remote(&s.ssh(), key, known_hosts()), None, "ws");
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::Auth { .. }), "{e:?}");
    assert!(!e.retryable());
}

#[test]
fn an_ssh_key_the_server_does_not_know_is_an_auth_error() {
    let s = Served::new("ssh-unknown-key");
    // The host key is a valid ed25519 private key, but not a deploy key.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = Credentials::SshKey {
        username: None,
        private_key: std::fs::read_to_string(&path).unwrap(),
        passphrase: None,
    };
    let c = s.clone(ssh_remote(&s.ssh(), key, known_hosts()), None, "ws");
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::Auth { .. }), "{e:?}");
}

#[test]
fn ssh_without_a_key_is_auth_required() {
    let s = Served::new("ssh-no-key");
    let c = s.clone(
        ssh_remote(&s.ssh(), Credentials::None, known_hosts()),
        None,
        "ws",
    );
    let e = c.result.unwrap_err();
    assert!(matches!(e, GitError::AuthRequired { .. }), "{e:?}");
}

#[test]
fn the_wrong_known_hosts_is_a_host_key_mismatch() {
    let s = Served::new("ssh-mismatch");
    let wrong = HostKeyCheck::KnownHosts(services().file("KILN_GIT_KNOWN_HOSTS_WRONG"));
    let c = s.clone(ssh_remote(&s.ssh(), deploy_key(), wrong), None, "ws");
    match c.result.unwrap_err() {
        GitError::HostKeyMismatch { host, key } => {
            assert_eq!(host, ssh_host_name());
            assert_eq!(key, server_key());
        }
        e => panic!("expected HostKeyMismatch, got {e:?}"),
    }
    assert!(!s.dest("ws/README.md").exists());
}

#[test]
fn an_empty_known_hosts_is_an_unknown_host_key_naming_the_host_and_the_key_to_pin() {
    let s = Served::new("ssh-unknown-host");
    let empty = HostKeyCheck::KnownHosts(String::new());
    let c = s.clone(ssh_remote(&s.ssh(), deploy_key(), empty), None, "ws");
    let e = c.result.unwrap_err();
    let shown = e.to_string();
    match e {
        GitError::HostKeyUnknown { host, key, hint } => {
            assert_eq!(host, ssh_host_name());
            assert_eq!(key, server_key());
            assert!(hint.contains(&key), "{hint}");
        }
        e => panic!("expected HostKeyUnknown, got {e:?}"),
    }
    assert!(shown.contains(&ssh_host_name()), "{shown}");
}

#[test]
fn a_pinned_host_key_is_accepted() {
    let s = Served::new("ssh-pinned");
    let pinned = HostKeyCheck::Pinned(vec![server_key()]);
    let c = s.clone(ssh_remote(&s.ssh(), deploy_key(), pinned), None, "ws");
    assert_cloned_main(&s, &c, "ws");
    // A pin of another key is a mismatch, not a pass.
    let wrong = services().file("KILN_GIT_KNOWN_HOSTS_WRONG");
    let wrong_key: Vec<&str> = wrong.split_whitespace().skip(1).take(2).collect();
    let pinned = HostKeyCheck::Pinned(vec![wrong_key.join(" ")]);
    let c = s.clone(ssh_remote(&s.ssh(), deploy_key(), pinned), None, "ws2");
    assert!(
        matches!(c.result, Err(GitError::HostKeyMismatch { .. })),
        "{:?}",
        c.result
    );
}

#[test]
fn accept_any_host_key_clones() {
    let s = Served::new("ssh-accept-any");
    let c = s.clone(
        ssh_remote(&s.ssh(), deploy_key(), HostKeyCheck::AcceptAny),
        None,
        "ws",
    );
    assert_cloned_main(&s, &c, "ws");
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn a_missing_ref_is_ref_not_found_over_http_and_ssh() {
    let s = Served::new("missing-ref");
    for (remote, dest) in [
        (Remote::new(url(&s.http_anon())), "http"),
        (ssh_remote(&s.ssh(), deploy_key(), known_hosts()), "ssh"),
    ] {
        for depth in [None, Some(1)] {
            let c = s.clone_with(
                remote.clone(),
                Some("no-such-branch"),
                &format!("{dest}-{depth:?}"),
                depth,
            );
            match c.result.unwrap_err() {
                GitError::RefNotFound {
                    reference, known, ..
                } => {
                    assert_eq!(reference, "no-such-branch");
                    assert!(known.contains("main"), "{known}");
                }
                e => panic!("{dest} depth {depth:?}: expected RefNotFound, got {e:?}"),
            }
        }
        // A SHA the server does not have.
        let c = s.clone(
            remote.clone(),
            Some("0123456789abcdef0123456789abcdef01234567"),
            &format!("{dest}-sha"),
        );
        assert!(
            matches!(c.result, Err(GitError::RefNotFound { .. })),
            "{dest}: {:?}",
            c.result
        );
    }
}

#[test]
fn a_missing_repository_is_repo_not_found_over_http_and_ssh() {
    let s = Served::new("missing-repo");
    let password = services().password();
    let remotes = [
        Remote::new(url(&format!(
            "{}/no-such-repo.git",
            services().var("KILN_GIT_HTTP_ANON_URL")
        ))),
        userpass(
            &format!(
                "{}/no-such-repo.git",
                services().var("KILN_GIT_HTTP_AUTH_URL")
            ),
            &password,
        ),
        ssh_remote(
            &format!("{}/no-such-repo.git", services().var("KILN_GIT_SSH_URL")),
            deploy_key(),
            known_hosts(),
        ),
    ];
    for (i, remote) in remotes.into_iter().enumerate() {
        let shown = remote.url.to_string();
        let c = s.clone(remote, None, &format!("ws{i}"));
        let e = c.result.unwrap_err();
        assert!(
            matches!(e, GitError::RepoNotFound { .. }),
            "{shown}: expected RepoNotFound, got {e:?}"
        );
        assert!(e.to_string().contains(&shown), "{e}");
        assert!(!format!("{e} {e:?}").contains(&password));
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_host_is_reported_quickly_as_unreachable() {
    let s = Served::new("unreachable");
    for (i, u) in [
        format!("http://127.0.0.1:{}/anon/x.git", closed_port()),
        format!("ssh://git@127.0.0.1:{}/x.git", closed_port()),
    ]
    .into_iter()
    .enumerate()
    {
        let started = Instant::now();
        let c = s.clone(
            ssh_remote(&u, deploy_key(), HostKeyCheck::AcceptAny),
            None,
            &format!("ws{i}"),
        );
        let e = c.result.unwrap_err();
        assert!(
            matches!(e, GitError::Unreachable { .. }),
            "{u}: expected Unreachable, got {e:?}"
        );
        assert!(e.retryable());
        assert!(e.to_string().contains(&u), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{u}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_failed_clone_can_be_retried_into_the_same_directory() {
    let s = Served::new("retry");
    let remote = || Remote::new(url(&s.http_anon()));
    let c = s.clone(remote(), Some("not-yet"), "ws");
    assert!(
        matches!(c.result, Err(GitError::RefNotFound { .. })),
        "{:?}",
        c.result
    );
    git(&s.work, &["push", "-q", "origin", "main:not-yet"]);
    let c = s.clone(remote(), Some("not-yet"), "ws");
    assert_eq!(c.result.unwrap().reference, "refs/heads/not-yet");
    // Another remote is still refused there.
    let other = Remote::new(url(&format!(
        "{}/other.git",
        services().var("KILN_GIT_HTTP_ANON_URL")
    )));
    let c = s.clone(other, None, "ws");
    assert!(
        matches!(c.result, Err(GitError::DestinationInUse { .. })),
        "{:?}",
        c.result
    );
}

#[test]
fn a_cancelled_clone_stops_with_cancelled_and_can_be_retried() {
    let s = Served::new("cancel");
    let cancel = Cancel::default();
    cancel.cancel();
    let options = CloneOptions {
        remote: Remote::new(url(&s.http_anon())),
        reference: None,
        dest: s.dest("ws"),
        depth: None,
        submodules: false,
        authorize: &|_| Ok(()),
    };
    let e = s.git.clone_repo(&options, &|_| {}, &cancel).unwrap_err();
    assert!(matches!(e, GitError::Cancelled(_)), "{e:?}");
    let c = s.clone(Remote::new(url(&s.http_anon())), None, "ws");
    assert_cloned_main(&s, &c, "ws");
}

// ---------------------------------------------------------------------------------------------
// Shallow clones, history, mirror

/// `git diff --name-status base...head` in `repo`, as `X\tpath` lines (renames `R\told\tnew`),
/// sorted.
fn git_changes(repo: &Path, base: &str, head: &str) -> Vec<String> {
    let mut v: Vec<String> = git(
        repo,
        &["diff", "--name-status", "-M", &format!("{base}...{head}")],
    )
    .lines()
    .map(|l| {
        let mut f = l.split('\t');
        let status = &f.next().unwrap()[..1];
        std::iter::once(status)
            .chain(f)
            .collect::<Vec<_>>()
            .join("\t")
    })
    .collect();
    v.sort();
    v
}

fn kiln_changes(changes: &[kiln_git::Change]) -> Vec<String> {
    let mut v: Vec<String> = changes
        .iter()
        .map(|c| {
            let k = match c.kind {
                kiln_git::ChangeKind::Added => "A",
                kiln_git::ChangeKind::Modified => "M",
                kiln_git::ChangeKind::Deleted => "D",
                kiln_git::ChangeKind::Renamed => "R",
                kiln_git::ChangeKind::TypeChanged => "T",
            };
            match &c.old_path {
                Some(old) => format!("{k}\t{old}\t{}", c.path),
                None => format!("{k}\t{}", c.path),
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_depth_1_http_clone_has_one_commit_and_changed_files_fetch_the_missing_base() {
    let s = Served::new("shallow");
    // More history on main: a rename, a deletion, an addition.
    git(&s.work, &["mv", "src/b.rs", "src/b2.rs"]);
    git(&s.work, &["rm", "-q", "src/c.rs"]);
    s.push_commit("src/d.rs", "pub fn d() {}\n", "third");
    let head = s.push_commit("README.md", "hello, world\n", "fourth");
    let first = git(&s.work, &["rev-parse", "v1^{commit}"]);
    let dev = git(&s.work, &["rev-parse", "dev"]);

    let remote = userpass(&s.http_auth(), &services().password());
    let c = s.clone_with(remote.clone(), None, "ws", Some(1));
    assert_eq!(c.result.unwrap().sha, head);
    let ws = s.dest("ws");
    assert_eq!(git(&ws, &["rev-list", "--count", "HEAD"]), "1");
    assert!(ws.join(".git/shallow").is_file());
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");

    let cancel = Cancel::default();
    let access = Access {
        remote: Some(&remote),
        authorize: &|_| Ok(()),
        progress: &|_| {},
        cancel: &cancel,
    };
    // A base on another branch, not in the shallow history: the merge base is `first`.
    let changes = s.git.changed_files(&ws, &dev, "HEAD", &access).unwrap();
    assert_eq!(kiln_changes(&changes), git_changes(&s.work, &dev, &head));
    assert!(
        kiln_changes(&changes).contains(&"R\tsrc/b.rs\tsrc/b2.rs".to_string()),
        "{changes:?}"
    );
    // And an ancestor of head, now that the history is complete.
    let changes = s.git.changed_files(&ws, &first, &head, &access).unwrap();
    assert_eq!(kiln_changes(&changes), git_changes(&s.work, &first, &head));
    assert!(!ws.join(".git/shallow").exists());
    assert_eq!(git(&ws, &["rev-list", "--count", "HEAD"]), "4");
    // The fetch went through the mirror with the given credentials, which stayed out of both
    // repositories' files.
    let password = services().password();
    assert_eq!(
        files_containing(&ws.join(".git"), &password),
        Vec::<PathBuf>::new()
    );
    let mirror = &s.git.mirrors().unwrap()[0].path;
    assert_eq!(files_containing(mirror, &password), Vec::<PathBuf>::new());
}

#[test]
fn a_depth_1_ssh_clone_then_changed_files_with_an_ancestor_base() {
    let s = Served::new("shallow-ssh");
    let base = git(&s.work, &["rev-parse", "main"]);
    s.push_commit("src/e.rs", "pub fn e() {}\n", "third");
    let head = s.push_commit("src/a.rs", "pub fn a() {}\n", "fourth");
    let remote = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    let c = s.clone_with(remote.clone(), None, "ws", Some(1));
    assert_eq!(c.result.unwrap().sha, head);
    let ws = s.dest("ws");
    assert_eq!(git(&ws, &["rev-list", "--count", "HEAD"]), "1");
    let cancel = Cancel::default();
    let access = Access {
        remote: Some(&remote),
        authorize: &|_| Ok(()),
        progress: &|_| {},
        cancel: &cancel,
    };
    let changes = s.git.changed_files(&ws, &base, "HEAD", &access).unwrap();
    assert_eq!(kiln_changes(&changes), git_changes(&s.work, &base, &head));
}

#[test]
fn shallow_and_full_clones_share_one_mirror_in_any_order() {
    let s = Served::new("shallow-then-full");
    let remote = || Remote::new(url(&s.http_anon()));
    let c = s.clone_with(remote(), None, "shallow1", Some(1));
    c.result.unwrap();
    assert_eq!(
        git(&s.dest("shallow1"), &["rev-list", "--count", "HEAD"]),
        "1"
    );
    // A new commit, then depth 1 again: the new head, still shallow.
    let head = s.push_commit("new.txt", "new\n", "third");
    let c = s.clone_with(remote(), None, "shallow2", Some(1));
    assert_eq!(c.result.unwrap().sha, head);
    let ws = s.dest("shallow2");
    assert!(ws.join(".git/shallow").is_file());
    assert_eq!(git(&ws, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    git(&ws, &["fsck", "--connectivity-only"]);
    // A full clone from the shallow mirror: complete history, no shallow file.
    let c = s.clone(remote(), None, "full");
    assert_eq!(c.result.unwrap().sha, head);
    let ws = s.dest("full");
    assert!(!ws.join(".git/shallow").exists());
    assert_eq!(git(&ws, &["rev-list", "--count", "HEAD"]), "3");
    assert_eq!(
        git(&ws, &["rev-parse", "origin/dev"]),
        git(&s.bare, &["rev-parse", "dev"])
    );
    git(&ws, &["fsck", "--connectivity-only"]);
    // And a shallow request after that gets the full mirror's history (costs nothing more).
    let c = s.clone_with(remote(), Some("dev"), "dev", Some(1));
    assert_eq!(c.result.unwrap().reference, "refs/heads/dev");
    assert_eq!(s.git.mirrors().unwrap().len(), 1);
}

#[test]
fn an_unadvertised_sha_is_fetched_over_ssh_too() {
    let s = Served::new("ssh-sha");
    git(&s.work, &["checkout", "-q", "-b", "gone"]);
    write(&s.work, "gone.txt", "gone\n");
    git(&s.work, &["add", "."]);
    git(&s.work, &["commit", "-q", "-m", "gone"]);
    let hidden = git(&s.work, &["rev-parse", "HEAD"]);
    git(&s.work, &["push", "-q", "origin", "gone"]);
    git(&s.work, &["push", "-q", "origin", ":gone"]);
    let remote = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    let c = s.clone(remote.clone(), Some(&hidden), "full");
    assert_eq!(c.result.unwrap().sha, hidden);
    let fresh = Git::new(GitConfig {
        mirror_dir: s.tmp.path().join("mirrors2"),
        mirror_max_bytes: 1 << 30,
        allow_local: false,
    });
    let c = s.clone_using(&fresh, remote, Some(&hidden), "shallow", Some(1));
    assert_eq!(c.result.unwrap().sha, hidden);
    assert!(s.dest("shallow/gone.txt").is_file());
}

#[test]
fn a_second_clone_after_a_push_fetches_only_the_new_objects_into_the_mirror() {
    let s = Served::new("mirror-incremental");
    let remote = || Remote::new(url(&s.http_anon()));
    let c = s.clone(remote(), None, "one");
    assert_cloned_main(&s, &c, "one");
    let packs = s.mirror_packs();
    let head = s.push_commit("new.txt", "new\n", "third");
    let c = s.clone(remote(), None, "two");
    let commit = c.result.unwrap();
    assert_eq!(commit.sha, head);
    assert_eq!(commit.message.trim(), "third");
    assert!(s.dest("two/new.txt").is_file());
    assert_eq!(s.mirror_packs(), packs + 1, "one new pack");
    // The new commit, its tree, the new blob and `src/`'s unchanged tree are not resent:
    // the pack holds the commit, the root tree and the blob.
    let received: Vec<&String> = c
        .progress
        .iter()
        .filter(|l| l.starts_with("receiving objects"))
        .collect();
    let last = received.last().expect("transfer progress was reported");
    assert!(last.starts_with("receiving objects: 3/3"), "{received:?}");
}

#[test]
fn concurrent_http_clones_of_one_repository_all_succeed_with_one_mirror() {
    let s = Served::new("concurrent");
    let password = services().password();
    let head = git(&s.bare, &["rev-parse", "main"]);
    let results: Vec<Result<kiln_git::Commit, GitError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                let password = &password;
                scope.spawn(move || {
                    s.clone(userpass(&s.http_auth(), password), None, &format!("ws{i}"))
                        .result
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let c = r.unwrap_or_else(|e| panic!("clone {i}: {e}"));
        assert_eq!(c.sha, head);
        assert_eq!(
            git(&s.dest(&format!("ws{i}")), &["status", "--porcelain"]),
            ""
        );
    }
    assert_eq!(s.git.mirrors().unwrap().len(), 1);
}

#[test]
fn credentials_never_appear_in_the_workspace_the_mirror_or_errors() {
    let s = Served::new("no-secrets");
    let password = services().password();
    let key = services().file("KILN_GIT_SSH_KEY");
    let key_body = key.lines().nth(1).unwrap().to_string();
    let c = s.clone(userpass(&s.http_auth(), &password), None, "http");
    c.result.unwrap();
    let c = s.clone(
        ssh_remote(&s.ssh(), deploy_key(), known_hosts()),
        None,
        "ssh",
    );
    c.result.unwrap();
    let config = std::fs::read_to_string(s.dest("http/.git/config")).unwrap();
    assert!(!config.contains(&password), "{config}");
    assert!(config.contains(&s.http_auth()), "{config}");
    for ws in ["http", "ssh"] {
        let dir = s.dest(ws).join(".git");
        assert_eq!(files_containing(&dir, &password), Vec::<PathBuf>::new());
        assert_eq!(files_containing(&dir, &key_body), Vec::<PathBuf>::new());
    }
    for m in s.git.mirrors().unwrap() {
        assert!(!m.url.contains(&password));
        assert_eq!(files_containing(&m.path, &password), Vec::<PathBuf>::new());
        assert_eq!(files_containing(&m.path, &key_body), Vec::<PathBuf>::new());
    }
    // Errors with these credentials name the URL only.
    let e = s
        .clone(userpass(&s.http_auth(), &password), Some("nope"), "err")
        .result
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&password), "{shown}");
    // A password in the URL itself is refused, and not echoed.
    let with_password = s
        .http_auth()
        .replacen("http://", &format!("http://kiln:{password}@"), 1);
    let e = RemoteUrl::parse(&with_password).unwrap_err();
    assert!(!format!("{e} {e:?}").contains(&password), "{e}");
}

// ---------------------------------------------------------------------------------------------
// commit and push

impl Served {
    /// Clones `remote`'s `main` into `dest`, writes `URL.md` and commits it; returns the commit.
    fn clone_and_commit(&self, remote: Remote, dest: &str, text: &str) -> String {
        self.clone(remote, Some("main"), dest).result.unwrap();
        let ws = self.dest(dest);
        write(&ws, "URL.md", text);
        let c = self
            .git
            .commit_changes(&CommitOptions {
                repo: ws.clone(),
                confine: Some(self.tmp.path().to_path_buf()),
                paths: vec!["URL.md".into()],
                message: "Update URL.md".into(),
                author: Identity::parse("Kiln <kiln@example.com>").unwrap(),
                committer: None,
                allow_empty: false,
            })
            .unwrap();
        assert!(c.created);
        c.commit.sha
    }

    /// Pushes `HEAD` of `dest` to `remote`'s URL (with its credentials), collecting progress.
    fn push_from(
        &self,
        dest: &str,
        remote: &Remote,
        force: bool,
    ) -> (Result<Pushed, GitError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let options = PushOptions {
            repo: self.dest(dest),
            confine: Some(self.tmp.path().to_path_buf()),
            remote: "origin".into(),
            credentials: remote.credentials.clone(),
            host_key: remote.host_key.clone(),
            source: None,
            destination: None,
            force,
            update_tracking: true,
            authorize: &|_| Ok(()),
        };
        let result = self.git.push(
            &options,
            &|l| lines.lock().unwrap().push(l.to_string()),
            &Cancel::default(),
        );
        (result, lines.into_inner().unwrap())
    }

    /// What a fresh `git clone` of the bare repository has at `main`: the commit and URL.md.
    fn fresh_clone_main(&self) -> (String, String) {
        let dir = self.tmp.path().join("fresh");
        let _ = std::fs::remove_dir_all(&dir);
        git(
            self.tmp.path(),
            &[
                "clone",
                "-q",
                self.bare.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        let sha = git(&dir, &["rev-parse", "HEAD"]);
        let url_md = std::fs::read_to_string(dir.join("URL.md")).unwrap_or_default();
        (sha, url_md)
    }

    /// Another client pushes a commit to `main`, so a clone made earlier is behind.
    fn someone_else_pushes(&self) -> String {
        self.push_commit("theirs.txt", "theirs\n", "someone else's commit")
    }
}

#[test]
fn a_commit_is_pushed_over_http_with_basic_auth_and_a_fresh_git_clone_has_it() {
    let s = Served::new("push-http");
    let remote = userpass(&s.http_auth(), &services().password());
    let before = git(&s.bare, &["rev-parse", "main"]);
    let sha = s.clone_and_commit(remote.clone(), "ws", "https://nb.example.com/a\n");
    let (result, progress) = s.push_from("ws", &remote, false);
    let p = result.unwrap_or_else(|e| panic!("push failed: {e}"));
    assert_eq!(p.sha, sha);
    assert_eq!(p.reference, "refs/heads/main");
    assert_eq!(p.previous.as_deref(), Some(before.as_str()));
    assert!(p.updated);
    assert_eq!(p.url, s.http_auth());
    assert!(
        progress.iter().any(|l| l.starts_with("pushed ")),
        "{progress:?}"
    );
    let (fresh, url_md) = s.fresh_clone_main();
    assert_eq!(fresh, sha);
    assert_eq!(url_md, "https://nb.example.com/a\n");
    assert_eq!(
        git(&s.bare, &["log", "-1", "--format=%an <%ae>|%s", "main"]),
        "Kiln <kiln@example.com>|Update URL.md"
    );
    assert_eq!(git(&s.dest("ws"), &["rev-parse", "origin/main"]), sha);
    // The password is nowhere in the repository that pushed.
    let password = services().password();
    assert_eq!(
        files_containing(&s.dest("ws/.git"), &password),
        Vec::<PathBuf>::new()
    );
    assert!(!progress.iter().any(|l| l.contains(&password)));
}

#[test]
fn a_commit_is_pushed_over_ssh_with_the_deploy_key_and_known_hosts() {
    let s = Served::new("push-ssh");
    let remote = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    let sha = s.clone_and_commit(remote.clone(), "ws", "ssh\n");
    let (result, _) = s.push_from("ws", &remote, false);
    let p = result.unwrap_or_else(|e| panic!("push failed: {e}"));
    assert_eq!(p.sha, sha);
    assert_eq!(s.fresh_clone_main(), (sha, "ssh\n".to_string()));
}

#[test]
fn a_push_with_the_wrong_known_hosts_is_refused_before_anything_is_sent() {
    let s = Served::new("push-ssh-hostkey");
    let good = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    s.clone_and_commit(good, "ws", "x\n");
    let before = git(&s.bare, &["rev-parse", "main"]);
    let wrong = ssh_remote(
        &s.ssh(),
        deploy_key(),
        HostKeyCheck::KnownHosts(services().file("KILN_GIT_KNOWN_HOSTS_WRONG")),
    );
    let e = s.push_from("ws", &wrong, false).0.unwrap_err();
    assert!(matches!(e, GitError::HostKeyMismatch { .. }), "{e:?}");
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), before);
}

#[test]
fn a_non_fast_forward_push_is_rejected_over_http_and_ssh_and_force_overwrites() {
    let s = Served::new("push-nonff");
    let http = userpass(&s.http_auth(), &services().password());
    let ssh = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    s.clone_and_commit(http.clone(), "http", "http\n");
    let ours = s.clone_and_commit(ssh.clone(), "ssh", "ssh\n");
    let theirs = s.someone_else_pushes();
    for (dest, remote) in [("http", &http), ("ssh", &ssh)] {
        let e = s.push_from(dest, remote, false).0.unwrap_err();
        assert!(matches!(e, GitError::PushRejected { .. }), "{dest}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("non-fast-forward") && msg.contains("refs/heads/main"),
            "{msg}"
        );
        assert_eq!(git(&s.bare, &["rev-parse", "main"]), theirs);
    }
    let p = s.push_from("ssh", &ssh, true).0.unwrap();
    assert_eq!(p.previous.as_deref(), Some(theirs.as_str()));
    assert_eq!(s.fresh_clone_main().0, ours);
}

#[test]
fn a_server_hook_that_refuses_the_push_is_a_refusal_with_its_message_not_a_rejection() {
    let s = Served::new("push-hook");
    let hook = s.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'GL-HOOK-ERR: branch main is protected; open a merge request' >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&hook).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).unwrap();
    let before = git(&s.bare, &["rev-parse", "main"]);
    let http = userpass(&s.http_auth(), &services().password());
    let ssh = ssh_remote(&s.ssh(), deploy_key(), known_hosts());
    s.clone_and_commit(http.clone(), "http", "x\n");
    s.clone_and_commit(ssh.clone(), "ssh", "x\n");
    for (dest, remote) in [("http", &http), ("ssh", &ssh)] {
        let (result, progress) = s.push_from(dest, remote, false);
        let e = result.unwrap_err();
        assert!(matches!(e, GitError::PushRefused { .. }), "{dest}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("refused the push to `refs/heads/main`"),
            "{msg}"
        );
        assert!(msg.contains("pre-receive hook declined"), "{msg}");
        assert!(msg.contains("branch main is protected"), "{msg}");
        assert!(
            progress.iter().any(|l| l.contains("remote: GL-HOOK-ERR")),
            "{progress:?}"
        );
        assert_eq!(git(&s.bare, &["rev-parse", "main"]), before);
    }
}

#[test]
fn pushing_with_a_wrong_password_or_to_the_read_only_endpoint_is_an_auth_error() {
    let s = Served::new("push-auth");
    let good = userpass(&s.http_auth(), &services().password());
    s.clone_and_commit(good, "ws", "x\n");
    let password = "not-the-password-91c2";
    let wrong = userpass(&s.http_auth(), password);
    let e = s.push_from("ws", &wrong, false).0.unwrap_err();
    assert!(matches!(e, GitError::Auth { .. }), "{e:?}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("may push"), "{shown}");
    assert!(!shown.contains(password), "{shown}");

    // The anonymous endpoint serves clones but not pushes.
    let options = PushOptions {
        repo: s.dest("ws"),
        confine: None,
        remote: s.http_anon(),
        credentials: Credentials::None,
        host_key: HostKeyCheck::System,
        source: None,
        destination: Some("main".into()),
        force: false,
        update_tracking: false,
        authorize: &|_| Ok(()),
    };
    let e = s
        .git
        .push(&options, &|_| {}, &Cancel::default())
        .unwrap_err();
    assert!(
        matches!(e, GitError::Auth { .. } | GitError::AuthRequired { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains(&s.http_anon()), "{e}");
}

#[test]
fn a_push_the_grant_check_refuses_never_reaches_the_server() {
    let s = Served::new("push-denied");
    let good = userpass(&s.http_auth(), &services().password());
    s.clone_and_commit(good.clone(), "ws", "x\n");
    let log = PathBuf::from(services().var("KILN_GIT_REPOS")).join("../http/logs/access.log");
    let requests = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches(&s.name)
            .count()
    };
    let before = requests();
    assert!(before > 0, "the clone is in {}", log.display());
    let deny = |u: &RemoteUrl| Err(GitError::Denied(format!("`{u}` is not granted")));
    let options = PushOptions {
        repo: s.dest("ws"),
        confine: None,
        remote: "origin".into(),
        credentials: good.credentials.clone(),
        host_key: HostKeyCheck::System,
        source: None,
        destination: None,
        force: false,
        update_tracking: false,
        authorize: &deny,
    };
    let e = s
        .git
        .push(&options, &|_| {}, &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, GitError::Denied(_)), "{e:?}");
    assert_eq!(requests(), before, "the server saw a request");
}
