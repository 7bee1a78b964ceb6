//! Runs `kiln_nx::affected` on every case of `tests/corpus` and compares with what real Nx 24
//! answered (`expected.json`, recorded by `tests/corpus/record.mjs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_nx::{Change, ChangeKind, Error, Snapshot};

/// A workspace tree held in memory: path -> bytes.
struct Tree(BTreeMap<String, Vec<u8>>);

impl Snapshot for Tree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.0.get(path).cloned())
    }
    fn list(&self) -> Result<Vec<String>, Error> {
        Ok(self.0.keys().cloned().collect())
    }
}

fn read_tree(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if e.path().is_dir() {
            read_tree(&e.path(), &rel, out);
        } else {
            out.insert(rel, std::fs::read(e.path()).expect("read corpus file"));
        }
    }
}

/// Applies `edits.json` like `record.mjs`: renames, then deletions, then writes.
fn apply_edits(
    base: &BTreeMap<String, Vec<u8>>,
    edits: &serde_json::Value,
) -> BTreeMap<String, Vec<u8>> {
    let mut head = base.clone();
    let under = |p: &str, dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
    for pair in edits["rename"].as_array().into_iter().flatten() {
        let (from, to) = (
            pair[0].as_str().expect("from"),
            pair[1].as_str().expect("to"),
        );
        let moved: Vec<String> = head.keys().filter(|k| under(k, from)).cloned().collect();
        for k in moved {
            let v = head.remove(&k).expect("present");
            head.insert(format!("{to}{}", &k[from.len()..]), v);
        }
    }
    for d in edits["delete"].as_array().into_iter().flatten() {
        let d = d.as_str().expect("path");
        head.retain(|k, _| !under(k, d));
    }
    for (path, content) in edits["write"].as_object().into_iter().flatten() {
        let text = match content {
            serde_json::Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other).expect("json") + "\n",
        };
        head.insert(path.clone(), text.into_bytes());
    }
    head
}

/// The change list git would report, with renames where the content is identical.
fn diff_trees(base: &BTreeMap<String, Vec<u8>>, head: &BTreeMap<String, Vec<u8>>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut deleted: Vec<&String> = base.keys().filter(|k| !head.contains_key(*k)).collect();
    for (path, content) in head {
        match base.get(path) {
            Some(old) if old == content => {}
            Some(_) => changes.push(Change::new(ChangeKind::Modified, path.clone())),
            None => match deleted.iter().position(|d| base[*d] == *content) {
                Some(i) => changes.push(Change::renamed(deleted.remove(i).clone(), path.clone())),
                None => changes.push(Change::new(ChangeKind::Added, path.clone())),
            },
        }
    }
    changes.extend(
        deleted
            .into_iter()
            .map(|d| Change::new(ChangeKind::Deleted, d.clone())),
    );
    changes
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn load_case(dir: &Path) -> (Tree, Tree, Vec<Change>) {
    let mut base = BTreeMap::new();
    read_tree(&dir.join("base"), "", &mut base);
    let edits: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("edits.json")).expect("edits.json"))
            .expect("edits.json is JSON");
    let head = apply_edits(&base, &edits);
    let changes = diff_trees(&base, &head);
    (Tree(base), Tree(head), changes)
}

#[test]
fn every_corpus_case_gives_the_same_projects_as_real_nx() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("edits.json").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "the corpus should have at least 30 cases"
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
        )
        .expect("expected.json is JSON");
        // A deliberate divergence from Nx is documented in the case's `kiln-expects-error` file.
        let expects_error = expected["error"] == true || dir.join("kiln-expects-error").exists();
        let (base, head, changes) = load_case(dir);
        match (kiln_nx::affected(&base, &head, &changes), expects_error) {
            (Ok(projects), false) => {
                let mut got: Vec<String> = projects.into_iter().map(|p| p.name).collect();
                got.sort();
                let mut want: Vec<String> = expected["affected"]
                    .as_array()
                    .expect("affected list")
                    .iter()
                    .map(|v| v.as_str().expect("name").to_string())
                    .collect();
                want.sort();
                if got != want {
                    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
                    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
                    failures.push(format!(
                        "{name}: nx {want:?}, kiln {got:?} (missing {missing:?}, extra {extra:?}; changes {changes:?})"
                    ));
                }
            }
            (Err(_), true) => {}
            (Ok(projects), true) => failures.push(format!(
                "{name}: nx failed, kiln answered {:?}",
                projects.iter().map(|p| &p.name).collect::<Vec<_>>()
            )),
            (Err(e), false) => failures.push(format!("{name}: kiln failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from real Nx:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_broken_project_json_is_reported_with_file_and_position() {
    let (base, head, changes) = load_case(&corpus_dir().join("error-broken-project-json"));
    let err = kiln_nx::affected(&base, &head, &changes).expect_err("broken project.json");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot parse `libs/bad/project.json` at 3:3: expected `,` or `}`"),
        "{text}"
    );
    assert!(text.contains("hint:"), "{text}");
}

#[test]
fn a_repository_without_nx_json_or_workspaces_is_not_an_nx_workspace() {
    let (base, head, changes) = load_case(&corpus_dir().join("not-an-nx-workspace"));
    let err = kiln_nx::affected(&base, &head, &changes).expect_err("not a workspace");
    assert!(matches!(err, Error::NotAWorkspace), "{err}");
    assert!(err.to_string().contains("`nx.json`"));
}
