//! The step cache, the `cache` plugin and the cache stores, end to end: real `kiln` runs, a real
//! local store on disk, the real registries of `scripts/services.sh`.

use kiln_cache::{Cache, LocalStore, RegistryStore, Saved, Source};
use kiln_oci::RegistryAuth;
use serde_json::json;

use crate::support::services_env;

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

fn round_trip_through(registry: &str, auth: RegistryAuth) {
    let repo = format!("{registry}/kiln-tests/{}", unique("cache"));
    let ws = tempfile::tempdir().expect("works");
    std::fs::create_dir_all(ws.path().join("deps/sub")).expect("works");
    std::fs::write(ws.path().join("deps/a.txt"), "alpha").expect("works");
    std::fs::write(ws.path().join("deps/sub/b.bin"), vec![3u8; 300_000]).expect("works");
    // Machine A saves and publishes.
    let a = tempfile::tempdir().expect("works");
    let cache_a = Cache::new(
        LocalStore::open(a.path(), 1 << 30).expect("works"),
        Some(RegistryStore::new(&repo, auth.clone()).expect("works")),
    );
    let paths = vec!["deps".to_owned()];
    let (saved, notes) = cache_a
        .save(
            "user/deps-linux-1",
            json!({ "n": 1 }),
            Some((ws.path(), &paths)),
        )
        .expect("works");
    assert!(matches!(saved, Saved::New(_)), "{saved:?}");
    assert!(notes.is_empty(), "{notes:?}");
    cache_a
        .save("user/meta-only", json!("m"), None)
        .expect("works");
    // Machine B, with an empty local store, finds it by exact key and by prefix.
    let b = tempfile::tempdir().expect("works");
    let cache_b = Cache::new(
        LocalStore::open(b.path(), 1 << 30).expect("works"),
        Some(RegistryStore::new(&repo, auth).expect("works")),
    );
    let found = cache_b.find("user/deps-linux-2", &["user/deps-linux-".to_owned()]);
    assert!(found.notes.is_empty(), "{:?}", found.notes);
    let (entry, source, exact) = found.hit.expect("a prefix hit from the registry");
    assert_eq!((source, exact), (Source::Registry, false));
    assert_eq!(entry.manifest.key, "user/deps-linux-1");
    assert_eq!(entry.manifest.meta, json!({ "n": 1 }));
    let dest = tempfile::tempdir().expect("works");
    cache_b.restore(&entry, dest.path()).expect("works");
    assert_eq!(
        std::fs::read_to_string(dest.path().join("deps/a.txt")).expect("works"),
        "alpha"
    );
    assert_eq!(
        std::fs::read(dest.path().join("deps/sub/b.bin"))
            .expect("works")
            .len(),
        300_000
    );
    // Now it is local on B too.
    let again = cache_b.find("user/deps-linux-1", &[]);
    assert_eq!(again.hit.map(|h| h.1), Some(Source::Local));
    let meta = cache_b
        .find("user/meta-only", &[])
        .hit
        .expect("meta-only entry");
    assert_eq!(meta.0.manifest.meta, json!("m"));
    // Listing and removal.
    let remote = cache_b.remote().expect("works");
    let keys: Vec<String> = remote
        .list()
        .expect("works")
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(remote.remove("user/meta-only").expect("works"));
    assert!(!remote.remove("user/meta-only").expect("works"));
    assert_eq!(remote.list().expect("works").len(), 1);
}

#[test]
fn entries_round_trip_through_the_anonymous_registry_between_two_machines() {
    let env = services_env("registry");
    round_trip_through(&env["KILN_REGISTRY"], RegistryAuth::Anonymous);
}

#[test]
fn entries_round_trip_through_the_registry_with_basic_auth() {
    let env = services_env("registry");
    round_trip_through(
        &env["KILN_REGISTRY_AUTH"],
        RegistryAuth::basic(&env["KILN_REGISTRY_USER"], &env["KILN_REGISTRY_PASSWORD"]),
    );
}

