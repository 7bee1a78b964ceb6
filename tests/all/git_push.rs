//! The `git-push` built-in through `kiln run`, against the real git servers of
//! `scripts/services.sh`: clone, change a file, commit and push it back (seed 003's `URL.md`),
//! then check the result with the git CLI from a fresh clone of the served repository.

use std::path::Path;

use crate::git::{file, git, http_port, served, var};
use crate::support::{kiln_run, step, text};

/// What a fresh `git clone` of `bare` has on `main`: its head, `URL.md`, and the head's author
/// and subject.
fn fresh_clone(bare: &Path, dir: &Path) -> (String, String, String) {
    git(
        Path::new("/"),
        &[
            "clone",
            "-q",
            bare.to_str().expect("utf-8"),
            dir.to_str().expect("utf-8"),
        ],
    );
    (
        git(dir, &["rev-parse", "HEAD"]),
        std::fs::read_to_string(dir.join("URL.md")).unwrap_or_default(),
        git(dir, &["log", "-1", "--format=%an <%ae>|%s"]),
    )
}

/// Clone over SSH with the deploy key, write `URL.md`, commit and push it with `git-push`.
fn ssh_pipeline(name: &str, push_net: &str) -> String {
    format!(
        r#"
name: url-md
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [DEPLOY_KEY, KNOWN_HOSTS]
    with:
      url: {url}/{name}
      ref: main
      path: repo
      auth: {{ ssh-key: DEPLOY_KEY }}
      known-hosts: KNOWN_HOSTS
  - id: url
    uses: write-file
    needs: [src]
    allow: {{ workspace: write }}
    with:
      path: repo/URL.md
      content: "https://notebooks.example.com/{name}\n"
  - id: publish
    uses: git-push
    needs: [url]
    allow: {{ workspace: write, net: ["{push_net}"] }}
    secrets: [DEPLOY_KEY, KNOWN_HOSTS]
    retry: {{ attempts: 3, backoff: 1s }}
    with:
      path: repo
      files: [URL.md]
      message: "Update URL.md for ${{{{ steps.src.outputs.sha }}}}"
      author: "Notebook Bot <bot@example.com>"
      auth: {{ ssh-key: DEPLOY_KEY }}
      known-hosts: KNOWN_HOSTS
"#,
        port = var("KILN_GIT_SSH_PORT"),
        url = var("KILN_GIT_SSH_URL"),
    )
}

