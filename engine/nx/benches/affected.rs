//! Benchmark: a generated Nx workspace of 2,000 projects and 50,000 files (TS imports through
//! tsconfig paths, `@nx/js` present so imports are analysed), one changed file in the middle of
//! the dependency graph. Prints kiln-nx's time and, when real Nx is installed in
//! `target/nx-real` (see `tests/corpus/record.mjs`), real Nx's time on the same git repository,
//! the ratio, and whether the answers are identical.
//!
//! `cargo bench -p kiln-nx` (env `KILN_NX_BENCH_PROJECTS`, default 2000; 25 files each).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln_nx::{Change, ChangeKind, Error, Snapshot};

const FILES_PER_PROJECT: usize = 25;

/// Head: files read from the working tree on disk, listed like `git ls-files`.
struct DiskSnapshot {
    root: PathBuf,
    files: Vec<String>,
}

impl Snapshot for DiskSnapshot {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        match std::fs::read(self.root.join(path)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::read(path, e.to_string())),
        }
    }
    fn list(&self) -> Result<Vec<String>, Error> {
        Ok(self.files.clone())
    }
}

/// Base: the few files that differ, in memory (a git blob read in the real callers).
struct MemSnapshot(HashMap<String, Vec<u8>>, Vec<String>);

impl Snapshot for MemSnapshot {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.0.get(path).cloned())
    }
    fn list(&self) -> Result<Vec<String>, Error> {
        Ok(self.1.clone())
    }
}