#[test]
fn the_registry_with_auth_refuses_anonymous_access_with_a_clear_error() {
    let env = services_env("registry");
    let repo = format!(
        "{}/kiln-tests/{}",
        env["KILN_REGISTRY_AUTH"],
        unique("noauth")
    );
    let store = RegistryStore::new(&repo, RegistryAuth::Anonymous).expect("works");
    let local =
        LocalStore::open(tempfile::tempdir().expect("works").path(), 1 << 20).expect("works");
    let err = store.fetch("user/x", &local).unwrap_err().to_string();
    assert!(err.contains("asks for credentials"), "{err}");
    let wrong = RegistryStore::new(&repo, RegistryAuth::basic("kiln", "wrong")).expect("works");
    let err = wrong.fetch("user/x", &local).unwrap_err().to_string();
    assert!(err.contains("refused the credentials"), "{err}");
}

// ---- the step cache and the `cache` plugin through `kiln run` ----

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{kiln, run_json, step, text};

/// A pipeline file in `dir`.
fn pipeline(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).expect("works");
    file
}

fn run(home: &Path, file: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let mut cmd: Command = kiln(home);
    cmd.arg("run").arg(file).arg("--json").args(extra);
    let out = cmd.output().expect("works");
    let json = run_json(&out);
    (out, json)
}

fn state<'a>(run: &'a serde_json::Value, id: &str) -> &'a str {
    step(run, id)["state"].as_str().unwrap_or("?")
}

const BUILD: &str = r#"name: cached
steps:
  - id: version
    uses: echo
    with: { message: "1.4.0" }
  - id: artifact
    uses: write-file
    needs: [version]
    allow: { workspace: write }
    cache: { outputs: ["out/**"] }
    with: { path: out/app.txt, content: "app ${{ steps.version.outputs.message }}\n" }
  - id: report
    uses: echo
    needs: [artifact]
    with: { message: "built ${{ steps.artifact.outputs.path }} ${{ steps.artifact.outputs.sha256 }}" }
  - id: unshaped-write
    uses: write-file
    needs: [report]
    allow: { workspace: write }
    with: { path: other.txt, content: "x" }
  - id: opted-out
    uses: echo
    cache: false
    with: { message: "always" }
"#;

#[test]
fn a_second_run_with_nothing_changed_replays_cacheable_steps_and_restores_their_files() {
    let home = tempfile::tempdir().expect("works");
    let file = pipeline(home.path(), "build", BUILD);
    let (out1, first) = run(home.path(), &file, &[]);
    assert_eq!(first["state"], "succeeded", "{}", text(&out1.stderr));
    for id in ["version", "artifact", "report"] {
        assert_eq!(state(&first, id), "succeeded");
        assert_eq!(step(&first, id)["cache"]["status"], "miss");
        assert_eq!(step(&first, id)["cache"]["saved"], true);
    }
    assert_eq!(
        first["cache"],
        json!({ "hits": 0, "misses": 3, "saved": 3, "uncacheable": 2 })
    );

    let (out2, second) = run(home.path(), &file, &[]);
    assert_eq!(second["state"], "succeeded", "{}", text(&out2.stderr));
    for id in ["version", "artifact", "report"] {
        assert_eq!(state(&second, id), "cached", "{id}: {}", text(&out2.stderr));
        assert_eq!(
            step(&second, id)["cache"]["key"],
            step(&first, id)["cache"]["key"]
        );
        assert_eq!(step(&second, id)["outputs"], step(&first, id)["outputs"]);
    }
    // Not cacheable: its file would not come back; and the one that opted out.
    assert_eq!(state(&second, "unshaped-write"), "succeeded");
    let why = step(&second, "unshaped-write")["cache"]["reason"]
        .as_str()
        .expect("works");
    assert!(why.contains("cache.outputs"), "{why}");
    assert_eq!(state(&second, "opted-out"), "succeeded");
    assert_eq!(
        step(&second, "opted-out")["cache"]["reason"],
        "`cache: false`"
    );
    assert_eq!(
        second["cache"],
        json!({ "hits": 3, "misses": 0, "saved": 0, "uncacheable": 2 })
    );
    // The second run has its own fresh workspace: the file came back from the cache.
    let ws = Path::new(second["workspace"].as_str().expect("works"));
    assert_eq!(
        std::fs::read_to_string(ws.join("out/app.txt")).expect("works"),
        "app 1.4.0\n"
    );
    let log = text(&out2.stderr);
    assert!(log.contains("[artifact] cache hit sha256:"), "{log}");
    assert!(log.contains("restored 2 outputs and 1 file"), "{log}");

    // The summary line of a non-JSON run counts them.
    let out3 = kiln(home.path())
        .arg("run")
        .arg(&file)
        .output()
        .expect("works");
    let stdout = text(&out3.stdout);
    assert!(
        stdout.contains("cache: 3 hit, 0 missed, 0 saved, 2 not cacheable"),
        "{stdout}"
    );
    // --no-cache runs everything.
    let (_, forced) = run(home.path(), &file, &["--no-cache"]);
    assert_eq!(state(&forced, "artifact"), "succeeded");
    assert!(step(&forced, "artifact").get("cache").is_none());
}