fn ssh_secrets() -> [(&'static str, String); 2] {
    [
        ("DEPLOY_KEY", file("KILN_GIT_SSH_KEY")),
        ("KNOWN_HOSTS", file("KILN_GIT_KNOWN_HOSTS")),
    ]
}

fn secrets_ref<'a>(s: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    s.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn a_pipeline_clones_over_ssh_commits_url_md_and_pushes_it_back_with_the_deploy_key() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-ssh", home.path());
    let push_net = format!("127.0.0.1:{}", var("KILN_GIT_SSH_PORT"));
    let secrets = ssh_secrets();
    let (out, run) = kiln_run(
        home.path(),
        &ssh_pipeline(&s.name, &push_net),
        &secrets_ref(&secrets),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let publish = step(&run, "publish");
    let outputs = &publish["outputs"];
    assert_eq!(outputs["pushed"], true);
    assert_eq!(outputs["committed"], true);
    assert_eq!(outputs["ref"], "refs/heads/main");
    assert_eq!(outputs["previous"], s.sha.as_str());
    let pushed = outputs["sha"].as_str().expect("sha").to_string();

    let (head, url_md, log) = fresh_clone(&s.bare, &home.path().join("fresh"));
    assert_eq!(head, pushed);
    assert_eq!(
        url_md,
        format!("https://notebooks.example.com/{}\n", s.name)
    );
    assert_eq!(
        log,
        format!("Notebook Bot <bot@example.com>|Update URL.md for {}", s.sha)
    );
    let fresh = home.path().join("fresh");
    assert_eq!(git(&fresh, &["rev-parse", "HEAD~1"]), s.sha);
    assert_eq!(
        git(&fresh, &["show", "--name-only", "--format=", "HEAD"]),
        "URL.md"
    );
    // The key stays on the host.
    let key = file("KILN_GIT_SSH_KEY");
    let key_line = key.lines().nth(1).expect("key body");
    for t in [text(&out.stdout), text(&out.stderr)] {
        assert!(!t.contains(key_line));
    }

    // A second run writes the same URL.md: nothing to commit, and the push is a no-op.
    let (out, run) = kiln_run(
        home.path(),
        &ssh_pipeline(&s.name, &push_net),
        &secrets_ref(&secrets),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outputs = &step(&run, "publish")["outputs"];
    assert_eq!(outputs["committed"], false);
    assert_eq!(outputs["pushed"], false);
    assert_eq!(outputs["sha"], pushed.as_str());
    assert!(
        text(&out.stderr).contains("nothing to commit in repo"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_pipeline_pushes_over_https_with_a_password_secret_to_a_new_branch() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-https", home.path());
    let password = file("KILN_GIT_HTTP_PASSWORD_FILE").trim().to_string();
    let pipeline = format!(
        r#"
name: push-https
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [GIT_PASSWORD]
    with:
      url: {url}/{name}
      auth: {{ username: kiln, password: GIT_PASSWORD }}
  - id: notes
    uses: write-file
    needs: [src]
    allow: {{ workspace: write }}
    with: {{ path: docs/notes.md, content: "notes\n" }}
  - id: publish
    uses: git-push
    needs: [notes]
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [GIT_PASSWORD]
    with:
      message: "Add notes"
      branch: kiln/notes
      auth: {{ username: kiln, password: GIT_PASSWORD }}
"#,
        port = http_port(),
        url = var("KILN_GIT_HTTP_AUTH_URL"),
        name = s.name
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[("GIT_PASSWORD", &password)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outputs = &step(&run, "publish")["outputs"];
    assert_eq!(outputs["ref"], "refs/heads/kiln/notes");
    assert_eq!(outputs["previous"], serde_json::Value::Null);
    let sha = outputs["sha"].as_str().expect("sha");
    assert_eq!(git(&s.bare, &["rev-parse", "kiln/notes"]), sha);
    assert_eq!(
        git(&s.bare, &["rev-parse", "main"]),
        s.sha,
        "main is untouched"
    );
    assert_eq!(
        git(
            &s.bare,
            &["show", "--name-only", "--format=%an|%s", "kiln/notes"]
        ),
        "Kiln|Add notes\n\ndocs/notes.md"
    );
    assert!(!text(&out.stdout).contains(&password));
    assert!(!text(&out.stderr).contains(&password));
}

#[test]
fn a_non_fast_forward_push_fails_the_step_as_rejected_and_is_not_retried() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-nonff", home.path());
    let push_net = format!("127.0.0.1:{}", var("KILN_GIT_SSH_PORT"));
    // Someone else has pushed to `main`; the pipeline checks out the commit before theirs
    // (as a run triggered by the earlier push would) and pushes on top of it.
    let other = home.path().join("other");
    git(
        Path::new("/"),
        &[
            "clone",
            "-q",
            s.bare.to_str().expect("utf-8"),
            other.to_str().expect("utf-8"),
        ],
    );
    std::fs::write(other.join("theirs.txt"), "theirs\n").expect("write");
    git(&other, &["add", "."]);
    git(&other, &["commit", "-q", "-m", "theirs"]);
    git(&other, &["push", "-q", "origin", "main"]);
    let theirs = git(&other, &["rev-parse", "HEAD"]);
    let pipeline =
        ssh_pipeline(&s.name, &push_net).replace("ref: main", &format!("ref: {}", s.sha));
    let pipeline = pipeline.replace(
        "      path: repo\n      files:",
        "      path: repo\n      branch: main\n      files:",
    );
    let secrets = ssh_secrets();
    let (out, run) = kiln_run(home.path(), &pipeline, &secrets_ref(&secrets));
    assert!(!out.status.success());
    let publish = step(&run, "publish");
    let error = publish["error"].as_str().unwrap_or_default();
    assert!(error.contains("non-fast-forward"), "{error}");
    assert!(error.contains("`refs/heads/main`"), "{error}");
    assert!(error.contains("force: true"), "{error}");
    assert_eq!(publish["attempts"], 1, "a rejected push is not retried");
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), theirs);
}

#[test]
fn a_push_to_a_remote_missing_from_allow_net_is_denied_with_the_grant_to_add() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-grant", home.path());
    let secrets = ssh_secrets();
    let (out, run) = kiln_run(
        home.path(),
        &ssh_pipeline(&s.name, "127.0.0.1:1"),
        &secrets_ref(&secrets),
    );
    assert!(!out.status.success());
    let publish = step(&run, "publish");
    let error = publish["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "add `allow: {{ net: [\"127.0.0.1:{}\"] }}`",
            var("KILN_GIT_SSH_PORT")
        )),
        "{error}"
    );
    assert_eq!(publish["attempts"], 1, "a denial is not retried");
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), s.sha);
}

