//! The `build` and `push` built-ins through `kiln run`, against the real dockerd (its built-in
//! BuildKit) and the two registries of `scripts/services.sh`; images are checked with skopeo
//! and by running them.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{kiln, run_json, services_env, step, text};

/// A variable of the docker, registry or toolchains service (started on first use).
pub(crate) fn var(name: &str) -> String {
    let service = if name.starts_with("KILN_REGISTRY") {
        "registry"
    } else if name.starts_with("KILN_IMAGE_") {
        "toolchains"
    } else {
        "docker"
    };
    services_env(service)
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from the {service} service's env.json"))
        .clone()
}

/// A repository name no other test (or earlier run) uses.
pub(crate) fn unique(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "kiln-e2e/{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
}

/// Runs `pipeline` with `--json` over the workspace `home/ws`, with `secrets` as env vars.
pub(crate) fn kiln_run(
    home: &Path,
    pipeline: &str,
    secrets: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (Output, serde_json::Value) {
    let file = home.join("pipeline.yaml");
    std::fs::write(&file, pipeline).expect("write pipeline");
    let mut cmd = kiln(home);
    cmd.arg("run")
        .arg(&file)
        .arg("--json")
        .arg("--workspace")
        .arg(home.join("ws"))
        .env(
            "KILN_BUILDKIT_ADDR",
            format!("docker+{}", var("KILN_DOCKER_HOST")),
        );
    for (name, value) in secrets {
        cmd.args(["--secret", name]).env(name, value);
    }
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("kiln runs");
    let json = run_json(&out);
    (out, json)
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs")
}

/// `skopeo inspect` of a reference on a loopback registry (plain HTTP).
pub(crate) fn inspect(
    reference: &str,
    creds: Option<&str>,
    config: bool,
) -> Result<serde_json::Value, String> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false"];
    if config {
        args.push("--config");
    }
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&target);
    let out = skopeo(&args);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("skopeo prints JSON"))
    } else {
        Err(text(&out.stderr))
    }
}

pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("/usr/bin/docker")
        .args(["-H", &var("KILN_DOCKER_HOST")])
        .args(args)
        .output()
        .expect("docker runs")
}