#[test]
fn a_changed_input_file_misses_and_explain_cache_shows_which_part_changed() {
    let home = tempfile::tempdir().expect("works");
    let ws = home.path().join("ws");
    std::fs::create_dir_all(ws.join("src")).expect("works");
    std::fs::write(ws.join("src/lib.rs"), "pub fn one() {}\n").expect("works");
    std::fs::write(ws.join("notes.txt"), "not an input\n").expect("works");
    let file = pipeline(
        home.path(),
        "inputs",
        "name: inputs\nsteps:\n  - id: check\n    uses: echo\n    cache: { inputs: [\"src/**\"] }\n    with: { message: checked }\n",
    );
    let wsa = ws.to_str().expect("works");
    let (_, first) = run(home.path(), &file, &["--workspace", wsa]);
    assert_eq!(state(&first, "check"), "succeeded");
    let (_, second) = run(home.path(), &file, &["--workspace", wsa]);
    assert_eq!(state(&second, "check"), "cached");
    std::fs::write(ws.join("notes.txt"), "changed, but not an input\n").expect("works");
    let (_, third) = run(home.path(), &file, &["--workspace", wsa]);
    assert_eq!(state(&third, "check"), "cached");
    std::fs::write(ws.join("src/lib.rs"), "pub fn two() {}\n").expect("works");
    let (out, fourth) = run(home.path(), &file, &["--workspace", wsa, "--explain-cache"]);
    assert_eq!(state(&fourth, "check"), "succeeded");
    assert_eq!(step(&fourth, "check")["cache"]["status"], "miss");
    assert_ne!(
        step(&fourth, "check")["cache"]["key"],
        step(&first, "check")["cache"]["key"]
    );
    let log = text(&out.stderr);
    assert!(log.contains("[check] cache: key sha256:"), "{log}");
    assert!(
        log.contains("(plugin=") && log.contains(" inputs="),
        "{log}"
    );
    assert!(log.contains("[check] cache miss sha256:"), "{log}");
}

