//! The `detect` built-in: golden Dockerfiles for the projects in `tests/detect/*/project`
//! (`KILN_BLESS=1` rewrites `expected.txt`), and real builds of detected Go, Node, Python,
//! Jupyter and static projects with the toolchain images of `scripts/services.sh up toolchains`,
//! run afterwards to show the image works.

use std::fmt::Write as _;
use std::path::Path;

use crate::image::{docker, kiln_run, unique, var, write};
use crate::support::{kiln, repo, step, text};

const DETECT: &str = "name: detect\nsteps:\n  - id: detect\n    uses: detect\n    allow: { workspace: write }\n    with: { path: project }\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// What a case produced: the outputs, then the Dockerfile and .dockerignore written (or the
/// step's error).
fn describe(ws: &Path, run: &serde_json::Value) -> String {
    let detect = step(run, "detect");
    let mut out = String::new();
    if detect["state"] != "succeeded" {
        let _ = writeln!(out, "state: {}", detect["state"]);
        let _ = writeln!(
            out,
            "error: {}",
            detect["error"].as_str().unwrap_or_default()
        );
        return out;
    }
    let outputs = &detect["outputs"];
    for key in [
        "language",
        "generated",
        "network",
        "port",
        "dockerfile",
        "context",
        "summary",
    ] {
        let _ = writeln!(out, "{key}: {}", outputs[key]);
    }
    if outputs["generated"] == true {
        let dockerfile = outputs["dockerfile"].as_str().unwrap_or_default();
        let body = std::fs::read_to_string(ws.join(dockerfile)).expect("the Dockerfile");
        let _ = write!(out, "--- {dockerfile}\n{body}");
        let ignore = std::fs::read_to_string(ws.join("project/.dockerignore")).unwrap_or_default();
        let _ = write!(out, "--- project/.dockerignore\n{ignore}");
    }
    out
}

#[test]
fn detected_projects_get_the_dockerfiles_of_their_golden_files() {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let cases = repo().join("tests/detect");
    let mut names: Vec<String> = std::fs::read_dir(&cases)
        .expect("tests/detect")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let home = tempfile::tempdir().expect("tmp");
        let ws = home.path().join("ws");
        copy_dir(&cases.join(name).join("project"), &ws.join("project"));
        let (_, run) = kiln_run(home.path(), DETECT, &[], &[]);
        let got = describe(&ws, &run);
        let golden = cases.join(name).join("expected.txt");
        if bless {
            std::fs::write(&golden, &got).expect("bless");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}--- got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "detect output differs from tests/detect/*/expected.txt (KILN_BLESS=1 rewrites):\n{}",
        failures.join("\n")
    );
}

#[test]
fn an_existing_dockerfile_is_kept_unless_overwrite_is_set() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    write(
        &ws,
        &[
            ("project/Dockerfile", "FROM scratch\n"),
            ("project/index.html", "<p>x</p>\n"),
        ],
    );
    let pipeline = DETECT.replace("path: project", "path: project, overwrite: true");
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "detect")["outputs"]["language"], "static");
    let written = std::fs::read_to_string(ws.join("project/Dockerfile")).expect("Dockerfile");
    assert!(
        written.contains("COPY . /usr/share/nginx/html/"),
        "{written}"
    );
}

#[test]
fn detect_needs_workspace_write_and_a_known_language() {
    let home = tempfile::tempdir().expect("tmp");
    let file = home.path().join("pipeline.yaml");
    std::fs::write(
        &file,
        "name: detect\nsteps:\n  - id: detect\n    uses: detect\n    with: { language: cobol, path: /abs }\n",
    )
    .expect("write");
    let out = kiln(home.path())
        .arg("validate")
        .arg(&file)
        .output()
        .expect("kiln runs");
    assert_eq!(out.status.code(), Some(1));
    let err = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(err.contains("needs `workspace-write`"), "{err}");
    assert!(err.contains("unknown language `cobol`"), "{err}");
    assert!(err.contains("`/abs` is absolute"), "{err}");
}