#[test]
fn an_image_is_built_with_args_and_labels_pushed_and_checked_with_skopeo_and_by_running_it() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[
            (
                "app/Dockerfile",
                "ARG BASE\nFROM ${BASE}\nARG VERSION\nCOPY . /ctx/\nRUN test ! -e /ctx/notes.secret && echo \"version $VERSION\" > /version && echo built-step-output\nLABEL org.example.team=builds\nCMD [\"cat\", \"/version\"]\n",
            ),
            ("app/hello.txt", "hello\n"),
            ("app/notes.secret", "must not be sent\n"),
            ("app/.dockerignore", "*.secret\n"),
        ],
    );
    let registry = var("KILN_REGISTRY");
    let repo = format!("{registry}/{}", unique("app"));
    let pipeline = format!(
        r#"
name: build-push
steps:
  - id: image
    uses: build
    with:
      context: app
      tags: ["{repo}:1.0", "{repo}:latest"]
      build-args: {{ BASE: "{base}", VERSION: 1.2 }}
      labels: {{ org.opencontainers.image.title: demo }}
  - id: publish
    uses: push
    needs: [image]
    allow: {{ net: ["{registry}"] }}
    with:
      image: ${{{{ steps.image.outputs.image }}}}
      tags: ${{{{ steps.image.outputs.tags }}}}
"#,
        base = var("KILN_BASE_IMAGE"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // BuildKit's progress is in the step log, with the RUN's own output.
    assert!(
        stderr.contains("RUN test ! -e /ctx/notes.secret"),
        "{stderr}"
    );
    assert!(stderr.contains("built-step-output"), "{stderr}");
    let image = step(&run, "image");
    assert_eq!(image["outputs"]["image"], format!("{repo}:1.0").as_str());
    assert!(
        image["outputs"]["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sha256:")
    );
    assert!(image["outputs"]["size"].as_u64().unwrap_or(0) > 0);
    assert_eq!(image["outputs"]["driver"], "docker");
    let publish = step(&run, "publish");
    let digest = publish["outputs"]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{publish:#}");
    assert_eq!(
        publish["outputs"]["references"],
        serde_json::json!([
            format!("{repo}@{digest}"),
            format!("{repo}:1.0"),
            format!("{repo}:latest")
        ])
    );

    let manifest = inspect(&format!("{repo}:1.0"), None, false).expect("pushed image");
    assert_eq!(manifest["Digest"], digest.as_str());
    assert_eq!(manifest["Labels"]["org.example.team"], "builds");
    assert_eq!(manifest["Labels"]["org.opencontainers.image.title"], "demo");
    assert!(
        manifest["Layers"].as_array().is_some_and(|l| l.len() >= 2),
        "{manifest:#}"
    );
    let latest = inspect(&format!("{repo}:latest"), None, false).expect("second tag");
    assert_eq!(latest["Digest"], digest.as_str());
    let config = inspect(&format!("{repo}@{digest}"), None, true).expect("config by digest");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/version"])
    );

    let ran = docker(&["run", "--rm", "--network", "none", &format!("{repo}:1.0")]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert_eq!(text(&ran.stdout), "version 1.2\n");
}

#[test]
fn an_unchanged_rebuild_is_fully_cached() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n",
                    var("KILN_BASE_IMAGE")
                ),
            ),
            ("a.txt", "same\n"),
        ],
    );
    let pipeline = format!(
        "name: cached\nsteps:\n  - id: image\n    uses: build\n    with: {{ tags: \"kiln.local/{}:1\" }}\n",
        unique("cached")
    );
    let (first, run1) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let (second, run2) = kiln_run(home.path(), &pipeline, &[], &[]);
    let log = text(&second.stderr);
    assert!(second.status.success(), "{log}");
    assert_eq!(
        step(&run1, "image")["outputs"]["id"],
        step(&run2, "image")["outputs"]["id"]
    );
    let run_lines: Vec<&str> = log.lines().filter(|l| l.contains("RUN cat")).collect();
    assert!(!run_lines.is_empty(), "{log}");
    assert!(log.contains("CACHED"), "{log}");
    assert!(
        !log.contains("DONE")
            || !log
                .lines()
                .any(|l| l.contains("RUN cat") && l.contains("DONE")),
        "{log}"
    );
}

#[test]
fn a_two_stage_build_copies_the_builder_output_and_target_picks_a_stage() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    let base = var("KILN_BASE_IMAGE");
    write(
        &ws,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {base} AS builder\nCOPY main.sh /src/main.sh\nRUN mkdir -p /out && cp /src/main.sh /out/app && chmod +x /out/app\n\nFROM {base} AS runtime\nCOPY --from=builder /out/app /usr/local/bin/app\nCMD [\"/usr/local/bin/app\"]\n"
                ),
            ),
            ("main.sh", "#!/bin/sh\necho from-the-builder\n"),
        ],
    );
    let name = unique("twostage");
    let pipeline = format!(
        r#"
name: two-stage
steps:
  - id: runtime
    uses: build
    with: {{ tags: "kiln.local/{name}:runtime" }}
  - id: builder
    uses: build
    with: {{ tags: "kiln.local/{name}:builder", target: builder }}
"#
    );
    let (out, _) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ran = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("kiln.local/{name}:runtime"),
    ]);
    assert_eq!(
        text(&ran.stdout),
        "from-the-builder\n",
        "{}",
        text(&ran.stderr)
    );
    // The builder stage has the sources; the runtime image does not.
    let src = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("kiln.local/{name}:builder"),
        "cat",
        "/src/main.sh",
    ]);
    assert!(src.status.success(), "{}", text(&src.stderr));
    let none = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("kiln.local/{name}:runtime"),
        "cat",
        "/src/main.sh",
    ]);
    assert!(!none.status.success());
}

