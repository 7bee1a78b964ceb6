//! Seed 002, the build service, end to end: the committed `pipelines/seed-002-go-service.yaml`
//! run through `kiln serve`'s API for a real Go program on the project's git server, built in
//! a golang builder stage onto the configured base image by dockerd's BuildKit, pushed with a
//! login to the htpasswd registry; its log followed over SSE while it runs; the image read back
//! with skopeo and run. Then the committed `pipelines/seed-002-cleanup.yaml`, started by two
//! servers on one store from its `on.schedule`, deletes all but the newest tags, once.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Server, TOKEN};
use crate::support::{repo, services_env, text};

use crate::support::git;

struct Bare(PathBuf);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const MAIN_GO: &str = r#"package main

import "fmt"

// Set at build time: -ldflags "-X main.commit=...".
var commit = "unknown"

func main() {
	fmt.Printf("hello from the seed 002 service, version %s, commit %s\n", version, commit)
}
"#;

const DOCKERFILE: &str = r#"# The builder and the runtime base come from the build service's configuration.
ARG GO_IMAGE
ARG BASE_IMAGE
FROM ${GO_IMAGE} AS builder
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod *.go ./
RUN CGO_ENABLED=0 GOCACHE=/tmp/go-cache GOPATH=/tmp/go GOFLAGS=-mod=mod go build -trimpath -ldflags "-X main.commit=${COMMIT}" -o /out/hello . && echo "go build done"

FROM ${BASE_IMAGE}
COPY --from=builder /out/hello /usr/local/bin/hello
ENTRYPOINT ["/usr/local/bin/hello"]
"#;

/// `host:port` of an `http://host:port/...` URL.
fn endpoint(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Follow `GET /v1/runs/{id}/logs` as SSE. Calls `on_first_line` at the first `log` event;
/// returns the log lines and the `end` event's data.
fn follow(addr: &str, id: &str, mut on_first_line: impl FnMut()) -> (Vec<String>, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(240)))
        .expect("timeout");
    write!(
        stream,
        "GET /v1/runs/{id}/logs HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\naccept: text/event-stream\r\nconnection: close\r\n\r\n"
    )
    .expect("request");
    let mut lines = Vec::new();
    let mut event = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("read the stream");
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            match event.as_str() {
                "log" => {
                    if lines.is_empty() {
                        on_first_line();
                    }
                    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    lines.push(v["line"].as_str().unwrap_or(data).to_owned());
                }
                "end" => return (lines, serde_json::from_str(data).unwrap_or(Value::Null)),
                _ => {}
            }
        }
    }
    panic!("the log stream ended without an `end` event; lines: {lines:#?}");
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs")
}

