//! GitHub and GitLab webhooks: real GitHub example payloads (`@octokit/webhooks-examples`)
//! signed by GitHub's own code (`@octokit/webhooks-methods`); repositories on the project's
//! git server; `.kiln/*.yaml` matched by their `on:`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{GITHUB_SECRET, GITLAB_TOKEN, Resp, Server, http, tool};
use crate::support::services_env;

pub fn example(event: &str, action: &str) -> Value {
    let (ok, out, err) = tool(&["example", event, action], "");
    assert!(ok, "{err}");
    serde_json::from_str(&out).expect("example JSON")
}

pub fn sign(secret: &str, body: &str) -> String {
    let (ok, out, err) = tool(&["sign", secret], body);
    assert!(ok, "{err}");
    out.trim().to_owned()
}

pub fn deliver(
    server: &Server,
    event: &str,
    delivery: &str,
    body: &str,
    signature: Option<&str>,
) -> Resp {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-github-event", event),
        ("x-github-delivery", delivery),
    ];
    if let Some(s) = signature {
        headers.push(("x-hub-signature-256", s));
    }
    http(
        &server.addr,
        "POST",
        "/v1/webhooks/github",
        &headers,
        body.as_bytes(),
    )
}

#[test]
fn github_deliveries_with_a_tampered_body_or_a_wrong_or_missing_signature_are_refused() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let body = example("push", "-").to_string();
    let good = sign(GITHUB_SECRET, &body);
    let tampered = body.replacen("refs/tags/simple-tag", "refs/tags/other-tag", 1);
    assert_ne!(tampered, body);
    let r = deliver(&server, "push", "d-1", &tampered, Some(&good));
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "bad_signature");
    let wrong = sign("not the secret", &body);
    assert_eq!(
        deliver(&server, "push", "d-2", &body, Some(&wrong)).status,
        401
    );
    assert_eq!(deliver(&server, "push", "d-3", &body, None).status, 401);
    assert_eq!(
        deliver(&server, "push", "d-4", &body, Some("sha256=00")).status,
        401
    );
    let ping = example("ping", "-").to_string();
    let r = deliver(
        &server,
        "ping",
        "d-5",
        &ping,
        Some(&sign(GITHUB_SECRET, &ping)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["pong"], true);
    let m = http(&server.addr, "GET", "/metrics", &[], b"").body;
    assert!(
        m.contains("kiln_webhook_deliveries_total{result=\"rejected\"} 4"),
        "{m}"
    );
    assert_eq!(
        server.get("/v1/runs").json()["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

use crate::support::git;

/// A repository on the git server with `.kiln/` pipelines: `build` (push to `main` touching
/// `apps/**`), `docs` (push touching `docs/**`), `release` (tags `v*`). Two commits: the
/// second changes `apps/web/main.txt`. Returns (bare dir, clone URL, first sha, second sha).
struct Repo {
    bare: PathBuf,
    url: String,
    first: String,
    second: String,
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bare);
    }
}

fn repo_with_pipelines(home: &Path, test: &str) -> Repo {
    let vars = services_env("git");
    let name = format!("serve-{test}-{}.git", std::process::id());
    let bare = PathBuf::from(&vars["KILN_GIT_REPOS"]).join(&name);
    let url = format!("{}/{name}", vars["KILN_GIT_HTTP_ANON_URL"]);
    let endpoint = vars["KILN_GIT_HTTP_URL"]
        .trim_start_matches("http://")
        .to_owned();
    let work = home.join("work");
    std::fs::create_dir_all(work.join(".kiln")).expect("mkdir");
    std::fs::create_dir_all(work.join("apps/web")).expect("mkdir");
    std::fs::write(
        work.join(".kiln/build.yaml"),
        format!(
            "name: build\non:\n  push: {{ branches: [main], paths: ['apps/**'] }}\nsteps:\n  - id: src\n    uses: clone\n    allow: {{ workspace: write, net: ['{endpoint}'] }}\n    with: {{ url: '${{{{ git.url }}}}', ref: '${{{{ git.sha }}}}', path: src }}\n  - id: show\n    uses: echo\n    needs: [src]\n    with: {{ message: 'built ${{{{ steps.src.outputs.sha }}}} of ${{{{ git.branch }}}}' }}\n"
        ),
    )
    .expect("write");
    std::fs::write(
        work.join(".kiln/docs.yaml"),
        "name: docs\non:\n  push: { paths: ['docs/**'] }\nsteps:\n  - id: a\n    uses: echo\n    with: { message: docs }\n",
    )
    .expect("write");
    std::fs::write(
        work.join(".kiln/release.yaml"),
        "name: release\non:\n  push: { tags: ['v*'] }\nsteps:\n  - id: a\n    uses: echo\n    with: { message: release }\n",
    )
    .expect("write");
    std::fs::write(work.join("apps/web/main.txt"), "one\n").expect("write");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("apps/web/main.txt"), "two\n").expect("write");
    git(&work, &["commit", "-q", "-am", "change the web app"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
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
    Repo {
        bare,
        url,
        first,
        second,
    }
}

fn wait_event(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let e = server.get(&format!("/v1/events/{id}")).json();
        if e["state"] != "pending" {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "event not processed: {e:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_github_push_starts_the_pipelines_whose_on_matches_and_a_replayed_delivery_starts_nothing() {
    let home = tempfile::tempdir().expect("tmp");
    let repo = repo_with_pipelines(home.path(), "push");
    let server = Server::start(home.path(), "a", &[]);
    let mut payload = example("push", "-");
    payload["ref"] = json!("refs/heads/main");
    payload["before"] = json!(repo.first);
    payload["after"] = json!(repo.second);
    payload["created"] = json!(false);
    payload["repository"]["clone_url"] = json!(repo.url);
    let body = payload.to_string();
    let signature = sign(GITHUB_SECRET, &body);
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let r = deliver(&server, "push", delivery, &body, Some(&signature));
    assert_eq!(r.status, 202, "{}", r.body);
    let event_id = r.json()["event_id"].as_str().expect("event id").to_owned();

    let event = wait_event(&server, &event_id);
    assert_eq!(event["state"], "done", "{event:#}");
    let runs = event["runs"].as_array().expect("runs").clone();
    assert_eq!(runs.len(), 1, "only `build` matches: {event:#}");
    let skipped = event["skipped"].to_string();
    assert!(
        skipped.contains("no changed file matches `on.push.paths`"),
        "{skipped}"
    );
    assert!(skipped.contains("lists only `tags`"), "{skipped}");

    let run = server.wait_finished(runs[0].as_str().expect("id"), Duration::from_secs(120));
    assert_eq!(run["state"], "succeeded", "{run:#}\n{}", server.log());
    assert_eq!(run["pipeline"], "build");
    assert_eq!(run["pipeline_path"], ".kiln/build.yaml");
    assert_eq!(run["trigger"], "github");
    assert_eq!(run["sha"], repo.second.as_str());
    let show = &run["steps"][1];
    assert_eq!(
        show["outputs"]["message"],
        format!("built {} of main", repo.second).as_str()
    );

    // GitHub redelivers: same delivery id, same body. No second event, no second run.
    let again = deliver(&server, "push", delivery, &body, Some(&signature));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["event_id"], event_id.as_str());
    std::thread::sleep(Duration::from_millis(700));
    let all = server.get(&format!("/v1/runs?repo={}", repo.url)).json();
    assert_eq!(all["runs"].as_array().map(Vec::len), Some(1), "{all:#}");

    // A push of a tag starts `release` (tags `v*`) and `docs` (path filters are not evaluated
    // for tags, as on GitHub), not `build` (branches only).
    let mut tag = payload.clone();
    tag["ref"] = json!("refs/tags/v1.0");
    tag["before"] = json!("0000000000000000000000000000000000000000");
    let body = tag.to_string();
    let r = deliver(
        &server,
        "push",
        "tag-delivery",
        &body,
        Some(&sign(GITHUB_SECRET, &body)),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let event = wait_event(&server, r.json()["event_id"].as_str().expect("id"));
    assert!(
        event["skipped"]
            .to_string()
            .contains("lists only `branches`"),
        "{event:#}"
    );
    let mut names: Vec<String> = event["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|id| {
            let run =
                server.wait_finished(id.as_str().unwrap_or_default(), Duration::from_secs(60));
            assert_eq!(run["state"], "succeeded", "{run:#}");
            run["pipeline"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["docs", "release"]);
}

#[test]
fn a_github_pull_request_runs_the_pipelines_for_its_target_branch() {
    let home = tempfile::tempdir().expect("tmp");
    let repo = repo_with_pipelines(home.path(), "pr");
    let server = Server::start(home.path(), "a", &[]);
    let work = home.path().join("work");
    std::fs::write(
        work.join(".kiln/pr.yaml"),
        "name: pr\non:\n  pull_request: { branches: [main], paths: ['apps/**'] }\nsteps:\n  - id: a\n    uses: echo\n    with: { message: 'pr ${{ git.ref }}' }\n",
    )
    .expect("write");
    git(&work, &["checkout", "-q", "-b", "feature"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "pr pipeline"]);
    std::fs::write(work.join("apps/web/main.txt"), "three\n").expect("write");
    git(&work, &["commit", "-q", "-am", "feature work"]);
    let head = git(&work, &["rev-parse", "HEAD"]);
    git(
        &work,
        &["push", "-q", repo.bare.to_str().expect("utf-8"), "feature"],
    );

    let mut payload = example("pull_request", "opened");
    payload["pull_request"]["head"]["sha"] = json!(head);
    payload["pull_request"]["base"]["ref"] = json!("main");
    payload["pull_request"]["base"]["sha"] = json!(repo.second);
    payload["repository"]["clone_url"] = json!(repo.url);
    let number = payload["number"].as_u64().expect("number");
    let body = payload.to_string();
    let r = deliver(
        &server,
        "pull_request",
        "pr-1",
        &body,
        Some(&sign(GITHUB_SECRET, &body)),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let event = wait_event(&server, r.json()["event_id"].as_str().expect("id"));
    assert_eq!(event["runs"].as_array().map(Vec::len), Some(1), "{event:#}");
    let run = server.wait_finished(
        event["runs"][0].as_str().expect("id"),
        Duration::from_secs(60),
    );
    assert_eq!(run["pipeline"], "pr");
    assert_eq!(
        run["steps"][0]["outputs"]["message"],
        format!("pr refs/pull/{number}/head").as_str()
    );
    // A closed pull request starts nothing.
    let closed = example("pull_request", "closed").to_string();
    let r = deliver(
        &server,
        "pull_request",
        "pr-2",
        &closed,
        Some(&sign(GITHUB_SECRET, &closed)),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["ignored"].is_string());
}

#[test]
fn gitlab_hooks_need_the_token_and_a_repeated_idempotency_key_starts_nothing_new() {
    let home = tempfile::tempdir().expect("tmp");
    let repo = repo_with_pipelines(home.path(), "gitlab");
    let server = Server::start(home.path(), "a", &[]);
    // The shape of GitLab's "Push Hook" (docs.gitlab.com, webhook events).
    let body = json!({
        "object_kind": "push", "event_name": "push",
        "before": repo.first, "after": repo.second, "checkout_sha": repo.second,
        "ref": "refs/heads/main", "user_name": "Ada",
        "project": { "id": 15, "name": "app", "path_with_namespace": "team/app", "git_http_url": repo.url },
        "commits": [], "total_commits_count": 1
    })
    .to_string();
    let post = |token: Option<&str>, key: &str| {
        let mut headers = vec![("x-gitlab-event", "Push Hook"), ("idempotency-key", key)];
        if let Some(t) = token {
            headers.push(("x-gitlab-token", t));
        }
        http(
            &server.addr,
            "POST",
            "/v1/webhooks/gitlab",
            &headers,
            body.as_bytes(),
        )
    };
    assert_eq!(post(None, "k1").status, 401);
    assert_eq!(post(Some("wrong-token"), "k1").status, 401);
    assert_eq!(post(Some(&GITLAB_TOKEN[..5]), "k1").status, 401);
    let r = post(Some(GITLAB_TOKEN), "k1");
    assert_eq!(r.status, 202, "{}", r.body);
    let event = wait_event(&server, r.json()["event_id"].as_str().expect("id"));
    assert_eq!(event["runs"].as_array().map(Vec::len), Some(1), "{event:#}");
    let again = post(Some(GITLAB_TOKEN), "k1");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    let run = server.wait_finished(
        event["runs"][0].as_str().expect("id"),
        Duration::from_secs(120),
    );
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["trigger"], "gitlab");
}