#[test]
fn a_secret_mount_reads_the_step_secret_which_never_lands_in_the_image() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -d' ' -f1 > /checked\n",
                var("KILN_BASE_IMAGE")
            ),
        )],
    );
    let name = unique("secret");
    let pipeline = format!(
        "name: secret\nsteps:\n  - id: image\n    uses: build\n    secrets: [NPM_TOKEN]\n    with:\n      tags: \"kiln.local/{name}:1\"\n      secrets: {{ token: NPM_TOKEN }}\n"
    );
    let (out, _) = kiln_run(home.path(), &pipeline, &[("NPM_TOKEN", "tok-3141")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The RUN saw the value (its digest, computed by coreutils here, matches)...
    let expected = Command::new("sh")
        .args(["-c", "printf tok-3141 | sha256sum | cut -d' ' -f1"])
        .output()
        .expect("sha256sum runs");
    let listing = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("kiln.local/{name}:1"),
        "sh",
        "-c",
        "cat /checked; ls /run/secrets 2>&1 || true",
    ]);
    let shown = text(&listing.stdout);
    assert!(shown.starts_with(&text(&expected.stdout)), "{shown}");
    // ...and neither the image's layers and config nor its history hold it.
    let saved = docker(&["save", &format!("kiln.local/{name}:1")]);
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    assert!(!saved.stdout.windows(8).any(|w| w == b"tok-3141"));
    let history = docker(&["history", "--no-trunc", &format!("kiln.local/{name}:1")]);
    assert!(!text(&history.stdout).contains("tok-3141"));

    // Without the secret granted to the step, the build is refused before it starts.
    let pipeline = format!(
        "name: secret\nsteps:\n  - id: image\n    uses: build\n    with:\n      tags: \"kiln.local/{name}:2\"\n      secrets: {{ token: NPM_TOKEN }}\n"
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(!out.status.success());
    let error = step(&run, "image")["error"].to_string();
    assert!(error.contains("secret `NPM_TOKEN`"), "{error}");
}

#[test]
fn a_failing_run_fails_the_step_with_its_output_in_the_log() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo about-to-fail && exit 3\n",
                var("KILN_BASE_IMAGE")
            ),
        )],
    );
    let pipeline = "name: fails\nsteps:\n  - id: image\n    uses: build\n";
    let (out, run) = kiln_run(home.path(), pipeline, &[], &[]);
    let log = text(&out.stderr);
    assert!(!out.status.success());
    assert!(log.contains("about-to-fail"), "{log}");
    let error = step(&run, "image")["error"].to_string();
    assert!(error.contains("build failed"), "{error}");
    assert!(error.contains("exit code: 3"), "{error}");
}

#[test]
fn a_missing_dockerfile_and_an_unreachable_daemon_are_clear_errors() {
    let home = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(home.path().join("ws/app")).expect("ws");
    let pipeline =
        "name: nothing\nsteps:\n  - id: image\n    uses: build\n    with: { context: app }\n";
    let (out, run) = kiln_run(home.path(), pipeline, &[], &[]);
    assert!(!out.status.success());
    let error = step(&run, "image")["error"].to_string();
    assert!(error.contains("no Dockerfile at"), "{error}");
    assert!(error.contains("detect"), "{error}");

    write(
        &home.path().join("ws"),
        &[("app/Dockerfile", "FROM scratch\n")],
    );
    let (out, run) = kiln_run(
        home.path(),
        pipeline,
        &[],
        &[(
            "KILN_BUILDKIT_ADDR",
            "docker+unix:///nonexistent/docker.sock",
        )],
    );
    assert!(!out.status.success());
    let error = step(&run, "image")["error"].to_string();
    assert!(
        error.contains("cannot reach BuildKit at `docker+unix:///nonexistent/docker.sock`"),
        "{error}"
    );
}