/// The tags of `repository` in the auth registry, sorted.
fn tags(repository: &str, creds: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        creds,
        &format!("docker://{repository}"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut tags: Vec<String> = v["Tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

fn docker(args: &[&str]) -> std::process::Output {
    let host = services_env("docker")["KILN_DOCKER_HOST"].clone();
    Command::new("/usr/bin/docker")
        .args(["-H", &host])
        .args(args)
        .output()
        .expect("docker runs")
}

#[test]
fn a_seed_002_request_builds_and_pushes_a_go_service_and_the_scheduled_cleanup_keeps_the_newest_tags()
 {
    let started = Instant::now();
    let home = tempfile::tempdir().expect("tmp");
    let git_vars = services_env("git");
    let docker_vars = services_env("docker");
    let reg = services_env("registry");
    let go_image = services_env("toolchains")["KILN_IMAGE_GOLANG"].clone();
    let registry = reg["KILN_REGISTRY_AUTH"].clone();
    let creds = format!(
        "{}:{}",
        reg["KILN_REGISTRY_USER"], reg["KILN_REGISTRY_PASSWORD"]
    );
    let repository = format!("{registry}/seed-002/hello-{}", std::process::id());

    // The service's repository: a Go program and its two-stage Dockerfile, and the committed
    // cleanup pipeline (its nightly cron made per-minute for the test: the only change).
    let name = format!("seed-002-{}.git", std::process::id());
    let bare = Bare(PathBuf::from(&git_vars["KILN_GIT_REPOS"]).join(&name));
    let work = home.path().join("work");
    std::fs::create_dir_all(work.join("pipelines")).expect("mkdir");
    std::fs::write(work.join("go.mod"), "module example.com/hello\n\ngo 1.19\n").expect("write");
    std::fs::write(work.join("main.go"), MAIN_GO).expect("write");
    std::fs::write(work.join("Dockerfile"), DOCKERFILE).expect("write");
    let cleanup = std::fs::read_to_string(repo().join("pipelines/seed-002-cleanup.yaml"))
        .expect("the committed cleanup pipeline");
    let nightly = "- cron: \"0 3 * * *\"";
    assert!(cleanup.contains(nightly), "{cleanup}");
    std::fs::write(
        work.join("pipelines/seed-002-cleanup.yaml"),
        cleanup.replace(nightly, "- cron: \"* * * * *\""),
    )
    .expect("write");
    git(&work, &["init", "-q", "-b", "main"]);
    git(
        Path::new("/"),
        &["init", "-q", "--bare", bare.0.to_str().expect("utf-8")],
    );
    // Three commits, three versions: each build is a different image.
    let mut commits = Vec::new();
    for v in 1..=3 {
        std::fs::write(
            work.join("version.go"),
            format!("package main\n\nconst version = \"v{v}\"\n"),
        )
        .expect("write");
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", &format!("v{v}")]);
        commits.push(git(&work, &["rev-parse", "HEAD"]));
    }
    git(
        &work,
        &["push", "-q", bare.0.to_str().expect("utf-8"), "main"],
    );
    let repo_url = format!("{}/{name}", git_vars["KILN_GIT_HTTP_ANON_URL"]);

    // The build service's configuration: where sources and images may come from and go to.
    let vars = format!(
        "vars:\n  GIT_HOST: \"{}\"\n  REGISTRY: \"{registry}\"\n  REGISTRY_USER: \"{}\"\n  GO_IMAGE: \"{go_image}\"\n  BASE_IMAGE: \"{}\"\n",
        endpoint(&repo_url),
        reg["KILN_REGISTRY_USER"],
        docker_vars["KILN_BASE_IMAGE"],
    );
    let build_config = home.path().join("build.yaml");
    std::fs::write(&build_config, &vars).expect("write");
    let env = vec![
        (
            "KILN_BUILDKIT_ADDR",
            format!("docker+{}", docker_vars["KILN_DOCKER_HOST"]),
        ),
        ("KILN_SECRETS", "REGISTRY_PASSWORD".to_owned()),
        ("REGISTRY_PASSWORD", reg["KILN_REGISTRY_PASSWORD"].clone()),
        (
            "KILN_STORE_PATH",
            home.path().join("kiln.db").display().to_string(),
        ),
    ];
    let server = Server::start_with(home.path(), "build", Some(&build_config), &env);

    // Three requests, as seed 002's callers make them; the first one's log is followed live.
    let pipeline = std::fs::read_to_string(repo().join("pipelines/seed-002-go-service.yaml"))
        .expect("the committed pipeline");
    let ids: Vec<String> = commits
        .iter()
        .enumerate()
        .map(|(i, sha)| {
            server.create_run(&json!({
                "pipeline_yaml": pipeline,
                "inputs": {
                    "gitRepo": repo_url,
                    "gitCommit": sha,
                    "imageTag": format!("{repository}:v{}", i + 1),
                },
            }))
        })
        .collect();
    let mut state_at_first_line = None;
    let (lines, end) = follow(&server.addr, &ids[0], || {
        let r = server.get(&format!("/v1/runs/{}", ids[0]));
        state_at_first_line = r.json()["state"].as_str().map(str::to_owned);
    });
    assert!(
        matches!(state_at_first_line.as_deref(), Some("queued" | "running")),
        "the first log line arrives while the run is going on, not after: {state_at_first_line:?}"
    );
    assert_eq!(end["state"], "succeeded", "{end}\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("go build done")),
        "BuildKit's output of the builder stage is in the streamed log:\n{}",
        lines.join("\n")
    );
    let mut runs = Vec::new();
    for id in &ids {
        let run = server.wait_finished(id, Duration::from_secs(180));
        assert_eq!(
            run["state"],
            "succeeded",
            "{run:#}\n{}",
            server.get(&format!("/v1/runs/{id}/logs")).body
        );
        runs.push(run);
    }
    drop(server);

    // The images are in the auth registry (and only with credentials), labelled with their
    // commit, and they run: the Go program built at that commit.
    let v1 = format!("{repository}:v1");
    let anonymous = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{v1}")]);
    assert!(!anonymous.status.success(), "the registry wants a login");
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{v1}"),
    ]);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let info: Value = serde_json::from_slice(&inspect.stdout).expect("JSON");
    assert_eq!(
        info["Labels"]["org.opencontainers.image.revision"],
        commits[0].as_str()
    );
    let pushed = runs[0]["steps"][2]["outputs"]["digest"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        info["Digest"], pushed,
        "the registry has what the push step reported"
    );
    let ran = docker(&["run", "--rm", "--network", "none", &v1]);
    assert_eq!(
        text(&ran.stdout),
        format!(
            "hello from the seed 002 service, version v1, commit {}\n",
            commits[0]
        ),
        "{}",
        text(&ran.stderr)
    );
    // The runtime image is the configured base plus the binary: no Go toolchain in it.
    let no_go = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        &v1,
        "-c",
        "command -v go",
    ]);
    assert!(!no_go.status.success(), "{}", text(&no_go.stdout));
    // `latest` points at the newest build; the cleanup never deletes it.
    let copy = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &format!("docker://{repository}:v3"),
        &format!("docker://{repository}:latest"),
    ]);
    assert!(copy.status.success(), "{}", text(&copy.stderr));
    assert_eq!(tags(&repository, &creds), ["latest", "v1", "v2", "v3"]);
    // Which two are the newest, by the images' own creation times.
    let mut created: Vec<(String, String)> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| {
            let out = skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &creds,
                &format!("docker://{repository}:{t}"),
            ]);
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            (
                v["Created"].as_str().unwrap_or_default().to_owned(),
                (*t).to_owned(),
            )
        })
        .collect();
    created.sort();
    let oldest = created[0].1.clone();

    // The nightly cleanup, from the servers' configuration: two servers on one store.
    let schedule_config = home.path().join("schedule.yaml");
    std::fs::write(
        &schedule_config,
        format!(
            "{vars}schedules:\n  tick: 1s\n  pipelines:\n    - name: seed-002-cleanup\n      repo: \"{repo_url}\"\n      ref: main\n      pipeline: pipelines/seed-002-cleanup.yaml\n      inputs: {{ repository: \"{repository}\", keep: 2, match: \"v*\" }}\n"
        ),
    )
    .expect("write");
    let a = Server::start_with(home.path(), "a", Some(&schedule_config), &env);
    let b = Server::start_with(home.path(), "b", Some(&schedule_config), &env);
    // A new schedule waits for its next slot (at most a minute), then one of them starts it.
    let deadline = Instant::now() + Duration::from_secs(150);
    let scheduled = loop {
        let list = a.get("/v1/runs?pipeline=seed-002-cleanup").json();
        let found: Vec<Value> = list["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["trigger"] == "schedule")
            .collect();
        if let Some(run) = found.first() {
            break run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run started\n{}\n{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let id = scheduled["id"].as_str().expect("id").to_owned();
    let run = a.wait_finished(&id, Duration::from_secs(60));
    assert_eq!(
        run["state"],
        "succeeded",
        "{run:#}\n{}",
        a.get(&format!("/v1/runs/{id}/logs")).body
    );
    assert_eq!(run["inputs"]["keep"], 2);
    assert_eq!(run["steps"][0]["outputs"]["deleted"], json!([oldest]));
    let mut left = vec!["latest".to_owned()];
    left.extend(created[1..].iter().map(|(_, t)| t.clone()));
    left.sort();
    assert_eq!(
        tags(&repository, &creds),
        left,
        "only the two newest and `latest` stay"
    );
    // Each slot was started once, though two servers were ticking every second.
    std::thread::sleep(Duration::from_secs(2));
    let all = b.get("/v1/runs?pipeline=seed-002-cleanup").json();
    let mut slots: Vec<String> = all["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["trigger"] == "schedule")
        .map(|r| {
            r["schedule"]["slot"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot fired twice: {all:#}");
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "took {:?}",
        started.elapsed()
    );
}
