//! Seed 001, the image builder, end to end: the committed `pipelines/seed-001-image-builder.yaml`
//! as the pipeline of build requests to `kiln serve`, against the project's git server (smart
//! HTTP), dockerd's BuildKit, the anonymous registry (read back with skopeo) and two webhook
//! receivers, the container manager and the connector that tells the user
//! (`tests/support/http_server.py`, which checks the HMAC signatures with Python's own hmac).
//! The pipeline is used as committed; only its deployment hosts are replaced by the local
//! services' (see [`deploy`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::git::{Served, git, var as git_var};
use crate::image::{docker, var};
use crate::notify::Receiver;
use crate::serve::{NOTIFY_SECRET, Server};
use crate::support::{repo, text};

const CONTAINER_MANAGER_KEY: &str = "container-manager-key-3f1a";

/// A committed pipeline with its deployment settings replaced: each `(from, to)` must occur in
/// the file (so a changed pipeline fails here instead of testing something else).
pub(crate) fn deploy(file: &str, replace: &[(&str, String)]) -> String {
    let path = repo().join("pipelines").join(file);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "`{from}` is not in pipelines/{file} any more; update the test's deployment settings"
        );
        text = text.replace(from, to);
    }
    text
}

/// A bare repository under `$KILN_GIT_REPOS` (served over HTTP and SSH) with `files` committed
/// on `main`; removed on drop.
pub(crate) fn served_repo(home: &Path, test: &str, files: &[(&str, &str)]) -> Served {
    let name = format!(
        "seed-{test}-{}-{}.git",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let bare = PathBuf::from(git_var("KILN_GIT_REPOS")).join(&name);
    let work = home.join(format!("{test}-work"));
    for (file, body) in files {
        let path = work.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "the app"]);
    let bare_str = bare.to_str().expect("utf-8");
    git(
        Path::new("/"),
        &["init", "-q", "--bare", "-b", "main", bare_str],
    );
    git(&work, &["push", "-q", bare_str, "main"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    Served { name, bare, sha }
}

/// The receiver's requests once there are at least `n` (or `within` passed), then a moment
/// longer so that extra ones would show.
pub(crate) fn wait_requests(r: &Receiver, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    while r.requests().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    r.requests()
}

/// `skopeo inspect` of a reference on a loopback registry.
pub(crate) fn skopeo_inspect(reference: &str, creds: Option<&str>) -> Result<Value, String> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&target);
    let out = Command::new("skopeo")
        .args(&args)
        .output()
        .expect("skopeo runs");
    if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    } else {
        Err(text(&out.stderr))
    }
}

/// The seed 001 pipeline for this machine's services.
fn pipeline(container_manager: &Receiver) -> String {
    let git_host = git_var("KILN_GIT_HTTP_URL")
        .trim_start_matches("http://")
        .to_owned();
    deploy(
        "seed-001-image-builder.yaml",
        &[
            ("github.com:443", git_host),
            ("registry.example.com:5000", var("KILN_REGISTRY")),
            (
                "https://containers.example.com/hooks/kiln",
                container_manager.url("/hook"),
            ),
            ("containers.example.com:443", container_manager.net()),
        ],
    )
}

/// `kiln serve` as the image builder: BuildKit, the container manager's signing key, the
/// connector (told when a build gave up) and `extra`.
fn builder(home: &Path, name: &str, connector: &Receiver, extra: &[(&str, String)]) -> Server {
    let mut env = vec![
        (
            "KILN_BUILDKIT_ADDR",
            format!("docker+{}", var("KILN_DOCKER_HOST")),
        ),
        ("KILN_SECRETS", "CONTAINER_MANAGER_KEY".to_owned()),
        ("CONTAINER_MANAGER_KEY", CONTAINER_MANAGER_KEY.to_owned()),
        ("KILN_NOTIFY_ON_FAILURE", connector.url("/hook")),
    ];
    env.extend(extra.iter().cloned());
    Server::start(home, name, &env)
}

/// A small Python app without a Dockerfile.
fn python_app(nonce: &str) -> Vec<(&'static str, String)> {
    vec![
        ("requirements.txt", "# no dependencies yet\n".to_owned()),
        (
            "main.py",
            format!("import os\nprint('hello from the image builder', os.getuid(), '{nonce}')\n"),
        ),
        ("README.md", "A tiny app.\n".to_owned()),
    ]
}

fn as_refs<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, b)| (*n, b.as_str())).collect()
}