#[test]
fn the_authenticated_registry_takes_the_right_password_and_refuses_a_wrong_one() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo auth > /auth\n", var("KILN_BASE_IMAGE")),
        )],
    );
    let registry = var("KILN_REGISTRY_AUTH");
    let user = var("KILN_REGISTRY_USER");
    let password = var("KILN_REGISTRY_PASSWORD");
    let repo = format!("{registry}/{}", unique("auth"));
    let pipeline = |tag: &str| {
        format!(
            r#"
name: auth
steps:
  - id: image
    uses: build
    with: {{ tags: "{repo}:{tag}" }}
  - id: publish
    uses: push
    needs: [image]
    allow: {{ net: ["{registry}"] }}
    secrets: [REGISTRY_PASSWORD]
    with:
      image: ${{{{ steps.image.outputs.image }}}}
      auth: {{ username: {user}, password: REGISTRY_PASSWORD }}
"#
        )
    };
    let (out, run) = kiln_run(
        home.path(),
        &pipeline("good"),
        &[("REGISTRY_PASSWORD", &password)],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let digest = step(&run, "publish")["outputs"]["digest"].clone();
    let creds = format!("{user}:{password}");
    let manifest = inspect(&format!("{repo}:good"), Some(&creds), false).expect("pushed");
    assert_eq!(manifest["Digest"], digest);

    let (out, run) = kiln_run(
        home.path(),
        &pipeline("bad"),
        &[("REGISTRY_PASSWORD", "wrong-password")],
        &[],
    );
    assert!(!out.status.success());
    let error = step(&run, "publish")["error"].to_string();
    assert!(
        error.contains(&format!("registry `{registry}` refused the credentials")),
        "{error}"
    );
    assert!(!text(&out.stderr).contains("wrong-password"));
    assert!(
        inspect(&format!("{repo}:bad"), Some(&creds), false).is_err(),
        "nothing was pushed"
    );
}

#[test]
fn a_registry_outside_allow_net_is_denied_and_one_that_is_down_is_unreachable() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[("Dockerfile", &format!("FROM {}\n", var("KILN_BASE_IMAGE")))],
    );
    let registry = var("KILN_REGISTRY");
    let name = unique("denied");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let pipeline = format!(
        r#"
name: grants
steps:
  - id: image
    uses: build
    with: {{ tags: "kiln.local/{name}:1" }}
  - id: ungranted
    uses: push
    needs: [image]
    allow: {{ net: ["127.0.0.1:1"] }}
    with: {{ image: "kiln.local/{name}:1", tags: "{registry}/{name}:1" }}
"#
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(!out.status.success());
    let s = step(&run, "ungranted");
    let error = s["error"].to_string();
    assert!(
        error.contains(&format!("net: [\\\"{registry}\\\"]")),
        "{error}"
    );
    assert_eq!(s["attempts"], 1, "a denial is not retried: {s:#}");
    assert!(inspect(&format!("{registry}/{name}:1"), None, false).is_err());

    let pipeline = format!(
        r#"
name: down
steps:
  - id: image
    uses: build
    with: {{ tags: "kiln.local/{name}:1" }}
  - id: down
    uses: push
    needs: [image]
    allow: {{ net: ["127.0.0.1:{closed}"] }}
    with: {{ image: "kiln.local/{name}:1", tags: "127.0.0.1:{closed}/{name}:1" }}
"#
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(!out.status.success());
    let error = step(&run, "down")["error"].to_string();
    assert!(
        error.contains(&format!("cannot reach registry `127.0.0.1:{closed}`")),
        "{error}"
    );
}

#[test]
fn a_dry_run_builds_but_pushes_nothing() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo dry > /dry\n", var("KILN_BASE_IMAGE")),
        )],
    );
    let registry = var("KILN_REGISTRY");
    let repo = format!("{registry}/{}", unique("dry"));
    let pipeline = format!(
        r#"
name: dry
steps:
  - id: image
    uses: build
    with: {{ tags: "{repo}:1" }}
  - id: publish
    uses: push
    needs: [image]
    allow: {{ net: ["{registry}"] }}
    with: {{ image: "${{{{ steps.image.outputs.image }}}}", dry-run: true }}
"#
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "publish")["outputs"]["pushed"], false);
    assert!(inspect(&format!("{repo}:1"), None, false).is_err());
}

