//! Golden files for plugin-level diagnostics: `tests/ui/NAME.yaml` beside `NAME.err`, the exact
//! output of `kiln validate`. Rewrite them with `KILN_BLESS=1`. (Parse-level diagnostics have
//! their own golden files in `pipelines/invalid/`, tested by the kiln-pipeline crate.)

use crate::support::{kiln, repo, text};

#[test]
fn plugin_level_diagnostics_match_their_golden_files() {
    let home = tempfile::tempdir().unwrap();
    let dir = repo().join("tests/ui");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "expected the ui cases in {}",
        dir.display()
    );
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let rel = case.strip_prefix(repo()).unwrap().to_path_buf();
        let out = kiln(home.path())
            .arg("validate")
            .arg(&rel)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} should be invalid:\n{}",
            rel.display(),
            text(&out.stdout)
        );
        let actual = text(&out.stdout);
        let golden = case.with_extension("err");
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if actual != expected {
            failures.push(format!("--- {}\n{actual}", golden.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "output differs from golden files (KILN_BLESS=1 to rewrite):\n{}",
        failures.join("\n")
    );
}
