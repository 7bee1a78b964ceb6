//! Seed 003, the notebook orchestrator, end to end: the committed
//! `pipelines/seed-003-notebooks.yaml` run by `kiln serve` on a token-protected API call, against
//! the project's SSH git server (a deploy key and known_hosts held as server secrets), dockerd's
//! BuildKit with the Jupyter toolchain image, the registry with htpasswd auth (read back with
//! skopeo), a deployer webhook receiver that checks the signature, and the bare repository, in
//! which the `URL.md` commit is checked with git. Only the pipeline's deployment hosts are
//! replaced by the local services' (see [`crate::seed_001::deploy`]).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::git::{file, git, var as git_var};
use crate::image::{docker, var};
use crate::notify::Receiver;
use crate::seed_001::{deploy, served_repo, skopeo_inspect, wait_requests};
use crate::serve::{Server, TOKEN, http};
use crate::support::text;

const DEPLOYER_KEY: &str = "deployer-signing-key-77c2";
const DEPLOYER_TOKEN: &str = "deployer-bearer-token-91de";

fn notebook(cell: &str) -> String {
    json!({
        "cells": [{ "cell_type": "code", "execution_count": null, "id": "c1", "metadata": {},
                    "outputs": [], "source": [cell] }],
        "metadata": { "kernelspec": { "display_name": "Python 3", "language": "python", "name": "python3" } },
        "nbformat": 4, "nbformat_minor": 5
    })
    .to_string()
}