#[test]
fn build_with_push_pushes_every_tag_with_auth_and_dry_run_pushes_nothing() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo pushed > /p\n", var("KILN_BASE_IMAGE")),
        )],
    );
    let registry = var("KILN_REGISTRY_AUTH");
    let user = var("KILN_REGISTRY_USER");
    let password = var("KILN_REGISTRY_PASSWORD");
    let repo = format!("{registry}/{}", unique("buildpush"));
    let pipeline = |dry: bool| {
        format!(
            r#"
name: build-push
steps:
  - id: image
    uses: build
    allow: {{ net: ["{registry}"] }}
    secrets: [REGISTRY_PASSWORD]
    with:
      tags: ["{repo}:1", "{repo}:stable"]
      push: true
      dry-run: {dry}
      auth: {{ username: {user}, password: REGISTRY_PASSWORD }}
"#
        )
    };
    let creds = format!("{user}:{password}");
    let (out, run) = kiln_run(
        home.path(),
        &pipeline(true),
        &[("REGISTRY_PASSWORD", &password)],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "image")["outputs"]["pushed"], false);
    assert!(text(&out.stderr).contains("dry run: would push"));
    assert!(inspect(&format!("{repo}:1"), Some(&creds), false).is_err());

    let (out, run) = kiln_run(
        home.path(),
        &pipeline(false),
        &[("REGISTRY_PASSWORD", &password)],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outputs = &step(&run, "image")["outputs"];
    assert_eq!(outputs["pushed"], true);
    let digest = outputs["digest"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        outputs["references"],
        serde_json::json!([
            format!("{repo}@{digest}"),
            format!("{repo}:1"),
            format!("{repo}:stable")
        ])
    );
    for tag in ["1", "stable"] {
        let manifest = inspect(&format!("{repo}:{tag}"), Some(&creds), false).expect("pushed");
        assert_eq!(manifest["Digest"], digest.as_str());
    }
    assert!(!text(&out.stderr).contains(&password));

    // Pushing needs the registry in allow.net, checked before anything is built.
    let ungranted = pipeline(false).replace(&format!("allow: {{ net: [\"{registry}\"] }}"), "");
    let (out, run) = kiln_run(
        home.path(),
        &ungranted,
        &[("REGISTRY_PASSWORD", &password)],
        &[],
    );
    assert!(!out.status.success());
    let error = step(&run, "image")["error"].to_string();
    assert!(
        error.contains("not in the step's network grants"),
        "{error}"
    );
}

#[test]
fn an_inline_cache_is_imported_from_the_registry_and_other_cache_exports_are_refused_on_docker() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {} > /cached\n",
                var("KILN_BASE_IMAGE"),
                unique("layer")
            ),
        )],
    );
    let registry = var("KILN_REGISTRY");
    let repo = format!("{registry}/{}", unique("inline"));
    let pipeline = format!(
        r#"
name: cache
steps:
  - id: image
    uses: build
    allow: {{ net: ["{registry}"] }}
    with: {{ tags: "{repo}:1", push: true, cache-to: "type=inline", cache-from: "{repo}:1" }}
"#
    );
    let (out, _) = kiln_run(home.path(), &pipeline, &[], &[]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The pushed image carries its cache metadata (in the raw config: skopeo's parsed view
    // drops keys it does not know).
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        &format!("docker://{repo}:1"),
    ]);
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    assert!(
        text(&raw.stdout).contains("moby.buildkit.cache.v0"),
        "{}",
        text(&raw.stdout)
    );
    // A second build imports the pushed image as its cache.
    let (out, _) = kiln_run(home.path(), &pipeline, &[], &[]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("importing cache manifest from"), "{log}");

    let refused = pipeline.replace("type=inline", &format!("type=registry,ref={repo}:cache"));
    let (out, run) = kiln_run(home.path(), &refused, &[], &[]);
    assert!(!out.status.success());
    let error = step(&run, "image")["error"].to_string();
    assert!(
        error.contains("cache export of type `registry` on Docker's BuildKit is not supported"),
        "{error}"
    );
}

