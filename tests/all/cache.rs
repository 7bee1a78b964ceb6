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
    let store = RegistryStore::new(&repo, RegistryAuth::Anonymous).unwrap();
    let local = LocalStore::open(tempfile::tempdir().unwrap().path(), 1 << 20).unwrap();
    let err = store.fetch("user/x", &local).unwrap_err().to_string();
    assert!(err.contains("asks for credentials"), "{err}");
    let wrong = RegistryStore::new(&repo, RegistryAuth::basic("kiln", "wrong")).unwrap();
    let err = wrong.fetch("user/x", &local).unwrap_err().to_string();
    assert!(err.contains("refused the credentials"), "{err}");
}