#[test]
fn wrong_push_credentials_fail_naming_the_url_and_not_the_password() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-wrongpw", home.path());
    let pipeline = format!(
        r#"
name: push-wrong
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    with:
      url: {anon}/{name}
  - id: publish
    uses: git-push
    needs: [src]
    allow: {{ workspace: write, net: ["127.0.0.1:{port}"] }}
    secrets: [GIT_PASSWORD]
    with:
      message: "empty"
      allow-empty: true
      remote: {auth}/{name}
      branch: main
      auth: {{ username: kiln, password: GIT_PASSWORD }}
"#,
        port = http_port(),
        anon = var("KILN_GIT_HTTP_ANON_URL"),
        auth = var("KILN_GIT_HTTP_AUTH_URL"),
        name = s.name
    );
    let wrong = "not-the-password-7d1e";
    let (out, run) = kiln_run(home.path(), &pipeline, &[("GIT_PASSWORD", wrong)]);
    assert!(!out.status.success());
    let publish = step(&run, "publish");
    let error = publish["error"].as_str().unwrap_or_default();
    assert!(error.contains("authentication to"), "{error}");
    assert!(error.contains(&s.name), "{error}");
    assert!(error.contains("may push"), "{error}");
    assert_eq!(publish["attempts"], 1);
    assert!(!text(&out.stdout).contains(wrong));
    assert!(!text(&out.stderr).contains(wrong));
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), s.sha);
}

#[test]
fn a_server_hook_refusing_the_push_fails_the_step_with_the_servers_message() {
    let home = tempfile::tempdir().expect("tmp");
    let s = served("push-hook", home.path());
    let hook = s.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'URL.md may only change through a merge request' >&2\nexit 1\n",
    )
    .expect("hook");
    let mut perms = std::fs::metadata(&hook).expect("hook").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).expect("chmod");
    let push_net = format!("127.0.0.1:{}", var("KILN_GIT_SSH_PORT"));
    let secrets = ssh_secrets();
    let (out, run) = kiln_run(
        home.path(),
        &ssh_pipeline(&s.name, &push_net),
        &secrets_ref(&secrets),
    );
    assert!(!out.status.success());
    let publish = step(&run, "publish");
    let error = publish["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused the push to `refs/heads/main`"),
        "{error}"
    );
    assert!(error.contains("pre-receive hook declined"), "{error}");
    assert!(
        error.contains("URL.md may only change through a merge request"),
        "{error}"
    );
    assert_eq!(publish["attempts"], 1);
    assert_eq!(git(&s.bare, &["rev-parse", "main"]), s.sha);
}
