//! Nx affected detection end to end: `kiln nx affected` and the `nx-affected` plugin on real git
//! repositories built from kiln-nx's corpus of real-Nx answers.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{kiln, repo, run_json, step, text};

/// Run git in `dir`, panicking with its stderr on failure; stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("test fixture") {
        let entry = entry.expect("test fixture");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("test fixture").is_dir() {
            std::fs::create_dir_all(&target).expect("test fixture");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("test fixture");
        }
    }
}

/// A git repository of corpus case `case`: its `base/` as the first commit, its `edits.json`
/// as the second. Returns (base SHA, head SHA, what real Nx answered).
fn corpus_repo(case: &str, dir: &Path) -> (String, String, BTreeSet<String>) {
    let corpus = repo().join("engine/nx/tests/corpus").join(case);
    std::fs::create_dir_all(dir).expect("test fixture");
    copy_tree(&corpus.join("base"), dir);
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "base"]);
    let base = git(dir, &["rev-parse", "HEAD"]);
    let edits: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("edits.json")).expect("test fixture"),
    )
    .expect("test fixture");
    for pair in edits["rename"].as_array().into_iter().flatten() {
        let (from, to) = (
            pair[0].as_str().expect("test fixture"),
            pair[1].as_str().expect("test fixture"),
        );
        std::fs::create_dir_all(dir.join(to).parent().expect("test fixture"))
            .expect("test fixture");
        std::fs::rename(dir.join(from), dir.join(to)).expect("test fixture");
    }
    for path in edits["delete"].as_array().into_iter().flatten() {
        let path = dir.join(path.as_str().expect("test fixture"));
        if path.is_dir() {
            std::fs::remove_dir_all(path).expect("test fixture");
        } else {
            std::fs::remove_file(path).expect("test fixture");
        }
    }
    for (path, content) in edits["write"].as_object().into_iter().flatten() {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("test fixture")).expect("test fixture");
        let bytes = match content {
            Value::String(s) => s.clone(),
            other => format!(
                "{}\n",
                serde_json::to_string_pretty(other).expect("test fixture")
            ),
        };
        std::fs::write(path, bytes).expect("test fixture");
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "head"]);
    let head = git(dir, &["rev-parse", "HEAD"]);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("expected.json")).expect("test fixture"),
    )
    .expect("test fixture");
    let expected = expected["affected"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("test fixture").to_owned())
        .collect();
    (base, head, expected)
}

const CASES: &[&str] = &[
    "leaf-change-affects-dependents-transitively",
    "tsconfig-paths-only-change-affects-old-and-new-owners",
    "moved-file-between-projects",
];

#[test]
fn kiln_nx_affected_prints_what_real_nx_printed_for_corpus_cases() {
    let home = tempfile::tempdir().unwrap();
    for case in CASES {
        let dir = home.path().join(case);
        let (base, head, expected) = corpus_repo(case, &dir);
        let out = kiln(home.path())
            .args(["nx", "affected", "--json", "--repo"])
            .arg(&dir)
            .args(["--base", &base, "--head", &head])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{case}: {}", text(&out.stderr));
        let names: BTreeSet<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(names, expected, "{case}");
    }
}

#[test]
fn kiln_nx_affected_with_an_unknown_base_exits_2_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("repo");
    let (_, head, _) = corpus_repo(CASES[0], &dir);
    let out = kiln(home.path())
        .args(["nx", "affected", "--json", "--repo"])
        .arg(&dir)
        .args([
            "--base",
            "0123456789abcdef0123456789abcdef01234567",
            "--head",
            &head,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("0123456789abcdef0123456789abcdef01234567"),
        "{stderr}"
    );
}

/// A pipeline cloning `url`, running `nx-affected` (base/head from `with`, else the event) and
/// fanning out over its `projects`.
fn pipeline(dir: &Path, url: &str, with: &str) -> std::path::PathBuf {
    let file = dir.join("nx.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: nx
steps:
  - id: src
    uses: clone
    allow: {{ workspace: write }}
    with: {{ url: "{url}", path: src, ref: "${{{{ event.after }}}}" }}
  - id: affected
    uses: nx-affected
    needs: [src]
    with: {{ path: src{with} }}
  - id: each
    uses: echo
    needs: [affected]
    matrix:
      project: "${{{{ steps.affected.outputs.projects }}}}"
    with: {{ message: "testing ${{{{ matrix.project }}}}" }}
"#
        ),
    )
    .expect("test fixture");
    file
}

