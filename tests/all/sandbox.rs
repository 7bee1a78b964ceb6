//! Hostile plugins, run through real pipelines: each fails its own step, within its limit, with
//! a clear error, while the engine and the other steps go on.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::{kiln, plugin, run_json, step, text};

fn hostile_step(id: &str, behaviour: &str, extra: &str) -> String {
    format!(
        "  - id: {id}\n    uses: {}\n    with: {{ behaviour: {behaviour}{extra} }}\n",
        plugin("hostile").display()
    )
}

#[test]
fn hostile_plugins_fail_only_their_own_step_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();

    let mut yaml = String::from("name: hostile\nenv: { PIPELINE_VAR: p }\nsteps:\n");
    yaml.push_str(&hostile_step("spin", "spin", ""));
    yaml.push_str("    timeout: 1s\n");
    yaml.push_str(&hostile_step("alloc", "alloc", ""));
    yaml.push_str(&hostile_step("trap", "trap", ""));
    yaml.push_str(&hostile_step("panic", "panic", ""));
    yaml.push_str(&hostile_step("read-outside", "read-outside", ""));
    yaml.push_str(&hostile_step("write-workspace", "write-workspace", ""));
    yaml.push_str(&hostile_step(
        "socket",
        "socket",
        &format!(", addr: \"{addr}\""),
    ));
    yaml.push_str(&hostile_step("env", "env", ""));
    yaml.push_str("    env: { STEP_VAR: s }\n");
    yaml.push_str(&hostile_step("garbage", "garbage", ""));
    yaml.push_str("  - id: fine\n    uses: echo\n    with: { message: still here }\n");
    let file = home.path().join("hostile.yaml");
    std::fs::write(&file, yaml).unwrap();

    let started = Instant::now();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .args([
            "--json",
            "--no-fail-fast",
            "--memory-limit",
            "64",
            "--jobs",
            "4",
        ])
        .env("HOST_SECRET_ENV", "must-not-leak")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let run = run_json(&out);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(run["state"], "failed");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");

    let error = |id: &str| {
        let s = step(&run, id);
        assert_eq!(s["state"], "failed", "{id}: {s:#}");
        s["error"].as_str().unwrap_or_default().to_owned()
    };
    assert!(
        error("spin").contains("timed out after 1s"),
        "{}",
        error("spin")
    );
    let spin_ms = step(&run, "spin")["duration_ms"].as_u64().unwrap();
    assert!(
        (1000..5000).contains(&spin_ms),
        "spin stopped after {spin_ms} ms"
    );
    assert!(
        error("alloc").contains("ran out of memory") && error("alloc").contains("64 MiB"),
        "{}",
        error("alloc")
    );
    assert!(error("trap").contains("crashed"), "{}", error("trap"));
    assert!(error("panic").contains("crashed"), "{}", error("panic"));
    assert!(
        stderr.contains("the plugin panicked on purpose"),
        "the panic message reaches the log: {stderr}"
    );
    assert!(
        error("read-outside").contains("could not read outside the workspace"),
        "{}",
        error("read-outside")
    );
    assert!(
        step(&run, "read-outside")["outputs"]
            .get("leaked")
            .is_none()
    );
    assert!(!error("write-workspace").is_empty());
    assert!(
        step(&run, "write-workspace")["outputs"]
            .get("wrote")
            .is_none()
    );
    assert!(
        error("socket").contains("could not connect"),
        "{}",
        error("socket")
    );
    assert!(
        listener.accept().is_err(),
        "the plugin reached a socket it was not granted"
    );
    assert!(
        error("garbage").contains("misbehaved"),
        "{}",
        error("garbage")
    );

    assert_eq!(step(&run, "env")["state"], "succeeded");
    let env = step(&run, "env")["outputs"]["env"].as_object().unwrap();
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["PIPELINE_VAR", "STEP_VAR"],
        "the plugin sees only declared env vars"
    );

    assert_eq!(step(&run, "fine")["state"], "succeeded");
    assert_eq!(step(&run, "fine")["outputs"]["message"], "still here");
}

#[test]
fn a_network_grant_reaches_only_the_listed_host_and_port() {
    let home = tempfile::tempdir().unwrap();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let (a, o) = (allowed.local_addr().unwrap(), other.local_addr().unwrap());
    let yaml = format!(
        "name: net\nsteps:\n  - id: probe\n    uses: {}\n    allow: {{ net: [\"{a}\"] }}\n    with: {{ addrs: [\"{a}\", \"{o}\"] }}\n",
        plugin("net-probe").display()
    );
    let file = home.path().join("net.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = kiln(home.path())
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    let run = run_json(&out);
    assert_eq!(run["state"], "succeeded", "{}", text(&out.stderr));
    let probe = step(&run, "probe");
    assert_eq!(
        probe["outputs"]["connected"],
        serde_json::json!([a.to_string()])
    );
    assert_eq!(probe["outputs"]["refused"].as_array().unwrap().len(), 1);
    assert!(other.accept().is_err(), "the unlisted port was reached");
}

#[test]
fn a_plugin_that_asks_for_the_network_is_refused_without_a_grant() {
    let home = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: net\nsteps:\n  - id: probe\n    uses: {}\n    with: {{ addrs: [\"127.0.0.1:9\"] }}\n",
        plugin("net-probe").display()
    );
    let file = home.path().join("net.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = kiln(home.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error[K203]: plugin `net-probe` needs `network`"),
        "{stderr}"
    );
}
