//! Seed 004 end to end: the build API of the FastAPI "Docker Builder Service" (`POST
//! /api/build`, `GET /api/build/{id}`, `GET /api/builds`, a health endpoint) as `kiln serve`'s
//! `POST /v1/builds`, `GET /v1/runs/{id}` (+ `/logs`), `GET /v1/runs` and `/healthz`, running
//! the committed `pipelines/seed-004-build-api.yaml` against the project's git server, dockerd's
//! BuildKit and a registry read back with skopeo. (`serve::builds` covers a branch, a
//! Dockerfile path and the registry's tag list; this covers what the seed's users look at.)

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::image::{docker, inspect};
use crate::seed_000::Bare;
use crate::serve::{Server, TOKEN, http};
use crate::support::{services_env, text};

fn sse(server: &Server, id: &str) -> String {
    let r = http(
        &server.addr,
        "GET",
        &format!("/v1/runs/{id}/logs"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("accept", "text/event-stream"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        r.headers
    );
    r.body
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}

#[test]
fn the_build_api_builds_with_and_without_dry_run_and_reports_status_logs_the_list_and_health() {
    let home = tempfile::tempdir().expect("tmp");
    let git_vars = services_env("git");
    let docker_vars = services_env("docker");
    let registry = services_env("registry")["KILN_REGISTRY"].clone();
    let pid = std::process::id();
    let name = format!("seed-004-{pid}.git");
    let bare = Bare(PathBuf::from(&git_vars["KILN_GIT_REPOS"]).join(&name));
    let repo_url = format!("{}/{name}", git_vars["KILN_GIT_HTTP_ANON_URL"]);
    let work = home.path().join("app");
    std::fs::create_dir_all(&work).expect("mkdir");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::fs::write(
        work.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY app.txt /app.txt\nRUN cat /app.txt\n",
            docker_vars["KILN_BASE_IMAGE"]
        ),
    )
    .expect("write");
    std::fs::write(work.join("app.txt"), format!("seed 004 app {nonce}\n")).expect("write");
    let sha = bare.publish(&work, "app");

    let server = Server::start(
        home.path(),
        "serve",
        &[
            (
                "KILN_BUILDKIT_ADDR",
                format!("docker+{}", docker_vars["KILN_DOCKER_HOST"]),
            ),
            // The broken build below fails once, instead of being retried.
            ("KILN_RUN_ATTEMPTS", "1".to_owned()),
        ],
    );

    // Health, without a token (the seed's "add a health endpoint").
    let health = http(&server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");

    let image = format!("{registry}/seed-004-{pid}/app");

    // dry_run: true, the seed's tests' payload: no branch (the default one), no Dockerfile path.
    let r = server.post(
        "/v1/builds",
        &json!({
            "repo_url": repo_url, "tag": "v1.0.0", "registry": image,
            "push": true, "dry_run": true
        }),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let dry_id = r.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(r.json()["state"], "queued");
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/runs/{dry_id}").as_str())
    );
    // The logs as server-sent events, followed live until the run ends.
    let events = sse(&server, &dry_id);
    assert!(events.contains("event: log"), "{events}");
    assert!(
        events.contains(&format!("seed 004 app {nonce}")),
        "the RUN's output streams: {events}"
    );
    let end = events.rfind("event: end").expect("an end event");
    assert!(
        events[end..].contains("\"state\":\"succeeded\""),
        "{events}"
    );

    let dry = server.wait_finished(&dry_id, Duration::from_secs(60));
    assert_eq!(dry["state"], "succeeded", "{dry:#}");
    assert_eq!(dry["trigger"], "build");
    assert_eq!(dry["pipeline"], format!("build-seed-004-{pid}").as_str());
    assert_eq!(dry["inputs"]["build"]["dry_run"], true);
    assert_eq!(step(&dry, "clone")["outputs"]["sha"], sha.as_str());
    let built = step(&dry, "build");
    assert_eq!(
        built["outputs"]["image"],
        format!("{image}:v1.0.0").as_str()
    );
    assert_eq!(step(&dry, "push")["outputs"]["pushed"], false);
    // Built (dockerd has the image) but not pushed (the registry has no such tag).
    let local = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{image}:v1.0.0"),
    ]);
    assert!(local.status.success(), "{}", text(&local.stderr));
    assert_eq!(
        text(&local.stdout).trim(),
        built["outputs"]["id"].as_str().expect("id")
    );
    let absent = inspect(&format!("{image}:v1.0.0"), None, false);
    assert!(absent.is_err(), "a dry run pushed: {absent:?}");

    // dry_run: false: pushed, at the digest the run reports.
    let r = server.post(
        "/v1/builds",
        &json!({
            "repo_url": repo_url, "branch": "main", "tag": "v1.0.1", "registry": image,
            "dockerfile_path": "Dockerfile", "push": true, "dry_run": false
        }),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let real_id = r.json()["id"].as_str().expect("id").to_owned();
    let real = server.wait_finished(&real_id, Duration::from_secs(60));
    assert_eq!(real["state"], "succeeded", "{real:#}");
    let push = step(&real, "push");
    assert_eq!(push["outputs"]["pushed"], true);
    let pushed = inspect(&format!("{image}:v1.0.1"), None, false).expect("the tag is pushed");
    assert_eq!(pushed["Digest"], push["outputs"]["digest"]);
    // Plain-text logs: the lines so far, one per line, with each step's name.
    let plain = server.get(&format!("/v1/runs/{real_id}/logs"));
    assert_eq!(plain.status, 200);
    assert!(!plain.body.contains("event: "), "{}", plain.body);
    assert!(plain.body.contains("push"), "{}", plain.body);

    // push: false builds only; a missing Dockerfile fails the build with a reason.
    let r = server.post(
        "/v1/builds",
        &json!({ "repo_url": repo_url, "tag": "local", "push": false }),
    );
    let local_id = r.json()["id"].as_str().expect("id").to_owned();
    let local = server.wait_finished(&local_id, Duration::from_secs(60));
    assert_eq!(local["state"], "succeeded", "{local:#}");
    assert_eq!(step(&local, "push")["state"], "skipped");
    assert_eq!(
        step(&local, "build")["outputs"]["image"],
        format!("kiln.local/seed-004-{pid}:local").as_str()
    );
    let r = server.post(
        "/v1/builds",
        &json!({
            "repo_url": repo_url, "tag": "broken", "registry": image,
            "dockerfile_path": "docker/missing.Dockerfile", "dry_run": true
        }),
    );
    let broken_id = r.json()["id"].as_str().expect("id").to_owned();
    let broken = server.wait_finished(&broken_id, Duration::from_secs(120));
    assert_eq!(broken["state"], "failed", "{broken:#}");
    let error = step(&broken, "build")["error"].to_string();
    assert!(error.contains("missing.Dockerfile"), "{error}");
    assert_eq!(step(&broken, "push")["state"], "skipped");

    // A request that cannot run is refused before anything is queued.
    let r = server.post(
        "/v1/builds",
        &json!({ "repo_url": repo_url, "push": true, "dry_run": false }),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("registry")),
        "{}",
        r.body
    );

    // The list of builds: newest first, each with its state.
    let list = server.get(&format!("/v1/runs?repo={repo_url}")).json();
    let listed: Vec<(&str, &str)> = list["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            assert_eq!(r["trigger"], "build");
            (
                r["id"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (broken_id.as_str(), "failed"),
            (local_id.as_str(), "succeeded"),
            (real_id.as_str(), "succeeded"),
            (dry_id.as_str(), "succeeded"),
        ]
    );
    let failed = server
        .get(&format!("/v1/runs?repo={repo_url}&state=failed"))
        .json();
    assert_eq!(failed["runs"].as_array().map(Vec::len), Some(1));
}