fn generate(dir: &Path, projects: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut paths = serde_json::Map::new();
    for i in 0..projects {
        paths.insert(
            format!("@bench/lib{i}"),
            serde_json::json!([format!("libs/lib{i}/src/index.ts")]),
        );
    }
    files.push((
        "package.json".into(),
        r#"{"name":"bench","private":true,"devDependencies":{"nx":"24.0.6","@nx/js":"24.0.6","typescript":"5.9.3"}}"#.into(),
    ));
    files.push((
        "nx.json".into(),
        r#"{"namedInputs":{"default":["{projectRoot}/**/*"],"production":["default","!{projectRoot}/**/*.spec.ts"]},"targetDefaults":{"build":{"inputs":["production","^production","{workspaceRoot}/babel.config.json"]}}}"#.into(),
    ));
    files.push((
        "tsconfig.base.json".into(),
        serde_json::to_string_pretty(
            &serde_json::json!({"compilerOptions": {"baseUrl": ".", "paths": paths}}),
        )
        .expect("json"),
    ));
    files.push(("babel.config.json".into(), "{}\n".into()));
    files.push(("README.md".into(), "# bench\n".into()));
    for i in 0..projects {
        let root = format!("libs/lib{i}");
        let kind = if i % 10 == 0 {
            "application"
        } else {
            "library"
        };
        files.push((
            format!("{root}/project.json"),
            format!(
                r#"{{"name":"lib{i}","projectType":"{kind}","tags":["t{}"],"targets":{{"build":{{"command":"echo"}}}}}}"#,
                i % 7
            ),
        ));
        // Each project imports two lower-numbered ones (a binary tree plus a skip link): a DAG
        // where a change in the middle affects a few dozen projects.
        let mut index = String::new();
        if i > 0 {
            index.push_str(&format!(
                "import {{ v as a }} from '@bench/lib{}';\n",
                i / 2
            ));
            index.push_str(&format!(
                "export * from '@bench/lib{}';\n",
                i - 1 - (i * 7919 % 97).min(i - 1)
            ));
        }
        index.push_str("import { helper } from './f1';\nexport const v = helper;\n");
        files.push((format!("{root}/src/index.ts"), index));
        for j in 1..FILES_PER_PROJECT - 1 {
            files.push((
                format!("{root}/src/f{j}.ts"),
                format!("// file {j} of lib{i}\nimport {{ x }} from 'lodash';\nexport const helper = `{j}` + '/' + x;\n"),
            ));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    for (path, text) in &files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    files
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?} failed");
}

fn main() {
    let projects: usize = std::env::var("KILN_NX_BENCH_PROJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = target.join("nx-bench/workspace");
    let t = Instant::now();
    let files = generate(&dir, projects);
    println!(
        "generated {projects} projects, {} files in {:.1?}",
        files.len(),
        t.elapsed()
    );

    // Head changes one file in the middle of the graph.
    let changed = format!("libs/lib{}/src/f3.ts", projects / 2);
    let base: HashMap<String, Vec<u8>> = files
        .iter()
        .filter(|(p, _)| p == &changed || !p.starts_with("libs/"))
        .map(|(p, t)| (p.clone(), t.clone().into_bytes()))
        .collect();
    let mut listed: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    listed.sort();
    let base = MemSnapshot(base, listed.clone());

    let has_git = Command::new("git").arg("--version").output().is_ok();
    if has_git {
        git(&dir, &["init", "-q", "-b", "main"]);
        git(&dir, &["config", "user.email", "bench@kiln.invalid"]);
        git(&dir, &["config", "user.name", "bench"]);
        std::fs::write(dir.join(".git/info/exclude"), "node_modules\n.nx\n").expect("exclude");
        git(&dir, &["add", "-A"]);
        git(&dir, &["commit", "-q", "-m", "base"]);
    }
    std::fs::write(dir.join(&changed), "export const helper = 'changed';\n").expect("edit");
    if has_git {
        git(&dir, &["commit", "-q", "-am", "head"]);
    }
    let head = DiskSnapshot {
        root: dir.clone(),
        files: listed,
    };
    let changes = vec![Change::new(ChangeKind::Modified, changed.clone())];

    let mut best = f64::MAX;
    let mut answer = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let got = kiln_nx::affected(&base, &head, &changes).expect("affected");
        best = best.min(t.elapsed().as_secs_f64());
        answer = got.into_iter().map(|p| p.name).collect::<Vec<_>>();
    }
    answer.sort();
    let t = Instant::now();
    let all = kiln_nx::projects(&head).expect("projects");
    println!(
        "kiln-nx: loading the {} projects alone takes {:.1} ms",
        all.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "kiln-nx: {:.1} ms (best of 5), {} affected projects",
        best * 1000.0,
        answer.len()
    );

    let nx = target.join("nx-real/node_modules/.bin/nx");
    if !nx.exists() || !has_git {
        println!(
            "real nx: not installed (run engine/nx/tests/corpus/record.mjs once to install it)"
        );
        return;
    }
    let _ = std::os::unix::fs::symlink(
        target.join("nx-real/node_modules"),
        dir.join("node_modules"),
    );
    let t = Instant::now();
    let out = Command::new(&nx)
        .args([
            "show",
            "projects",
            "--affected",
            "--base=HEAD~1",
            "--head=HEAD",
            "--json",
        ])
        .current_dir(&dir)
        .env("NX_DAEMON", "false")
        .env("NX_NO_CLOUD", "true")
        .env("NX_TUI", "false")
        .output()
        .expect("run nx");
    let nx_time = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rfind(|l| l.starts_with('[')).unwrap_or("[]");
    let mut nx_answer: Vec<String> = serde_json::from_str(line).expect("nx json");
    nx_answer.sort();
    println!(
        "real nx: {:.2} s, {} affected projects; kiln-nx is {:.0}x faster; answers {}",
        nx_time,
        nx_answer.len(),
        nx_time / best,
        if nx_answer == answer {
            "IDENTICAL"
        } else {
            "DIFFERENT"
        }
    );
    if nx_answer != answer {
        let missing: Vec<_> = nx_answer.iter().filter(|n| !answer.contains(n)).collect();
        let extra: Vec<_> = answer.iter().filter(|n| !nx_answer.contains(n)).collect();
        println!("  missing {missing:?}\n  extra {extra:?}");
        std::process::exit(1);
    }
}
