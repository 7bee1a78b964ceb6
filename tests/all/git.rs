//! The `clone` built-in through `kiln run`, against the real git servers of
//! `scripts/services.sh` (smart HTTP with basic auth, sshd with a deploy key) and `file://`
//! repositories: credentials come from secrets by name, remotes must be granted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{kiln, kiln_run, services_env, step, text};

/// The variables of `scripts/services.sh env git`, with the servers running.
pub(crate) fn services() -> &'static HashMap<String, String> {
    static SERVICES: OnceLock<HashMap<String, String>> = OnceLock::new();
    SERVICES.get_or_init(|| services_env("git").into_iter().collect())
}

pub(crate) fn var(name: &str) -> String {
    services()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from the services' env.json"))
        .clone()
}

pub(crate) fn file(name: &str) -> String {
    std::fs::read_to_string(var(name)).expect("a services file")
}

pub(crate) use crate::support::git;

/// A bare repository on the servers with one commit on `main`; removed on drop.
pub(crate) struct Served {
    pub(crate) name: String,
    pub(crate) bare: PathBuf,
    pub(crate) sha: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bare);
    }
}

pub(crate) fn served(test: &str, dir: &Path) -> Served {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "e2e-{test}-{}-{}.git",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let bare = PathBuf::from(var("KILN_GIT_REPOS")).join(&name);
    let work = dir.join("origin-work");
    std::fs::create_dir_all(&work).expect("work dir");
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("app.txt"), "the app\n").expect("write");
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "initial import"]);
    git(
        Path::new("/"),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            bare.to_str().expect("utf-8"),
        ],
    );
    git(
        &work,
        &["push", "-q", bare.to_str().expect("utf-8"), "main"],
    );
    let sha = git(&work, &["rev-parse", "HEAD"]);
    Served { name, bare, sha }
}

pub(crate) fn http_port() -> String {
    var("KILN_GIT_HTTP_URL")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_pipeline_clones_over_https_with_a_password_secret_and_later_steps_read_the_commit() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("https", home.path());
    let password = file("KILN_GIT_HTTP_PASSWORD_FILE").trim().to_string();
    let pipeline = format!(
        r#"
name: clone-http
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [GIT_PASSWORD]
    with:
      url: {url}/{name}
      ref: main
      path: src
      auth: {{ username: kiln, password: GIT_PASSWORD }}
  - id: show
    uses: echo
    needs: [src]
    with:
      message: "built ${{{{ steps.src.outputs.sha }}}} by ${{{{ steps.src.outputs.author }}}}"
"#,
        port = http_port(),
        url = var("KILN_GIT_HTTP_AUTH_URL"),
        name = s.name
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[("GIT_PASSWORD", &password)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "src")["outputs"]["sha"], s.sha.as_str());
    assert_eq!(step(&run, "src")["outputs"]["ref"], "refs/heads/main");
    assert_eq!(
        step(&run, "show")["outputs"]["message"],
        format!("built {} by Ada <ada@example.com>", s.sha).as_str()
    );
    let ws = home.path().join("ws/src");
    assert_eq!(
        std::fs::read_to_string(ws.join("app.txt")).expect("cloned file"),
        "the app\n"
    );
    // The password stays on the host: not in the clone's config, not in the output.
    let config = std::fs::read_to_string(ws.join(".git/config")).expect("config");
    assert!(!config.contains(&password), "{config}");
    assert!(!text(&out.stdout).contains(&password));
    assert!(!text(&out.stderr).contains(&password));
}

#[test]
fn a_pipeline_clones_over_ssh_with_a_deploy_key_and_a_known_hosts_secret() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("ssh", home.path());
    let pipeline = format!(
        r#"
name: clone-ssh
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [DEPLOY_KEY, KNOWN_HOSTS]
    with:
      url: {url}/{name}
      auth: {{ ssh-key: DEPLOY_KEY }}
      known-hosts: KNOWN_HOSTS
"#,
        port = var("KILN_GIT_SSH_PORT"),
        url = var("KILN_GIT_SSH_URL"),
        name = s.name
    );
    let key = file("KILN_GIT_SSH_KEY");
    let known = file("KILN_GIT_KNOWN_HOSTS");
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[("DEPLOY_KEY", &key), ("KNOWN_HOSTS", &known)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "src")["outputs"]["sha"], s.sha.as_str());
    assert!(home.path().join("ws/app.txt").is_file());

    // The same with the wrong known_hosts: refused, with a message about the host key.
    let home = tempfile::tempdir().expect("tmp");
    let wrong = file("KILN_GIT_KNOWN_HOSTS_WRONG");
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[("DEPLOY_KEY", &key), ("KNOWN_HOSTS", &wrong)],
    );
    assert!(!out.status.success());
    let error = step(&run, "src")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("does not match the known key"), "{error}");
    assert_eq!(
        step(&run, "src")["attempts"],
        1,
        "trust problems are not retried"
    );
}

