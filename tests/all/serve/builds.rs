//! Seed 004's build request (`POST /v1/builds`): clone -> BuildKit build -> push, against the
//! project's git server, dockerd and registry; the pushed image is read back from the registry.
//! And concurrency groups: a newer run of a group can cancel the older one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Server, http, slow_step};
use crate::support::services_env;

use crate::support::git;

struct Bare(PathBuf);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_seed_004_build_request_clones_builds_and_pushes_the_image() {
    let home = tempfile::tempdir().expect("tmp");
    let git_vars = services_env("git");
    let docker = services_env("docker");
    let registry = services_env("registry")["KILN_REGISTRY"].clone();
    let name = format!("serve-build-{}.git", std::process::id());
    let bare = Bare(PathBuf::from(&git_vars["KILN_GIT_REPOS"]).join(&name));
    let work = home.path().join("work");
    std::fs::create_dir_all(work.join("docker")).expect("mkdir");
    std::fs::write(
        work.join("docker/app.Dockerfile"),
        format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n",
            docker["KILN_BASE_IMAGE"]
        ),
    )
    .expect("write");
    // Unique content, so BuildKit's cache from an earlier test run cannot skip the `RUN`.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::fs::write(
        work.join("hello.txt"),
        format!("hello from a build request {nonce}\n"),
    )
    .expect("write");
    git(&work, &["init", "-q", "-b", "release"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "app"]);
    git(
        Path::new("/"),
        &["init", "-q", "--bare", bare.0.to_str().expect("utf-8")],
    );
    git(
        &work,
        &["push", "-q", bare.0.to_str().expect("utf-8"), "release"],
    );

    let server = Server::start(
        home.path(),
        "a",
        &[(
            "KILN_BUILDKIT_ADDR",
            format!("docker+{}", docker["KILN_DOCKER_HOST"]),
        )],
    );
    let image = format!("{registry}/kiln-serve/app-{}", std::process::id());
    let r = server.post(
        "/v1/builds",
        &json!({
            "repo_url": format!("{}/{name}", git_vars["KILN_GIT_HTTP_ANON_URL"]),
            "branch": "release",
            "tag": "v1.0.0",
            "registry": image,
            "dockerfile_path": "docker/app.Dockerfile",
            "push": true,
            "dry_run": false
        }),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let run = server.wait_finished(&id, Duration::from_secs(300));
    assert_eq!(
        run["state"],
        "succeeded",
        "{run:#}\n{}",
        server.get(&format!("/v1/runs/{id}/logs")).body
    );
    assert_eq!(run["trigger"], "build");
    let ids: Vec<&str> = run["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["clone", "build", "push"]);
    let digest = run["steps"][2]["outputs"]["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
    assert!(
        logs.contains("hello from a build request"),
        "the RUN's output is in the log:\n{logs}"
    );

    // The registry has the tag, at the digest the push reported.
    let repo_path = image.split_once('/').map(|(_, p)| p).unwrap_or_default();
    let tags = http(
        &registry,
        "GET",
        &format!("/v2/{repo_path}/tags/list"),
        &[],
        b"",
    );
    assert_eq!(tags.status, 200, "{}", tags.body);
    assert_eq!(tags.json()["tags"], json!(["v1.0.0"]));
    let manifest = http(
        &registry,
        "HEAD",
        &format!("/v2/{repo_path}/manifests/v1.0.0"),
        &[(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )],
        b"",
    );
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(digest.as_str())
    );

    // A dry run builds and pushes nothing.
    let r = server.post(
        "/v1/builds",
        &json!({
            "repo_url": format!("{}/{name}", git_vars["KILN_GIT_HTTP_ANON_URL"]),
            "branch": "release", "tag": "dry", "registry": image,
            "dockerfile_path": "docker/app.Dockerfile", "push": true, "dry_run": true
        }),
    );
    let dry = server.wait_finished(
        r.json()["id"].as_str().expect("id"),
        Duration::from_secs(300),
    );
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(dry["steps"][2]["outputs"]["pushed"], false);
    let tags = http(
        &registry,
        "GET",
        &format!("/v2/{repo_path}/tags/list"),
        &[],
        b"",
    );
    assert_eq!(tags.json()["tags"], json!(["v1.0.0"]));
}

#[test]
fn a_newer_run_of_a_concurrency_group_cancels_the_older_one_and_others_wait_their_turn() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[("KILN_MAX_RUNS", "4".into())]);
    let yaml = format!("name: deploy\nsteps:\n{}", slow_step("wait", 30_000));
    let quick = "name: deploy\nsteps:\n  - id: a\n    uses: echo\n    with: { message: hi }\n";
    let older = server.create_run(&json!({
        "pipeline_yaml": yaml, "concurrency": { "group": "deploy-main" }
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(&format!("/v1/runs/{older}")).json()["steps"][0]["state"] != "running" {
        assert!(
            Instant::now() < deadline,
            "never started:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Same group, no cancelling: waits while the older one runs.
    let waiting = server.create_run(&json!({
        "pipeline_yaml": quick, "concurrency": { "group": "deploy-main" }
    }));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.get(&format!("/v1/runs/{waiting}")).json()["state"],
        "queued"
    );
    // Another group is not held back.
    let other = server.create_run(&json!({
        "pipeline_yaml": quick, "concurrency": { "group": "deploy-dev" }
    }));
    assert_eq!(
        server.wait_finished(&other, Duration::from_secs(30))["state"],
        "succeeded"
    );
    // A newer run that cancels in progress: the older running one and the waiting one stop.
    let newest = server.create_run(&json!({
        "pipeline_yaml": quick,
        "concurrency": { "group": "deploy-main", "cancel_in_progress": true }
    }));
    let run = server.wait_finished(&newest, Duration::from_secs(60));
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(
        server.wait_finished(&older, Duration::from_secs(30))["state"],
        "cancelled"
    );
    assert_eq!(
        server.wait_finished(&waiting, Duration::from_secs(30))["state"],
        "cancelled"
    );

    // The pipeline's own `concurrency:` names the group from the run's facts.
    let own = |env: &str, slow: bool| {
        let steps = if slow {
            slow_step("wait", 30_000)
        } else {
            "  - id: a\n    uses: echo\n    with: { message: hi }\n".to_owned()
        };
        json!({
            "pipeline_yaml": format!("name: deploy\nconcurrency: {{ group: \"deploy-${{{{ event.inputs.env }}}}\", cancel-in-progress: true }}\nsteps:\n{steps}"),
            "inputs": { "env": env }
        })
    };
    let first = server.create_run(&own("prod", true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(&format!("/v1/runs/{first}")).json()["steps"][0]["state"] != "running" {
        assert!(
            Instant::now() < deadline,
            "never started:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        server.get(&format!("/v1/runs/{first}")).json()["concurrency_group"],
        "deploy-prod"
    );
    let staging = server.create_run(&own("staging", false));
    assert_eq!(
        server.wait_finished(&staging, Duration::from_secs(30))["state"],
        "succeeded"
    );
    assert_eq!(
        server.get(&format!("/v1/runs/{first}")).json()["state"],
        "running"
    );
    let second = server.create_run(&own("prod", false));
    assert_eq!(
        server.wait_finished(&second, Duration::from_secs(60))["state"],
        "succeeded"
    );
    assert_eq!(
        server.wait_finished(&first, Duration::from_secs(30))["state"],
        "cancelled"
    );
}
