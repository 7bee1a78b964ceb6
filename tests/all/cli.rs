//! The `kiln` CLI end to end: run, validate, graph, schema, plugins.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{kiln, plugin, repo, run_json, step, text};

#[test]
fn the_example_pipeline_runs_fans_out_and_writes_its_files() {
    let home = tempfile::tempdir().unwrap();
    let ws = home.path().join("ws");
    let out = kiln(home.path())
        .args(["run", "pipelines/hello.yaml", "--json", "--workspace"])
        .arg(&ws)
        .output()
        .unwrap();
    let run = run_json(&out);
    assert_eq!(run["state"], "succeeded", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(step(&run, "build[app=docs]")["state"], "skipped");
    assert_eq!(step(&run, "build[app=web]")["state"], "succeeded");
    let greeting = step(&run, "greet")["outputs"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(greeting.starts_with("hello from kiln, run "), "{greeting}");
    let web = std::fs::read_to_string(ws.join("out/web.txt")).unwrap();
    assert_eq!(web, format!("{greeting}: built web\n"));
    assert!(!ws.join("out/docs.txt").exists());
    assert_eq!(
        step(&run, "summary")["outputs"]["message"],
        "wrote out/web.txt, out/api.txt"
    );
}

#[test]
fn progress_is_plain_lines_per_step_when_stdout_is_not_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path())
        .args(["run", "pipelines/hello.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("[greet] started\n"), "{stdout}");
    assert!(stdout.contains("[greet] hello from kiln"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[greet] succeeded in ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("[build[app=docs]] skipped: its `if:` condition is false"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("run ") && l.contains(" succeeded in ")),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colors when not a terminal");
}

#[test]
fn a_failing_step_fails_the_run_with_exit_code_1_and_its_error() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("fail.yaml");
    let hostile = plugin("hostile");
    std::fs::write(
        &file,
        format!(
            "name: fail\nsteps:\n  - id: crash\n    uses: {}\n    with: {{ behaviour: trap }}\n  - id: after\n    uses: echo\n    needs: [crash]\n    with: {{ message: never }}\n",
            hostile.display()
        ),
    )
    .unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run = run_json(&out);
    assert_eq!(run["state"], "failed");
    assert_eq!(step(&run, "crash")["state"], "failed");
    assert!(
        step(&run, "crash")["error"]
            .as_str()
            .unwrap()
            .contains("crashed"),
        "{run:#}"
    );
    assert_eq!(step(&run, "after")["state"], "skipped");
}

#[test]
fn a_missing_secret_is_refused_before_anything_runs() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("s.yaml");
    std::fs::write(&file, "name: s\nsteps:\n  - id: a\n    uses: echo\n    secrets: [API_TOKEN]\n    with: { message: \"${{ secrets.API_TOKEN }}\" }\n").unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .env_remove("API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("needs secrets that were not given: `API_TOKEN`"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn a_secret_is_masked_in_the_log_and_the_outputs() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("s.yaml");
    std::fs::write(&file, "name: s\nsteps:\n  - id: a\n    uses: echo\n    secrets: [API_TOKEN]\n    with: { message: \"token ${{ secrets.API_TOKEN }}\" }\n").unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .args(["--json", "--secret", "API_TOKEN"])
        .env("API_TOKEN", "tok-9f8e7d")
        .output()
        .unwrap();
    let run = run_json(&out);
    assert_eq!(run["state"], "succeeded");
    assert_eq!(step(&run, "a")["outputs"]["message"], "token ***");
    assert!(text(&out.stderr).contains("token ***"));
    assert!(!text(&out.stderr).contains("tok-9f8e7d") && !text(&out.stdout).contains("tok-9f8e7d"));
}

#[test]
fn validate_reports_plugin_level_problems_as_json() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path())
        .args([
            "validate",
            "--format",
            "json",
            "tests/ui/unknown-plugin.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &diags[0];
    assert_eq!(first["code"], "K201");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 5);
    assert!(
        first["hint"]
            .as_str()
            .unwrap()
            .contains("did you mean `echo`?"),
        "{diags:#}"
    );
}

#[test]
fn validate_accepts_every_example_pipeline() {
    let home = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let out = kiln(home.path())
        .arg("validate")
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn graph_prints_the_dag_as_mermaid_and_dot() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path())
        .args(["graph", "pipelines/hello.yaml"])
        .output()
        .unwrap();
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("n0[\"greet<br/>echo\"]"), "{mermaid}");
    assert!(
        mermaid.contains("n2[\"build [matrix]<br/>write-file\"]"),
        "{mermaid}"
    );
    assert!(
        mermaid.contains("n0 --> n2")
            && mermaid.contains("n1 --> n2")
            && mermaid.contains("n2 --> n3")
    );
    let out = kiln(home.path())
        .args(["graph", "--format", "dot", "pipelines/hello.yaml"])
        .output()
        .unwrap();
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"hello\" {"), "{dot}");
    assert!(dot.contains("n2 -> n3;"), "{dot}");
}

#[test]
fn schema_prints_the_committed_json_schema() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path()).arg("schema").output().unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("engine/pipeline/pipeline.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(printed, committed);
}

#[test]
fn plugins_lists_the_built_ins_with_what_they_need() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path()).arg("plugins").output().unwrap();
    let listing = text(&out.stdout);
    assert!(listing.lines().any(|l| l.starts_with("echo ")), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("write-file ") && l.contains("[needs: workspace-write]")),
        "{listing}"
    );
    let out = kiln(home.path())
        .args(["plugins", "echo"])
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("\"message\""));
}

#[test]
fn ctrl_c_cancels_running_steps_and_ends_the_run_cancelled() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("spin.yaml");
    std::fs::write(
        &file,
        format!(
            "name: spin\nsteps:\n  - id: spin\n    uses: {}\n    with: {{ behaviour: spin }}\n  - id: after\n    uses: echo\n    needs: [spin]\n    with: {{ message: never }}\n",
            plugin("hostile").display()
        ),
    )
    .unwrap();
    let mut child = kiln(home.path())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the step is running (progress goes to stderr with --json), then interrupt.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("spin") {
        line.clear();
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{rest}");
    let run = run_json(&out);
    assert_eq!(run["state"], "cancelled");
    assert_eq!(step(&run, "spin")["state"], "cancelled");
    assert_eq!(step(&run, "after")["state"], "skipped");
    assert_eq!(
        step(&run, "after")["reason"],
        json!("the run was cancelled")
    );
}

#[test]
fn your_own_plugin_runs_by_path_like_a_built_in() {
    let home = tempfile::tempdir().unwrap();
    let out = kiln(home.path())
        .args(["run", "pipelines/own-plugin.yaml", "--json"])
        .output()
        .unwrap();
    let run = run_json(&out);
    assert_eq!(run["state"], "succeeded", "{}", text(&out.stderr));
    assert_eq!(
        step(&run, "tell")["outputs"]["message"],
        "Hello, Kiln! (1 file in the workspace)"
    );
}