fn request(served: &Served, pipeline: &str, name: &str) -> Value {
    json!({
        "repo_url": format!("{}/{}", git_var("KILN_GIT_HTTP_ANON_URL"), served.name),
        "ref": "main",
        "pipeline_yaml": pipeline,
        "inputs": { "user_id": "18008", "name": name, "base_image": var("KILN_IMAGE_PYTHON") },
    })
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step `{id}` in {run:#}"))
}

fn nonce() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_default()
}

#[test]
fn a_build_request_for_a_repo_without_a_dockerfile_is_detected_built_pushed_and_announced_to_the_container_manager()
 {
    let home = tempfile::tempdir().expect("tmp");
    let manager = Receiver::start_with_key(CONTAINER_MANAGER_KEY, None);
    let connector = Receiver::start_with_key(NOTIFY_SECRET, None);
    let nonce = nonce();
    let files = python_app(&nonce);
    let served = served_repo(home.path(), "001-app", &as_refs(&files));
    let server = builder(home.path(), "a", &connector, &[]);
    let name = format!("app-{}", std::process::id());

    let id = server.create_run(&request(&served, &pipeline(&manager), &name));
    let run = server.wait_finished(&id, Duration::from_secs(180));
    let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{logs}");
    let ids: Vec<&str> = run["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        [
            "src",
            "dockerfile",
            "image",
            "publish",
            "tell-container-manager"
        ]
    );
    let detected = &step(&run, "dockerfile")["outputs"];
    assert_eq!(detected["language"], "python", "{detected:#}");
    assert_eq!(detected["generated"], true);
    assert_eq!(step(&run, "src")["outputs"]["sha"], served.sha.as_str());

    // The image is in the registry under the commit's tag and `latest`, at the pushed digest.
    let publish = &step(&run, "publish")["outputs"];
    let digest = publish["digest"].as_str().expect("digest").to_owned();
    let image = format!("{}/18008/{name}", var("KILN_REGISTRY"));
    let by_sha = skopeo_inspect(&format!("{image}:{}", served.sha), None).expect("pushed");
    assert_eq!(by_sha["Digest"], digest.as_str());
    assert_eq!(
        by_sha["Labels"]["org.opencontainers.image.revision"],
        served.sha.as_str()
    );
    let latest = skopeo_inspect(&format!("{image}:latest"), None).expect("latest");
    assert_eq!(latest["Digest"], digest.as_str());
    // It runs the app, as a non-root user.
    let ran = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("{image}:{}", served.sha),
    ]);
    assert_eq!(
        text(&ran.stdout),
        format!("hello from the image builder 1000 {nonce}\n"),
        "{}",
        text(&ran.stderr)
    );

    // The container manager got one signed POST naming the image by digest.
    let got = wait_requests(&manager, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:#?}");
    let hook = &got[0];
    assert_eq!(hook["method"], "POST");
    assert_eq!(hook["signature"], "valid", "{hook:#}");
    assert_eq!(
        hook["headers"]["x-kiln-delivery"],
        format!("{id}/tell-container-manager").as_str()
    );
    let body: Value =
        serde_json::from_str(hook["body"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(body["event"], "image.pushed");
    assert_eq!(body["image"], format!("{image}@{digest}").as_str());
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["commit"], served.sha.as_str());
    assert_eq!(body["user_id"], "18008");
    assert_eq!(body["run"], id.as_str());
    assert!(
        body["references"]
            .as_array()
            .is_some_and(|r| r.contains(&json!(format!("{image}:latest")))),
        "{body:#}"
    );
    // A build that worked does not bother the user.
    assert!(
        connector.requests().is_empty(),
        "{:#?}",
        connector.requests()
    );
}

#[test]
fn a_repo_that_fails_to_build_is_retried_then_lands_in_the_fail_queue_and_the_user_is_told() {
    let home = tempfile::tempdir().expect("tmp");
    let manager = Receiver::start_with_key(CONTAINER_MANAGER_KEY, None);
    let connector = Receiver::start_with_key(NOTIFY_SECRET, None);
    let dockerfile = format!(
        "FROM {}\nRUN echo 'compiling the app {}' && exit 3\n",
        var("KILN_BASE_IMAGE"),
        nonce()
    );
    let served = served_repo(
        home.path(),
        "001-broken",
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("main.c", "int main(\n"),
        ],
    );
    let server = builder(
        home.path(),
        "a",
        &connector,
        &[("KILN_RUN_ATTEMPTS", "2".to_owned())],
    );
    let name = format!("broken-{}", std::process::id());

    let id = server.create_run(&request(&served, &pipeline(&manager), &name));
    let run = server.wait_finished(&id, Duration::from_secs(180));
    let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
    assert_eq!(run["state"], "failed", "{run:#}\n{logs}");
    assert_eq!(run["attempt"], 2, "retried once, per the server's policy");
    assert_eq!(run["failed_queue"], true);
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("step `image` failed"),
        "{run:#}"
    );
    assert_eq!(
        step(&run, "dockerfile")["outputs"]["language"],
        "dockerfile"
    );
    assert!(
        logs.contains("attempt 1 failed; the run is queued again"),
        "{logs}"
    );
    assert!(logs.contains("attempt 2 of 2"), "{logs}");
    assert_eq!(step(&run, "publish")["state"], "skipped");
    assert_eq!(step(&run, "tell-container-manager")["state"], "skipped");

    // In the fail queue, visible in the API.
    let queue = server.get("/v1/fail-queue").json();
    let queued: Vec<&str> = queue["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(queued, [id.as_str()]);

    // The connector heard of the give-up once, signed; the container manager heard nothing.
    let got = wait_requests(&connector, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "one give-up notification: {got:#?}");
    let notice = &got[0];
    assert_eq!(notice["signature"], "valid", "{notice:#}");
    assert_eq!(notice["headers"]["x-kiln-event"], "run.failed");
    let body: Value =
        serde_json::from_str(notice["body"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(body["event"], "run.failed");
    assert_eq!(body["run"]["id"], id.as_str());
    assert_eq!(body["run"]["attempts"], 2);
    assert_eq!(body["run"]["inputs"]["user_id"], "18008");
    assert!(manager.requests().is_empty(), "{:#?}", manager.requests());
    let image = format!("{}/18008/{name}:latest", var("KILN_REGISTRY"));
    assert!(skopeo_inspect(&image, None).is_err(), "nothing was pushed");
}

#[test]
fn two_image_builders_on_one_store_build_each_request_exactly_once() {
    let home = tempfile::tempdir().expect("tmp");
    let manager = Receiver::start_with_key(CONTAINER_MANAGER_KEY, None);
    let connector = Receiver::start_with_key(NOTIFY_SECRET, None);
    let files = python_app(&nonce());
    let served = served_repo(home.path(), "001-pair", &as_refs(&files));
    let store = home.path().join("shared.db").display().to_string();
    let shared = [
        ("KILN_STORE_PATH", store),
        ("KILN_MAX_RUNS", "1".to_owned()),
    ];
    let a = builder(home.path(), "a", &connector, &shared);
    let b = builder(home.path(), "b", &connector, &shared);
    let pipeline = pipeline(&manager);
    let runs: Vec<(String, String)> = (0..6)
        .map(|i| {
            let name = format!("pair-{}-{i}", std::process::id());
            let server = if i % 2 == 0 { &a } else { &b };
            (server.create_run(&request(&served, &pipeline, &name)), name)
        })
        .collect();

    let mut workers = BTreeSet::new();
    let mut digests = BTreeMap::new();
    for (id, name) in &runs {
        let run = a.wait_finished(id, Duration::from_secs(240));
        let logs = b.get(&format!("/v1/runs/{id}/logs")).body;
        assert_eq!(run["state"], "succeeded", "{run:#}\n{logs}");
        assert_eq!(run["attempt"], 1, "{run:#}");
        assert_eq!(logs.matches("attempt 1 of").count(), 1, "{logs}");
        assert_eq!(step(&run, "image")["attempts"], 1, "{run:#}");
        workers.insert(run["worker"].as_str().unwrap_or_default().to_owned());
        let digest = step(&run, "publish")["outputs"]["digest"]
            .as_str()
            .expect("digest")
            .to_owned();
        let image = format!("{}/18008/{name}:{}", var("KILN_REGISTRY"), served.sha);
        assert_eq!(
            skopeo_inspect(&image, None).expect("pushed")["Digest"],
            digest.as_str()
        );
        digests.insert(id.clone(), digest);
    }
    assert_eq!(workers.len(), 2, "both servers built: {workers:?}");

    // The container manager heard of every run exactly once, each signed, with its digest.
    let got = wait_requests(&manager, runs.len(), Duration::from_secs(30));
    let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
    for hook in &got {
        assert_eq!(hook["signature"], "valid", "{hook:#}");
        let body: Value =
            serde_json::from_str(hook["body"].as_str().unwrap_or_default()).expect("JSON");
        let run = body["run"].as_str().unwrap_or_default().to_owned();
        assert_eq!(body["digest"], digests[&run].as_str(), "{body:#}");
        *per_run.entry(run).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = runs.iter().map(|(id, _)| (id.clone(), 1)).collect();
    assert_eq!(per_run, expected);
    assert!(connector.requests().is_empty());
}
