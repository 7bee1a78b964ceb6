//! Golden tests: each `pipelines/invalid/NAME.yaml` has `NAME.err` beside it, the rendered
//! diagnostics. `KILN_BLESS=1 cargo test -p kiln-pipeline` rewrites them.

use std::path::{Path, PathBuf};

use kiln_pipeline::diag::CODES;
use kiln_pipeline::{has_errors, parse, render};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/invalid")
}

fn fixtures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn every_invalid_pipeline_renders_exactly_its_golden_diagnostics() {
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let files = fixtures();
    assert!(
        files.len() >= 20,
        "expected the invalid fixtures, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for yaml in &files {
        let name = name_of(yaml);
        let text = std::fs::read_to_string(yaml).unwrap_or_default();
        let display = format!("pipelines/invalid/{name}");
        let (_, diags) = parse(&display, &text);
        if !has_errors(&diags) {
            failures.push(format!("{name}: no error reported"));
        }
        let got = render(&diags);
        let err_path = yaml.with_extension("err");
        if bless {
            if let Err(e) = std::fs::write(&err_path, &got) {
                failures.push(format!("{name}: cannot write {}: {e}", err_path.display()));
            }
            continue;
        }
        let want = std::fs::read_to_string(&err_path).unwrap_or_default();
        if got != want {
            failures.push(format!("{name}:\n--- want\n{want}--- got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `KILN_BLESS=1 cargo test -p kiln-pipeline` to accept the new output)",
        failures.join("\n")
    );
}

#[test]
fn every_golden_file_has_its_pipeline() {
    let stale: Vec<String> = std::fs::read_dir(fixtures_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "err"))
                .filter(|p| !p.with_extension("yaml").exists())
                .map(|p| name_of(&p))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stale.is_empty(),
        "golden files without a pipeline: {stale:?}"
    );
}

#[test]
fn every_diagnostic_code_is_covered_by_a_golden_fixture() {
    let all: String = fixtures()
        .iter()
        .map(|p| std::fs::read_to_string(p.with_extension("err")).unwrap_or_default())
        .collect();
    let missing: Vec<&str> = CODES
        .iter()
        .map(|c| c.0)
        .filter(|code| !all.contains(&format!("[{code}]")))
        .collect();
    assert!(missing.is_empty(), "codes without a fixture: {missing:?}");
}