#[test]
fn a_corrupted_entry_is_a_miss_is_removed_and_the_step_runs() {
    let home = tempfile::tempdir().expect("works");
    let file = pipeline(home.path(), "build", BUILD);
    let (_, first) = run(home.path(), &file, &[]);
    assert_eq!(first["state"], "succeeded");
    // Flip one byte of every archive (the blobs over 1 KiB; manifests are smaller).
    let blobs = home.path().join("cache/store/v1/blobs/sha256");
    let mut flipped = 0;
    for e in std::fs::read_dir(&blobs).expect("works") {
        let path = e.expect("works").path();
        let mut bytes = std::fs::read(&path).expect("works");
        if bytes.len() > 1024 && bytes.starts_with(b"out") {
            bytes[600] ^= 0x20;
            std::fs::write(&path, bytes).expect("works");
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1, "the artifact's archive");
    let (out, second) = run(home.path(), &file, &[]);
    assert_eq!(second["state"], "succeeded", "{}", text(&out.stderr));
    assert_eq!(state(&second, "version"), "cached");
    assert_eq!(
        state(&second, "artifact"),
        "succeeded",
        "ran again instead of restoring"
    );
    let log = text(&out.stderr);
    assert!(
        log.contains("[artifact] cache: the entry was corrupt and is removed"),
        "{log}"
    );
    let ws = Path::new(second["workspace"].as_str().expect("works"));
    assert_eq!(
        std::fs::read_to_string(ws.join("out/app.txt")).expect("works"),
        "app 1.4.0\n"
    );
    assert_eq!(
        step(&second, "artifact")["cache"]["saved"],
        true,
        "saved afresh"
    );
    let (_, third) = run(home.path(), &file, &[]);
    assert_eq!(state(&third, "artifact"), "cached");
}

fn cache_steps(action: &str, key: &str, restore_keys: &str) -> String {
    format!(
        "name: deps\nsteps:\n  - id: deps\n    uses: cache\n    allow: {{ workspace: write }}\n    with: {{ action: {action}, key: \"{key}\", paths: [deps, \"tool.bin\"]{restore_keys} }}\n"
    )
}

#[test]
fn the_cache_plugin_restores_by_exact_key_else_the_newest_restore_key_match() {
    let home = tempfile::tempdir().expect("works");
    let ws1 = home.path().join("ws1");
    std::fs::create_dir_all(ws1.join("deps/pkg")).expect("works");
    std::fs::write(ws1.join("deps/pkg/index.js"), "module.exports = 1;\n").expect("works");
    std::fs::write(ws1.join("tool.bin"), vec![9u8; 200_000]).expect("works");
    for (n, key) in ["deps-aaa", "deps-bbb"].iter().enumerate() {
        std::fs::write(ws1.join("deps/version"), format!("{n}")).expect("works");
        let save = pipeline(home.path(), "save", &cache_steps("save", key, ""));
        let (out, saved) = run(
            home.path(),
            &save,
            &["--workspace", ws1.to_str().expect("works")],
        );
        assert_eq!(saved["state"], "succeeded", "{}", text(&out.stderr));
        assert_eq!(step(&saved, "deps")["outputs"]["saved"], true);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Saving an existing key does nothing: entries are immutable.
    let save = pipeline(home.path(), "save", &cache_steps("save", "deps-bbb", ""));
    let (_, again) = run(
        home.path(),
        &save,
        &["--workspace", ws1.to_str().expect("works")],
    );
    assert_eq!(step(&again, "deps")["outputs"]["saved"], false);

    let restore = |key: &str, extra: &str| {
        let ws = tempfile::tempdir_in(home.path()).expect("works");
        let file = pipeline(home.path(), "restore", &cache_steps("restore", key, extra));
        let (out, r) = run(
            home.path(),
            &file,
            &["--workspace", ws.path().to_str().expect("works")],
        );
        assert_eq!(r["state"], "succeeded", "{}", text(&out.stderr));
        let version = std::fs::read_to_string(ws.path().join("deps/version")).ok();
        (step(&r, "deps")["outputs"].clone(), version, ws)
    };
    let (exact, version, ws) = restore("deps-aaa", "");
    assert_eq!(exact["hit"], true);
    assert_eq!(exact["matched-key"], "deps-aaa");
    assert_eq!(version.as_deref(), Some("0"));
    assert_eq!(
        std::fs::read(ws.path().join("tool.bin"))
            .expect("works")
            .len(),
        200_000
    );
    let (fallback, version, _) = restore("deps-ccc", ", restore-keys: [nope-, deps-]");
    assert_eq!(fallback["hit"], false);
    assert_eq!(
        fallback["matched-key"], "deps-bbb",
        "the newest entry with the prefix"
    );
    assert_eq!(version.as_deref(), Some("1"));
    let (miss, version, _) = restore("other", ", restore-keys: [nope-]");
    assert_eq!(
        (miss["hit"].clone(), miss["matched-key"].clone()),
        (json!(false), json!(""))
    );
    assert_eq!(version, None);
    // Other paths: another entry set, even with the same key.
    let ws = tempfile::tempdir_in(home.path()).expect("works");
    let file = pipeline(
        home.path(),
        "other-paths",
        "name: o\nsteps:\n  - id: deps\n    uses: cache\n    allow: { workspace: write }\n    with: { key: deps-aaa, paths: [deps] }\n",
    );
    let (_, r) = run(
        home.path(),
        &file,
        &["--workspace", ws.path().to_str().expect("works")],
    );
    assert_eq!(step(&r, "deps")["outputs"]["hit"], false);

    // `kiln cache ls` shows them; `rm` removes one.
    let ls = kiln(home.path())
        .args(["cache", "ls"])
        .output()
        .expect("works");
    let listing = text(&ls.stdout);
    assert!(
        listing.contains("cache  deps-aaa") && listing.contains("cache  deps-bbb"),
        "{listing}"
    );
    let rm = kiln(home.path())
        .args(["cache", "rm", "deps-aaa"])
        .output()
        .expect("works");
    assert!(
        text(&rm.stdout).contains("removed 1 entries"),
        "{}",
        text(&rm.stdout)
    );
    let (gone, _, _) = restore("deps-aaa", "");
    assert_eq!(gone["hit"], false);
}

#[test]
fn a_restore_without_workspace_write_is_refused_at_plan_time() {
    let home = tempfile::tempdir().expect("works");
    let file = pipeline(
        home.path(),
        "no-write",
        "name: n\nsteps:\n  - id: deps\n    uses: cache\n    with: { key: k, paths: [deps] }\n",
    );
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .output()
        .expect("works");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("K203") && err.contains("workspace-write"),
        "{err}"
    );
}

#[test]
fn the_store_is_kept_under_its_size_cap_least_recently_used_first() {
    let home = tempfile::tempdir().expect("works");
    let ws = home.path().join("ws");
    std::fs::create_dir_all(ws.join("deps")).expect("works");
    for i in 0..3u8 {
        std::fs::write(ws.join("deps/blob"), vec![i; 450_000]).expect("works");
        std::fs::write(ws.join("tool.bin"), [i]).expect("works");
        let file = pipeline(
            home.path(),
            "save",
            &cache_steps("save", &format!("big-{i}"), ""),
        );
        let out = kiln(home.path())
            .env("KILN_CACHE_MAX_MB", "1")
            .arg("run")
            .arg(&file)
            .args(["--workspace", ws.to_str().expect("works")])
            .output()
            .expect("works");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let ls = kiln(home.path())
        .env("KILN_CACHE_MAX_MB", "1")
        .args(["cache", "ls"])
        .output()
        .expect("works");
    let listing = text(&ls.stdout);
    assert!(
        listing.contains("big-2") && listing.contains("big-1"),
        "{listing}"
    );
    assert!(!listing.contains("big-0"), "evicted first: {listing}");
    let store = LocalStore::open(&home.path().join("cache/store"), 1 << 20).expect("works");
    assert!(store.blobs_size() <= 1 << 20, "{}", store.blobs_size());
    // A smaller cap by hand.
    let gc = kiln(home.path())
        .args(["cache", "gc", "--max-mb", "0"])
        .output()
        .expect("works");
    assert!(
        text(&gc.stdout).contains("evicted 2 entries"),
        "{}",
        text(&gc.stdout)
    );
    assert!(store.list().is_empty());
}

#[test]
fn two_runs_saving_the_same_key_at_once_leave_one_whole_entry() {
    let home = tempfile::tempdir().expect("works");
    let writers = 4;
    let mut children = Vec::new();
    for i in 0..writers {
        let ws = home.path().join(format!("ws{i}"));
        std::fs::create_dir_all(ws.join("deps")).expect("works");
        // Different content per writer, large enough that the writes overlap.
        std::fs::write(ws.join("deps/data"), vec![b'a' + i as u8; 8 << 20]).expect("works");
        std::fs::write(ws.join("tool.bin"), format!("writer {i}")).expect("works");
        let file = pipeline(
            home.path(),
            &format!("save{i}"),
            &cache_steps("save", "shared-key", ""),
        );
        let child = kiln(home.path())
            .arg("run")
            .arg(&file)
            .args(["--json", "--workspace", ws.to_str().expect("works")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("works");
        children.push(child);
    }
    let mut saved = 0;
    for c in children {
        let out = c.wait_with_output().expect("works");
        let r = run_json(&out);
        assert_eq!(r["state"], "succeeded", "{}", text(&out.stderr));
        saved += usize::from(step(&r, "deps")["outputs"]["saved"] == true);
    }
    assert!(saved >= 1, "at least one writer saved");
    // One entry, whole: restored, it is exactly one writer's files.
    let ws = home.path().join("restored");
    std::fs::create_dir_all(&ws).expect("works");
    let file = pipeline(
        home.path(),
        "restore",
        &cache_steps("restore", "shared-key", ""),
    );
    let (out, r) = run(
        home.path(),
        &file,
        &["--workspace", ws.to_str().expect("works")],
    );
    assert_eq!(
        step(&r, "deps")["outputs"]["hit"],
        true,
        "{}",
        text(&out.stderr)
    );
    let tool = std::fs::read_to_string(ws.join("tool.bin")).expect("works");
    let i: u8 = tool.trim_start_matches("writer ").parse().expect("works");
    let data = std::fs::read(ws.join("deps/data")).expect("works");
    assert_eq!(data.len(), 8 << 20);
    assert!(
        data.iter().all(|b| *b == b'a' + i),
        "files of writer {i} only"
    );
    let store = LocalStore::open(&home.path().join("cache/store"), 1 << 40).expect("works");
    assert_eq!(store.list().len(), 1);
    let tmp = home.path().join("cache/store/v1/tmp");
    assert_eq!(
        std::fs::read_dir(tmp).expect("works").count(),
        0,
        "no temp files left"
    );
}

fn registry_runs(env_vars: &[(&str, String)]) {
    let a = tempfile::tempdir().expect("works");
    let b = tempfile::tempdir().expect("works");
    let file = pipeline(a.path(), "build", BUILD);
    let with_env = |home: &Path| {
        let mut cmd = kiln(home);
        for (k, v) in env_vars {
            cmd.env(k, v);
        }
        cmd.arg("run").arg(&file).arg("--json");
        let out = cmd.output().expect("works");
        let json = run_json(&out);
        (out, json)
    };
    let (out, first) = with_env(a.path());
    assert_eq!(
        state(&first, "artifact"),
        "succeeded",
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("not shared"),
        "{}",
        text(&out.stderr)
    );
    // Another machine: an empty local cache, the same registry.
    let (out, other) = with_env(b.path());
    assert_eq!(state(&other, "artifact"), "cached", "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(from the cache registry)"),
        "{}",
        text(&out.stderr)
    );
    let ws = Path::new(other["workspace"].as_str().expect("works"));
    assert_eq!(
        std::fs::read_to_string(ws.join("out/app.txt")).expect("works"),
        "app 1.4.0\n"
    );
    let mut ls = kiln(b.path());
    for (k, v) in env_vars {
        ls.env(k, v);
    }
    let listing = ls
        .args(["cache", "ls", "--remote"])
        .output()
        .expect("works");
    assert!(
        text(&listing.stdout).contains("3 entries"),
        "{}",
        text(&listing.stdout)
    );
}

#[test]
fn the_step_cache_is_shared_through_the_anonymous_registry() {
    let env = services_env("registry");
    let repo = format!("{}/kiln-tests/{}", env["KILN_REGISTRY"], unique("steps"));
    registry_runs(&[("KILN_CACHE_REGISTRY", repo)]);
}

#[test]
fn the_step_cache_is_shared_through_the_registry_with_docker_config_credentials() {
    let env = services_env("registry");
    let registry = &env["KILN_REGISTRY_AUTH"];
    let docker = tempfile::tempdir().expect("works");
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        env["KILN_REGISTRY_USER"], env["KILN_REGISTRY_PASSWORD"]
    ));
    std::fs::write(
        docker.path().join("config.json"),
        json!({ "auths": { registry.clone(): { "auth": auth } } }).to_string(),
    )
    .expect("works");
    let repo = format!("{registry}/kiln-tests/{}", unique("steps"));
    registry_runs(&[
        ("KILN_CACHE_REGISTRY", repo),
        ("DOCKER_CONFIG", docker.path().display().to_string()),
    ]);
}