/// detect -> build of `files` with the given extra `with:` for detect, then the built image's
/// default command (or `cmd`) run with no network; returns its stdout.
fn detect_build_run(files: &[(&str, &str)], detect_with: &str, cmd: &[&str]) -> String {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    let owned: Vec<(String, &str)> = files
        .iter()
        .map(|(n, b)| (format!("project/{n}"), *b))
        .collect();
    let refs: Vec<(&str, &str)> = owned.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    write(&ws, &refs);
    let tag = format!("kiln.local/{}:1", unique("detect"));
    let pipeline = format!(
        "name: detect-build\nsteps:\n  - id: detect\n    uses: detect\n    allow: {{ workspace: write }}\n    with: {{ path: project, {detect_with} }}\n  - id: image\n    uses: build\n    needs: [detect]\n    with:\n      context: ${{{{ steps.detect.outputs.context }}}}\n      dockerfile: ${{{{ steps.detect.outputs.dockerfile }}}}\n      network: ${{{{ steps.detect.outputs.network }}}}\n      tags: \"{tag}\"\n"
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "detect")["outputs"]["generated"], true);
    let mut args = vec!["run", "--rm", "--network", "none", tag.as_str()];
    args.extend(cmd);
    let ran = docker(&args);
    assert!(
        ran.status.success(),
        "{}\n{}",
        text(&ran.stdout),
        text(&ran.stderr)
    );
    text(&ran.stdout)
}

#[test]
fn a_go_module_builds_in_a_builder_stage_and_runs_as_a_static_binary_on_the_base() {
    let stdout = detect_build_run(
        &[
            ("go.mod", "module example.com/hello\n\ngo 1.19\n"),
            (
                "cmd/hello/main.go",
                "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\n\t\"example.com/hello/internal/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello(\"go\"), os.Getuid()) }\n",
            ),
            (
                "internal/greet/greet.go",
                "package greet\n\nfunc Hello(who string) string { return \"hello from \" + who }\n",
            ),
        ],
        &format!(
            "builder-image: \"{}\", base-image: \"{}\"",
            var("KILN_IMAGE_GOLANG"),
            var("KILN_BASE_IMAGE")
        ),
        &[],
    );
    assert_eq!(stdout, "hello from go 65532\n");
}

#[test]
fn a_node_app_is_installed_with_npm_and_started_with_node_as_a_non_root_user() {
    let stdout = detect_build_run(
        &[
            (
                "package.json",
                "{ \"name\": \"app\", \"version\": \"1.0.0\", \"scripts\": { \"start\": \"node server.js\" } }\n",
            ),
            (
                "package-lock.json",
                "{ \"name\": \"app\", \"version\": \"1.0.0\", \"lockfileVersion\": 3, \"requires\": true, \"packages\": { \"\": { \"name\": \"app\", \"version\": \"1.0.0\" } } }\n",
            ),
            (
                "server.js",
                "console.log(`hello from node ${process.getuid()} ${process.env.NODE_ENV} ${process.env.PORT}`);\n",
            ),
        ],
        &format!("base-image: \"{}\"", var("KILN_IMAGE_NODE")),
        &[],
    );
    assert_eq!(stdout, "hello from node 1000 production 3000\n");
}

#[test]
fn a_node_front_end_is_built_and_its_output_served_as_static_files() {
    let stdout = detect_build_run(
        &[
            (
                "package.json",
                "{ \"name\": \"web\", \"private\": true, \"scripts\": { \"build\": \"node build.js\" } }\n",
            ),
            (
                "build.js",
                "require('fs').mkdirSync('dist', { recursive: true });\nrequire('fs').writeFileSync('dist/index.html', '<p>built</p>\\n');\n",
            ),
        ],
        &format!(
            "builder-image: \"{}\", base-image: \"{}\"",
            var("KILN_IMAGE_NODE"),
            var("KILN_BASE_IMAGE")
        ),
        &["cat", "/usr/share/nginx/html/index.html"],
    );
    assert_eq!(stdout, "<p>built</p>\n");
}

#[test]
fn a_python_app_runs_from_its_virtual_environment() {
    let stdout = detect_build_run(
        &[
            ("requirements.txt", "# nothing to install yet\n"),
            (
                "main.py",
                "import os, sys\nprint('hello from python', os.getuid(), sys.prefix)\n",
            ),
        ],
        &format!("base-image: \"{}\"", var("KILN_IMAGE_PYTHON")),
        &[],
    );
    assert_eq!(stdout, "hello from python 1000 /opt/venv\n");
}