#[test]
fn a_token_protected_call_builds_one_image_per_notebook_project_tells_the_deployer_and_commits_url_md()
 {
    let home = tempfile::tempdir().expect("tmp");
    let deployer = Receiver::start_with_key(DEPLOYER_KEY, None);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let forecast = notebook(&format!("print('forecast {nonce}')"));
    let weather = notebook("print(6 * 7)");
    let served = served_repo(
        home.path(),
        "003",
        &[
            ("README.md", "Notebook projects, one per directory.\n"),
            ("sales-forecast/forecast.ipynb", forecast.as_str()),
            (
                "sales-forecast/requirements.txt",
                "# the Jupyter image has what it needs\n",
            ),
            ("Weather Report/analysis.ipynb", weather.as_str()),
            ("Weather Report/data/readings.csv", "t,c\n1,20\n"),
            ("docs/index.md", "Not a notebook project.\n"),
        ],
    );
    let registry = var("KILN_REGISTRY_AUTH");
    let password = var("KILN_REGISTRY_PASSWORD");
    let ssh_host = format!("127.0.0.1:{}", git_var("KILN_GIT_SSH_PORT"));
    let pipeline = deploy(
        "seed-003-notebooks.yaml",
        &[
            ("gitlab.example.com:22", ssh_host),
            ("registry.example.com:443", registry.clone()),
            ("registry.example.com", registry.clone()),
            (
                "https://deployer.example.com/hooks/kiln",
                deployer.url("/hook"),
            ),
            ("deployer.example.com:443", deployer.net()),
        ],
    );
    let deploy_key = file("KILN_GIT_SSH_KEY");
    let known_hosts = file("KILN_GIT_KNOWN_HOSTS");
    let server = Server::start(
        home.path(),
        "a",
        &[
            (
                "KILN_BUILDKIT_ADDR",
                format!("docker+{}", var("KILN_DOCKER_HOST")),
            ),
            (
                "KILN_SECRETS",
                "DEPLOY_KEY,KNOWN_HOSTS,REGISTRY_USERNAME,REGISTRY_PASSWORD,DEPLOYER_KEY,DEPLOYER_TOKEN"
                    .to_owned(),
            ),
            ("DEPLOY_KEY", deploy_key.clone()),
            ("KNOWN_HOSTS", known_hosts),
            ("REGISTRY_USERNAME", var("KILN_REGISTRY_USER")),
            ("REGISTRY_PASSWORD", password.clone()),
            ("DEPLOYER_KEY", DEPLOYER_KEY.to_owned()),
            ("DEPLOYER_TOKEN", DEPLOYER_TOKEN.to_owned()),
        ],
    );
    let body = json!({
        "repo_url": format!("{}/{}", git_var("KILN_GIT_SSH_URL"), served.name),
        "ref": "main",
        "pipeline_yaml": pipeline,
        "inputs": { "base_image": var("KILN_IMAGE_JUPYTER") },
    })
    .to_string();

    // The trigger is token-protected: no token, or a wrong one, starts nothing.
    let json_type = ("content-type", "application/json");
    let none = http(
        &server.addr,
        "POST",
        "/v1/runs",
        &[json_type],
        body.as_bytes(),
    );
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = http(
        &server.addr,
        "POST",
        "/v1/runs",
        &[
            json_type,
            ("authorization", "Bearer not-the-orchestrator-token"),
        ],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(server.get("/v1/runs").json()["runs"], json!([]));
    let auth = format!("Bearer {TOKEN}");
    let accepted = http(
        &server.addr,
        "POST",
        "/v1/runs",
        &[json_type, ("authorization", auth.as_str())],
        body.as_bytes(),
    );
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.json()["id"].as_str().expect("id").to_owned();

    let run = server.wait_finished(&id, Duration::from_secs(240));
    let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{logs}");
    for secret in [password.as_str(), DEPLOYER_TOKEN, DEPLOYER_KEY] {
        assert!(!logs.contains(secret), "a secret leaked into the log");
    }
    assert!(
        !logs.contains(deploy_key.lines().nth(1).unwrap_or("-----")),
        "the deploy key leaked into the log"
    );
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let instances: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    for want in [
        "image[project=Weather Report]",
        "image[project=sales-forecast]",
        "publish[project=Weather Report]",
        "publish[project=sales-forecast]",
    ] {
        assert!(instances.contains(&want), "no `{want}` in {instances:?}");
    }
    let detect = steps
        .iter()
        .find(|s| s["id"] == "dockerfiles")
        .expect("dockerfiles step");
    assert_eq!(
        detect["outputs"]["projects"],
        json!(["Weather Report", "sales-forecast"]),
        "docs/ has no notebook: {detect:#}"
    );

    // One image per project in the authenticated registry, at the digests pushed.
    let creds = format!("{}:{password}", var("KILN_REGISTRY_USER"));
    let mut images = Vec::new();
    for (project, name) in [
        ("Weather Report", "weather-report"),
        ("sales-forecast", "sales-forecast"),
    ] {
        let publish = steps
            .iter()
            .find(|s| s["id"] == format!("publish[project={project}]").as_str())
            .expect("publish instance");
        let digest = publish["outputs"]["digest"]
            .as_str()
            .expect("digest")
            .to_owned();
        let repo = format!("{registry}/notebooks/{name}");
        let pushed = skopeo_inspect(&format!("{repo}:{}", served.sha), Some(&creds))
            .unwrap_or_else(|e| panic!("{repo} is not in the registry: {e}"));
        assert_eq!(pushed["Digest"], digest.as_str());
        assert_eq!(pushed["Labels"]["org.opencontainers.image.title"], project);
        images.push(format!("{repo}@{digest}"));
    }
    assert!(
        skopeo_inspect(&format!("{registry}/notebooks/sales-forecast:latest"), None).is_err(),
        "the registry wants credentials"
    );
    // The image holds the project's notebooks, served by Jupyter as uid 1000.
    let listed = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        &format!("{registry}/notebooks/sales-forecast:{}", served.sha),
        "-c",
        "ls /home/notebooks; id -u",
    ]);
    assert_eq!(
        text(&listed.stdout),
        // The generated Dockerfile is in `.dockerignore`, so it is not in the image.
        "forecast.ipynb\nrequirements.txt\n1000\n",
        "{}",
        text(&listed.stderr)
    );

    // The deployer got one signed, authenticated POST with both images.
    let got = wait_requests(&deployer, 1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{got:#?}");
    let hook = &got[0];
    assert_eq!(hook["signature"], "valid", "{hook:#}");
    assert_eq!(
        hook["headers"]["authorization"],
        format!("Bearer {DEPLOYER_TOKEN}").as_str()
    );
    let sent: Value =
        serde_json::from_str(hook["body"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(
        sent["projects"],
        json!(["Weather Report", "sales-forecast"])
    );
    assert_eq!(sent["images"], json!(images));
    assert_eq!(sent["commit"], served.sha.as_str());
    assert_eq!(sent["branch"], "main");

    // URL.md is committed on main in the served repository, on top of the commit built, and
    // only URL.md: the generated Dockerfiles stay out of the repository.
    let bare = served.bare.to_str().expect("utf-8");
    let at = |args: &[&str]| {
        let mut all = vec!["--git-dir", bare];
        all.extend(args);
        git(Path::new("/"), &all)
    };
    let head = at(&["rev-parse", "refs/heads/main"]);
    assert_ne!(head, served.sha, "a new commit on main");
    assert_eq!(at(&["rev-parse", "refs/heads/main^"]), served.sha);
    assert_eq!(
        at(&["log", "-1", "--format=%an <%ae>|%s", "refs/heads/main"]),
        format!(
            "Notebook Bot <notebooks@example.com>|Update URL.md for {} [skip ci]",
            served.sha
        )
    );
    assert_eq!(
        at(&["show", "--name-only", "--format=", "refs/heads/main"]),
        "URL.md"
    );
    let url_md = at(&["show", "refs/heads/main:URL.md"]);
    for image in &images {
        assert!(url_md.contains(&format!("- {image}")), "{url_md}");
    }
    assert!(
        url_md.contains("https://notebooks.example.com/ready"),
        "the deployer's answer: {url_md}"
    );
    assert!(url_md.contains(&served.sha), "{url_md}");
    let commit = steps
        .iter()
        .find(|s| s["id"] == "commit-url-md")
        .expect("git-push step");
    assert_eq!(commit["outputs"]["sha"], head.as_str());
    assert_eq!(commit["outputs"]["pushed"], true);
}