#[test]
fn a_remote_missing_from_allow_net_is_denied_with_the_grant_to_add() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("grant", home.path());
    let pipeline = format!(
        r#"
name: clone-denied
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:1"] }}
    retry: {{ attempts: 3, backoff: 1s }}
    with:
      url: {url}/{name}
"#,
        url = var("KILN_GIT_HTTP_ANON_URL"),
        name = s.name
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(!out.status.success());
    let src = step(&run, "src");
    let error = src["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("net: [\"127.0.0.1:{}\"]", http_port())),
        "{error}"
    );
    assert_eq!(src["attempts"], 1, "a denial is not retried");
}

#[test]
fn credentials_must_name_a_secret_the_step_lists() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("secret", home.path());
    let pipeline = format!(
        r#"
name: clone-secret
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [LISTED]
    with:
      url: {url}/{name}
      auth: {{ token: NOT_LISTED }}
"#,
        port = http_port(),
        url = var("KILN_GIT_HTTP_AUTH_URL"),
        name = s.name
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[("LISTED", "x")]);
    assert!(!out.status.success());
    let error = step(&run, "src")["error"].as_str().unwrap_or_default();
    assert!(error.contains("secret `NOT_LISTED`"), "{error}");
}

#[test]
fn a_wrong_password_fails_naming_the_url_and_not_the_password() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("wrongpw", home.path());
    let pipeline = format!(
        r#"
name: clone-wrong
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [GIT_PASSWORD]
    with:
      url: {url}/{name}
      auth: {{ username: kiln, password: GIT_PASSWORD }}
"#,
        port = http_port(),
        url = var("KILN_GIT_HTTP_AUTH_URL"),
        name = s.name
    );
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[("GIT_PASSWORD", "not-the-password")],
    );
    assert!(!out.status.success());
    let error = step(&run, "src")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("authentication to") && error.contains(&s.name),
        "{error}"
    );
    assert!(!text(&out.stdout).contains("not-the-password"));
}

#[test]
fn a_clone_path_outside_the_workspace_is_denied() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("escape", home.path());
    let pipeline = format!(
        r#"
name: clone-escape
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write }}
    with:
      url: file://{bare}
      path: ../outside
"#,
        bare = s.bare.display()
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(!out.status.success());
    let error = step(&run, "src")["error"].as_str().unwrap_or_default();
    assert!(error.contains("leaves the workspace"), "{error}");
    assert!(!home.path().join("outside").exists());
}

#[test]
fn local_repositories_clone_through_the_mirror_cache_that_kiln_cache_can_clear() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("local", home.path());
    let pipeline = format!(
        r#"
name: clone-local
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write }}
    with:
      url: file://{bare}
"#,
        bare = s.bare.display()
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "src")["outputs"]["sha"], s.sha.as_str());

    let ls = kiln(home.path())
        .args(["cache", "ls"])
        .output()
        .expect("kiln cache ls");
    let listing = text(&ls.stdout);
    assert!(listing.contains("git mirrors: 1"), "{listing}");
    assert!(listing.contains(&s.name), "{listing}");
    let clear = kiln(home.path())
        .args(["cache", "clear", "git"])
        .output()
        .expect("kiln cache clear");
    assert!(clear.status.success(), "{}", text(&clear.stderr));
    let ls = kiln(home.path())
        .args(["cache", "ls"])
        .output()
        .expect("kiln cache ls");
    assert!(
        text(&ls.stdout).contains("git mirrors: 0"),
        "{}",
        text(&ls.stdout)
    );
}