#[test]
fn a_pipeline_fans_out_over_exactly_the_projects_real_nx_reports_affected() {
    let home = tempfile::tempdir().unwrap();
    for case in CASES {
        let work = home.path().join(case);
        let dir = work.join("repo");
        let (base, head, expected) = corpus_repo(case, &dir);
        let url = format!("file://{}", dir.display());
        let file = pipeline(&work, &url, "");
        let event = work.join("event.json");
        std::fs::write(
            &event,
            json!({ "before": base, "after": head, "ref": "refs/heads/main" }).to_string(),
        )
        .unwrap();
        let out = kiln(home.path())
            .arg("run")
            .arg(&file)
            .arg("--event")
            .arg(&event)
            .arg("--json")
            .output()
            .unwrap();
        let run = run_json(&out);
        assert_eq!(run["state"], "succeeded", "{case}: {}", text(&out.stderr));
        let affected = &step(&run, "affected")["outputs"];
        assert_eq!(affected["count"], json!(expected.len()), "{case}");
        let details = affected["details"].as_array().unwrap();
        assert!(details.iter().all(|d| d["root"].is_string()), "{affected}");
        let fanned: BTreeSet<String> = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| {
                s["id"]
                    .as_str()?
                    .strip_prefix("each[project=")?
                    .strip_suffix(']')
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(fanned, expected, "{case}: {}", text(&out.stderr));
        for project in &expected {
            let each = step(&run, &format!("each[project={project}]"));
            assert_eq!(each["outputs"]["message"], format!("testing {project}"));
        }
    }
}

#[test]
fn nx_affected_with_an_unknown_base_fails_the_step_instead_of_reporting_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("repo");
    let (_, head, _) = corpus_repo(CASES[0], &dir);
    let file = pipeline(
        home.path(),
        &format!("file://{}", dir.display()),
        ", base: 0123456789abcdef0123456789abcdef01234567",
    );
    let event = home.path().join("event.json");
    std::fs::write(&event, json!({ "after": head }).to_string()).unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .arg("--event")
        .arg(&event)
        .arg("--json")
        .output()
        .unwrap();
    let run = run_json(&out);
    assert_eq!(run["state"], "failed", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
    let affected = step(&run, "affected");
    assert_eq!(affected["state"], "failed");
    let error = affected["error"].to_string();
    assert!(
        error.contains("0123456789abcdef0123456789abcdef01234567"),
        "{error}"
    );
    assert!(
        !run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"].as_str().is_some_and(|i| i.starts_with("each["))
                && s["state"] == "succeeded"),
        "{run:#}"
    );
}

#[test]
fn nx_affected_without_a_base_or_an_event_before_says_what_to_set() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("repo");
    let (_, head, _) = corpus_repo(CASES[0], &dir);
    let file = pipeline(home.path(), &format!("file://{}", dir.display()), "");
    let event = home.path().join("event.json");
    std::fs::write(&event, json!({ "after": head }).to_string()).unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .arg("--event")
        .arg(&event)
        .arg("--json")
        .output()
        .unwrap();
    let run = run_json(&out);
    let error = step(&run, "affected")["error"].to_string();
    assert!(error.contains("with.base"), "{error}");
}

#[test]
fn nx_affected_fails_the_step_on_a_repository_that_is_not_an_nx_workspace_or_has_a_broken_project_json()
 {
    let home = tempfile::tempdir().unwrap();
    for (case, message) in [
        ("not-an-nx-workspace", "not an nx workspace"),
        (
            "error-broken-project-json",
            "cannot parse `libs/bad/project.json` at 3:3",
        ),
    ] {
        let work = home.path().join(case);
        let dir = work.join("repo");
        let (base, head, _) = corpus_repo(case, &dir);
        let file = pipeline(&work, &format!("file://{}", dir.display()), "");
        let event = work.join("event.json");
        std::fs::write(&event, json!({ "before": base, "after": head }).to_string()).unwrap();
        let out = kiln(home.path())
            .arg("run")
            .arg(&file)
            .arg("--event")
            .arg(&event)
            .arg("--json")
            .output()
            .unwrap();
        let run = run_json(&out);
        assert_eq!(out.status.code(), Some(1), "{case}: {}", text(&out.stderr));
        let affected = step(&run, "affected");
        assert_eq!(affected["state"], "failed", "{case}");
        let error = affected["error"].to_string();
        assert!(error.contains(message), "{case}: {error}");
    }
}