#[test]
fn a_notebook_project_starts_a_jupyter_server_that_runs_its_notebooks() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    let notebook = r#"{"cells": [{"cell_type": "code", "execution_count": null, "id": "a1", "metadata": {}, "outputs": [], "source": ["open('/tmp/ran', 'w').write(str(6 * 7))"]}], "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}"#;
    write(&ws, &[("project/analysis/answer.ipynb", notebook)]);
    let tag = format!("kiln.local/{}:1", unique("jupyter"));
    let pipeline = format!(
        "name: nb\nsteps:\n  - id: detect\n    uses: detect\n    allow: {{ workspace: write }}\n    with: {{ path: project, base-image: \"{}\" }}\n  - id: image\n    uses: build\n    needs: [detect]\n    with: {{ context: project, tags: \"{tag}\" }}\n",
        var("KILN_IMAGE_JUPYTER")
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "detect")["outputs"]["language"], "jupyter");
    let name = unique("nb").replace('/', "-");
    let started = docker(&["run", "-d", "--name", &name, "--network", "none", &tag]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let mut logs = String::new();
    for _ in 0..100 {
        let l = docker(&["logs", &name]);
        logs = format!("{}{}", text(&l.stdout), text(&l.stderr));
        if logs.contains("running at") || logs.contains("is running") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let executed = docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "jupyter execute analysis/answer.ipynb >/dev/null 2>&1; cat /tmp/ran; echo; id -u",
    ]);
    let _ = docker(&["rm", "-f", &name]);
    assert!(logs.contains("8888"), "{logs}");
    assert_eq!(
        text(&executed.stdout),
        "42\n1000\n",
        "{}",
        text(&executed.stderr)
    );
}

#[test]
fn a_static_site_is_copied_into_the_web_root() {
    let stdout = detect_build_run(
        &[
            ("index.html", "<h1>hello</h1>\n"),
            ("css/site.css", "h1{}\n"),
        ],
        &format!("base-image: \"{}\"", var("KILN_BASE_IMAGE")),
        &[
            "sh",
            "-c",
            "cat /usr/share/nginx/html/index.html; ls /usr/share/nginx/html",
        ],
    );
    // The generated .dockerignore keeps the Dockerfile out of the context (BuildKit reads it
    // from its own directory), as `docker build` does.
    assert_eq!(stdout, "<h1>hello</h1>\ncss\nindex.html\n");
}

#[test]
fn projects_mode_writes_one_dockerfile_per_matching_project_and_names_their_images() {
    let home = tempfile::tempdir().expect("tmp");
    let ws = home.path().join("ws");
    let notebook = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    write(
        &ws,
        &[
            ("repo/Weather Report/forecast.ipynb", notebook),
            ("repo/sales/q1.ipynb", notebook),
            ("repo/sales/requirements.txt", "pandas\n"),
            ("repo/team/deep/nb.ipynb", notebook),
            ("repo/docs/README.md", "not a project\n"),
            ("repo/node_modules/x/y.ipynb", notebook),
        ],
    );
    let pipeline = DETECT.replace(
        "path: project",
        "path: repo, projects: [\"*\", \"team/**\"], language: jupyter",
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outputs = &step(&run, "detect")["outputs"];
    assert_eq!(
        outputs["projects"],
        // `team` holds a notebook below it, so it is a project too, as is `team/deep`.
        serde_json::json!(["Weather Report", "sales", "team", "team/deep"]),
        "{outputs}"
    );
    assert_eq!(outputs["count"], 4);
    let weather = &outputs["by-project"]["Weather Report"];
    assert_eq!(weather["image-name"], "weather-report", "{weather}");
    assert_eq!(weather["context"], "repo/Weather Report");
    assert_eq!(
        outputs["by-project"]["team/deep"]["image-name"],
        "team/deep"
    );
    for dir in ["Weather Report", "sales", "team", "team/deep"] {
        let dockerfile = ws.join("repo").join(dir).join("Dockerfile");
        let body = std::fs::read_to_string(&dockerfile).expect("a Dockerfile per project");
        assert!(body.contains("jupyter"), "{dir}: {body}");
    }
    let sales = std::fs::read_to_string(ws.join("repo/sales/Dockerfile")).expect("sales");
    assert!(sales.contains("pip install -r requirements.txt"), "{sales}");
    assert!(!ws.join("repo/docs/Dockerfile").exists(), "not a project");
    assert!(
        !ws.join("repo/node_modules/x/Dockerfile").exists(),
        "never searched"
    );

    // No match is an error naming the patterns, never an empty success.
    let home = tempfile::tempdir().expect("tmp");
    write(&home.path().join("ws"), &[("repo/docs/README.md", "x\n")]);
    let pipeline = DETECT.replace("path: project", "path: repo, projects: \"nb-*\"");
    let (out, run) = kiln_run(home.path(), &pipeline, &[], &[]);
    assert!(!out.status.success());
    let error = step(&run, "detect")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("`nb-*`"), "{error}");
}