#[test]
fn a_standalone_buildkitd_that_is_not_there_is_a_clear_unreachable_error() {
    let home = tempfile::tempdir().expect("tmp");
    write(&home.path().join("ws"), &[("Dockerfile", "FROM scratch\n")]);
    let pipeline = "name: bk\nsteps:\n  - id: image\n    uses: build\n    retry: { attempts: 2, backoff: 10ms }\n";
    let (out, run) = kiln_run(
        home.path(),
        pipeline,
        &[],
        &[("KILN_BUILDKIT_ADDR", "unix:///nonexistent/buildkitd.sock")],
    );
    assert!(!out.status.success());
    let image = step(&run, "image");
    let error = image["error"].to_string();
    assert!(
        error.contains("cannot reach BuildKit at `unix:///nonexistent/buildkitd.sock`"),
        "{error}"
    );
    // Unreachable is worth retrying.
    assert_eq!(image["attempts"], 2, "{image:#}");
}

/// The standalone driver against a real buildkitd, when `BUILDKIT_ADDR` names one (for
/// example `unix:///run/buildkit/buildkitd.sock`, or `tcp://host:1234` with
/// `KILN_BUILDKIT_TLS_CA`/`_CERT`/`_KEY`). None can be installed on the CI machines, so there
/// the test says so and checks nothing.
#[test]
fn a_standalone_buildkitd_builds_with_progress_and_secrets_and_pushes_by_itself() {
    let Ok(addr) = std::env::var("BUILDKIT_ADDR") else {
        eprintln!("SKIP: BUILDKIT_ADDR is not set (no standalone buildkitd to test against)");
        return;
    };
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[
            (
                "Dockerfile",
                "FROM scratch AS base\nCOPY hello.txt /\nFROM base\nLABEL org.example.via=buildkitd\n",
            ),
            ("hello.txt", "hello\n"),
        ],
    );
    let registry = var("KILN_REGISTRY");
    let repo = format!("{registry}/{}", unique("buildkitd"));
    let pipeline = format!(
        "name: bk\nsteps:\n  - id: image\n    uses: build\n    allow: {{ net: [\"{registry}\"] }}\n    with: {{ tags: \"{repo}:1\", push: true }}\n"
    );
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[],
        &[("KILN_BUILDKIT_ADDR", &addr)],
    );
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("COPY hello.txt"), "{log}");
    let outputs = &step(&run, "image")["outputs"];
    assert_eq!(outputs["driver"], "buildkitd");
    let manifest = inspect(&format!("{repo}:1"), None, false).expect("pushed by buildkitd");
    assert_eq!(manifest["Digest"], outputs["digest"]);
    assert_eq!(manifest["Labels"]["org.example.via"], "buildkitd");

    // A separate push step cannot work there, and says what to do instead.
    let pipeline = format!(
        "name: bk\nsteps:\n  - id: publish\n    uses: push\n    allow: {{ net: [\"{registry}\"] }}\n    with: {{ image: \"{repo}:1\" }}\n"
    );
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[],
        &[("KILN_BUILDKIT_ADDR", &addr)],
    );
    assert!(!out.status.success());
    let error = step(&run, "publish")["error"].to_string();
    assert!(
        error.contains("set `push: true` on the `build` step"),
        "{error}"
    );
}
