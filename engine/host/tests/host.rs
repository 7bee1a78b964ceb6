//! The plugin host against the real plugins built by `scripts/build-plugins.sh`.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_host::{
    Capability, ConfigProblem, Grants, HostConfig, HostError, Invocation, LoadedFrom, LogSink,
    LogStream, Plugin, PluginHost, StepFailure, StepOutcome,
};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// The directory of the built plugins.
fn plugin_dir() -> PathBuf {
    match std::env::var_os("KILN_PLUGIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target/wasm32-wasip2/release")
        }
    }
}

fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the plugin `{}` ({e}); build the plugins first with \
             `scripts/build-plugins.sh` (or point KILN_PLUGIN_DIR at them)",
            path.display()
        )
    })
}

/// A disk cache shared by the tests of this binary, so each plugin compiles once per build.
fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kiln-host-plugin-cache")
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(shared_cache()),
        max_instances: 8,
        memory_limit: 128 * MIB,
        ..HostConfig::default()
    })
    .expect("the host starts")
}

async fn load(host: &PluginHost, name: &str) -> Arc<Plugin> {
    host.load(name, &plugin_bytes(name))
        .await
        .unwrap_or_else(|e| panic!("cannot load `{name}`: {e}"))
}

#[derive(Default)]
struct Lines(Mutex<Vec<(LogStream, String)>>);

impl LogSink for Lines {
    fn line(&self, stream: LogStream, text: &str) {
        self.0
            .lock()
            .expect("log lock")
            .push((stream, text.to_owned()));
    }
}

impl Lines {
    fn all(&self) -> Vec<(LogStream, String)> {
        self.0.lock().expect("log lock").clone()
    }

    fn contains(&self, stream: LogStream, needle: &str) -> bool {
        self.all()
            .iter()
            .any(|(s, l)| *s == stream && l.contains(needle))
    }
}

struct Step {
    invocation: Invocation,
    log: Arc<Lines>,
    _workspace: tempfile::TempDir,
    workspace: PathBuf,
}

fn step(config: Value) -> Step {
    let workspace = tempfile::tempdir().expect("a temporary workspace");
    let log = Arc::new(Lines::default());
    Step {
        invocation: Invocation {
            run_id: "run-1".into(),
            step_id: "step".into(),
            attempt: 1,
            config,
            event: json!({ "kind": "manual" }),
            workspace: workspace.path().to_owned(),
            grants: Grants::default(),
            env: Vec::new(),
            secrets: Default::default(),
            timeout: Some(Duration::from_secs(20)),
            memory_limit: None,
            log: log.clone(),
        },
        log,
        workspace: workspace.path().to_owned(),
        _workspace: workspace,
    }
}

fn failure(outcome: &StepOutcome) -> &StepFailure {
    match &outcome.result {
        Err(failure) => failure,
        Ok(()) => panic!("the step succeeded: {outcome:?}"),
    }
}

#[tokio::test]
async fn echo_sets_its_output_and_logs_the_message() {
    let host = host();
    let echo = load(&host, "echo").await;
    let s = step(json!({ "message": "hello kiln" }));
    let log = s.log.clone();
    let outcome = echo.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(outcome.outputs.get("message"), Some(&json!("hello kiln")));
    assert_eq!(log.all(), [(LogStream::Info, "hello kiln".to_owned())]);
}

#[tokio::test]
async fn write_file_writes_into_the_workspace_when_granted() {
    let host = host();
    let plugin = load(&host, "write_file").await;
    let mut s = step(json!({ "path": "out/hello.txt", "content": "hi" }));
    s.invocation.grants.workspace_write = true;
    let outcome = plugin.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()));
    let written = std::fs::read_to_string(s.workspace.join("out/hello.txt")).expect("written");
    assert_eq!(written, "hi");
    assert_eq!(outcome.outputs.get("path"), Some(&json!("out/hello.txt")));
    assert_eq!(
        outcome.outputs.get("sha256"),
        Some(&json!(
            "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"
        ))
    );
}

#[tokio::test]
async fn write_file_without_workspace_write_fails_with_a_clear_message() {
    let host = host();
    let plugin = load(&host, "write_file").await;
    let s = step(json!({ "path": "hello.txt", "content": "hi" }));
    let outcome = plugin.run(s.invocation).await;
    match failure(&outcome) {
        // The plugin reports the file the read-only workspace refused.
        StepFailure::Denied(m) | StepFailure::Failed(m) => {
            assert!(m.contains("`hello.txt`"), "{m}");
            assert!(m.contains("not permitted"), "{m}");
        }
        other => panic!("unexpected failure: {other:?}"),
    }
    assert!(!s.workspace.join("hello.txt").exists());
}

#[tokio::test]
async fn describe_reports_names_schemas_outputs_and_capabilities() {
    let host = host();
    let echo = load(&host, "echo").await;
    assert_eq!(echo.info.name, "echo");
    assert_eq!(echo.info.outputs, ["message"]);
    assert_eq!(echo.info.capabilities, []);
    assert_eq!(echo.info.config_schema["required"], json!(["message"]));
    assert!(echo.digest.starts_with("sha256:") && echo.digest.len() == 7 + 64);

    let write_file = load(&host, "write_file").await;
    assert_eq!(write_file.info.name, "write-file");
    assert_eq!(write_file.info.capabilities, [Capability::WorkspaceWrite]);

    let net_probe = load(&host, "net_probe").await;
    assert_eq!(net_probe.info.capabilities, [Capability::Network]);
    assert_eq!(net_probe.info.outputs, ["connected", "refused"]);
}

#[tokio::test]
async fn validate_reports_problems_with_json_pointers() {
    let host = host();
    let echo = load(&host, "echo").await;
    assert_eq!(
        echo.validate(&json!({ "message": "hi" }))
            .await
            .expect("validates"),
        []
    );

    let missing = echo.validate(&json!({})).await.expect("validates");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].pointer, "");
    assert!(missing[0].message.contains("message"), "{missing:?}");

    let wrong = echo
        .validate(&json!({ "message": 5 }))
        .await
        .expect("validates");
    assert_eq!(
        wrong.iter().map(|p| p.pointer.as_str()).collect::<Vec<_>>(),
        ["/message"],
        "{wrong:?}"
    );

    let write_file = load(&host, "write_file").await;
    let absolute = write_file
        .validate(&json!({ "path": "/etc/passwd", "content": "" }))
        .await
        .expect("validates");
    assert!(
        matches!(absolute.as_slice(), [ConfigProblem { pointer, message }]
            if pointer == "/path" && message.contains("absolute")),
        "{absolute:?}"
    );
}

#[tokio::test]
async fn a_second_host_with_the_same_cache_dir_loads_without_compiling() {
    let cache = tempfile::tempdir().expect("a cache dir");
    let config = HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..HostConfig::default()
    };
    let bytes = plugin_bytes("echo");

    let started = Instant::now();
    let first = PluginHost::new(config.clone()).expect("host");
    let plugin = first.load("echo", &bytes).await.expect("loads");
    let compiled_in = started.elapsed();
    assert_eq!(plugin.loaded_from, LoadedFrom::Compiled);
    assert_eq!(first.stats().compiled, 1);
    drop((plugin, first));

    let started = Instant::now();
    let second = PluginHost::new(config).expect("host");
    let plugin = second.load("echo", &bytes).await.expect("loads");
    let cached_in = started.elapsed();
    assert_eq!(plugin.loaded_from, LoadedFrom::DiskCache);
    assert_eq!(second.stats().compiled, 0);
    assert_eq!(second.stats().disk_cache_hits, 1);
    eprintln!("compiled load {compiled_in:?}, cached load {cached_in:?}");

    let s = step(json!({ "message": "from the cache" }));
    assert_eq!(plugin.run(s.invocation).await.result, Ok(()));
}

#[tokio::test]
async fn a_corrupt_cache_file_is_ignored_and_rewritten() {
    let cache = tempfile::tempdir().expect("a cache dir");
    let config = HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        ..HostConfig::default()
    };
    let bytes = plugin_bytes("echo");
    PluginHost::new(config.clone())
        .expect("host")
        .load("echo", &bytes)
        .await
        .expect("loads");

    let cwasm: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cwasm.len(), 1, "{cwasm:?}");

    // A flipped byte in the middle of the code, then garbage: both are recovered from.
    let mut compiled = std::fs::read(&cwasm[0]).expect("read");
    let middle = compiled.len() / 2;
    compiled[middle] ^= 0xff;
    std::fs::write(&cwasm[0], &compiled).expect("corrupt");
    let host = PluginHost::new(config.clone()).expect("host");
    let plugin = host
        .load("echo", &bytes)
        .await
        .expect("loads despite the corrupt cache");
    assert_eq!(plugin.loaded_from, LoadedFrom::Compiled);
    assert_eq!(host.stats().compiled, 1);

    std::fs::write(&cwasm[0], b"not a compiled component").expect("corrupt");
    std::fs::remove_file(cwasm[0].with_extension("cwasm.sha256")).expect("remove digest");
    let host = PluginHost::new(config.clone()).expect("host");
    let plugin = host
        .load("echo", &bytes)
        .await
        .expect("loads despite the corrupt cache");
    assert_eq!(plugin.loaded_from, LoadedFrom::Compiled);
    let s = step(json!({ "message": "recovered" }));
    assert_eq!(plugin.run(s.invocation).await.result, Ok(()));

    let host = PluginHost::new(config).expect("host");
    let plugin = host.load("echo", &bytes).await.expect("loads");
    assert_eq!(
        plugin.loaded_from,
        LoadedFrom::DiskCache,
        "the entry was rewritten"
    );
}

#[tokio::test]
async fn loading_the_same_bytes_twice_is_free() {
    let host = host();
    let bytes = plugin_bytes("echo");
    let a = host.load("echo", &bytes).await.expect("loads");
    let b = host.load("echo", &bytes).await.expect("loads");
    assert!(Arc::ptr_eq(&a, &b));
    let c = host.load("./my/echo.wasm", &bytes).await.expect("loads");
    assert_eq!(c.origin, "./my/echo.wasm");
    assert_eq!(c.digest, a.digest);
    let stats = host.stats();
    assert_eq!(stats.memory_cache_hits, 2, "{stats:?}");
    assert_eq!(stats.compiled + stats.disk_cache_hits, 1, "{stats:?}");
}

#[tokio::test]
async fn a_spinning_plugin_times_out_at_its_deadline() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let mut s = step(json!({ "behaviour": "spin" }));
    let limit = Duration::from_millis(300);
    s.invocation.timeout = Some(limit);
    let started = Instant::now();
    let outcome = hostile.run(s.invocation).await;
    let took = started.elapsed();
    assert_eq!(failure(&outcome), &StepFailure::TimedOut(limit));
    assert!(outcome.result.as_ref().is_err_and(|f| f.retryable()));
    // The deadline is checked every epoch tick (10 ms); the slack covers a loaded machine.
    assert!(
        took >= limit && took < limit + Duration::from_millis(700),
        "took {took:?}"
    );
    eprintln!("a 300 ms timeout stopped the spin after {took:?}");
    assert_eq!(failure(&outcome).to_string(), "timed out after 300ms");
}

#[tokio::test]
async fn a_plugin_waiting_on_the_host_times_out_too() {
    // Fill the accept queue of a listener: a further connect then hangs in the kernel, so the
    // plugin waits inside a host call, where epoch deadlines are not checked.
    let (listener, addr) = listener();
    let socket_addr = listener.local_addr().expect("address");
    let mut held = Vec::new();
    while let Ok(stream) =
        std::net::TcpStream::connect_timeout(&socket_addr, Duration::from_millis(200))
    {
        held.push(stream);
        assert!(held.len() < 5000, "the accept queue never filled");
    }
    let host = host();
    let probe = load(&host, "net_probe").await;
    let mut s = step(json!({ "addrs": [addr] }));
    s.invocation.grants.net = vec![addr.clone()];
    let limit = Duration::from_millis(300);
    s.invocation.timeout = Some(limit);
    let started = Instant::now();
    let outcome = probe.run(s.invocation).await;
    let took = started.elapsed();
    assert_eq!(failure(&outcome), &StepFailure::TimedOut(limit));
    assert!(took < limit + Duration::from_millis(700), "took {took:?}");
}

#[tokio::test]
async fn a_plugin_that_does_not_declare_network_gets_no_sockets_even_to_granted_hosts() {
    let (listener, addr) = listener();
    let host = host();
    let hostile = load(&host, "hostile").await;
    // Plan time would refuse this grant (K204); the host must not honour it either.
    let mut s = step(json!({ "behaviour": "socket", "addr": addr }));
    s.invocation.grants.net = vec![addr.clone()];
    let outcome = hostile.run(s.invocation).await;
    let StepFailure::Failed(message) = failure(&outcome) else {
        panic!("{outcome:?}");
    };
    assert!(message.contains("access-denied"), "{message}");
    assert!(!accepted(&listener), "the plugin reached the listener");
}

#[tokio::test]
async fn a_plugin_allocating_without_end_runs_out_of_memory() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let mut s = step(json!({ "behaviour": "alloc" }));
    s.invocation.memory_limit = Some(32 * MIB);
    let outcome = hostile.run(s.invocation).await;
    assert_eq!(failure(&outcome), &StepFailure::OutOfMemory(32 * MIB));
}

#[tokio::test]
async fn a_trap_is_reported_as_a_crash() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let outcome = hostile
        .run(step(json!({ "behaviour": "trap" })).invocation)
        .await;
    match failure(&outcome) {
        StepFailure::Trapped(m) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("unexpected failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_panic_is_a_crash_with_the_panic_message_in_the_log() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let s = step(json!({ "behaviour": "panic" }));
    let log = s.log.clone();
    let outcome = hostile.run(s.invocation).await;
    match failure(&outcome) {
        StepFailure::Trapped(m) => assert!(m.contains("panicked on purpose"), "{m}"),
        other => panic!("unexpected failure: {other:?}"),
    }
    assert!(
        log.contains(LogStream::Stderr, "the plugin panicked on purpose"),
        "{:?}",
        log.all()
    );
}

#[tokio::test]
async fn a_plugin_cannot_read_outside_the_workspace() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let outcome = hostile
        .run(step(json!({ "behaviour": "read-outside" })).invocation)
        .await;
    assert!(!outcome.outputs.contains_key("leaked"), "{outcome:?}");
    match failure(&outcome) {
        StepFailure::Failed(m) => assert!(m.contains("could not read outside"), "{m}"),
        other => panic!("unexpected failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_plugin_cannot_write_the_workspace_without_the_grant() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let s = step(json!({ "behaviour": "write-workspace" }));
    let workspace = s.workspace.clone();
    let outcome = hostile.run(s.invocation).await;
    assert!(matches!(
        failure(&outcome),
        StepFailure::Denied(_) | StepFailure::Failed(_)
    ));
    assert!(!workspace.join("written-by-hostile.txt").exists());

    let mut s = step(json!({ "behaviour": "write-workspace" }));
    s.invocation.grants.workspace_write = true;
    let outcome = hostile.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()));
    assert!(s.workspace.join("written-by-hostile.txt").exists());
}

fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("address").to_string();
    (listener, addr)
}

fn accepted(listener: &TcpListener) -> bool {
    match listener.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept failed: {e}"),
    }
}

#[tokio::test]
async fn a_plugin_without_network_grants_cannot_connect() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let (listener, addr) = listener();
    let outcome = hostile
        .run(step(json!({ "behaviour": "socket", "addr": addr })).invocation)
        .await;
    match failure(&outcome) {
        StepFailure::Failed(m) => assert!(m.contains("could not connect"), "{m}"),
        other => panic!("unexpected failure: {other:?}"),
    }
    assert!(!accepted(&listener), "the plugin reached the listener");
}

#[tokio::test]
async fn a_network_grant_allows_exactly_the_granted_address() {
    let host = host();
    let probe = load(&host, "net_probe").await;
    let (allowed, allowed_addr) = listener();
    let (other, other_addr) = listener();
    let mut s = step(json!({ "addrs": [allowed_addr, other_addr] }));
    s.invocation.grants.net = vec![allowed_addr.clone()];
    let outcome = probe.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()), "{outcome:?}");
    assert_eq!(outcome.outputs["connected"], json!([allowed_addr]));
    assert_eq!(outcome.outputs["refused"].as_array().map(Vec::len), Some(1));
    assert!(accepted(&allowed));
    assert!(
        !accepted(&other),
        "the plugin reached an address it was not granted"
    );
}

#[tokio::test]
async fn a_network_grant_by_name_allows_the_resolved_addresses() {
    let host = host();
    let probe = load(&host, "net_probe").await;
    let (listener, addr) = listener();
    let port = addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("port");
    let by_name = format!("localhost:{port}");
    let mut s = step(json!({ "addrs": [by_name] }));
    s.invocation.grants.net = vec![by_name.clone()];
    let outcome = probe.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()), "{outcome:?}");
    assert_eq!(
        outcome.outputs["connected"],
        json!([by_name]),
        "{outcome:?}"
    );
    assert!(accepted(&listener));
}

#[tokio::test]
async fn a_plugin_sees_exactly_the_given_env_and_nothing_of_the_hosts() {
    // Cargo sets these in the environment of every test process; `set_var` is avoided because it
    // is unsound while other test threads read the environment.
    let host_vars: Vec<(String, String)> = std::env::vars().collect();
    assert!(host_vars.iter().any(|(k, _)| k == "CARGO_PKG_NAME"));
    let host = host();
    let hostile = load(&host, "hostile").await;
    let mut s = step(json!({ "behaviour": "env" }));
    s.invocation.env = vec![
        ("KILN_STEP".into(), "build".into()),
        ("EMPTY".into(), String::new()),
    ];
    let outcome = hostile.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(
        outcome.outputs["env"],
        json!({ "KILN_STEP": "build", "EMPTY": "" })
    );
}

#[tokio::test]
async fn invalid_outputs_end_the_step_as_a_protocol_error_even_if_ignored() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let s = step(json!({ "behaviour": "garbage" }));
    let log = s.log.clone();
    let outcome = hostile.run(s.invocation).await;
    match failure(&outcome) {
        StepFailure::Protocol(m) => assert!(m.contains("`broken` is not valid JSON"), "{m}"),
        other => panic!("unexpected failure: {other:?}"),
    }
    assert!(!failure(&outcome).retryable());
    assert!(outcome.outputs.is_empty());
    assert!(
        log.contains(LogStream::Info, "host answered Err("),
        "{:?}",
        log.all()
    );
}

#[tokio::test]
async fn stdout_and_stderr_arrive_as_log_lines() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let s = step(json!({ "behaviour": "stdout" }));
    let log = s.log.clone();
    let outcome = hostile.run(s.invocation).await;
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(
        log.all(),
        [
            (LogStream::Stdout, "to stdout".to_owned()),
            (LogStream::Stderr, "to stderr".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_guest_error_keeps_its_kind() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let outcome = hostile
        .run(step(json!({ "behaviour": "dance" })).invocation)
        .await;
    assert_eq!(
        failure(&outcome),
        &StepFailure::InvalidConfig("unknown behaviour `dance`".into())
    );
}

#[tokio::test]
async fn a_missing_workspace_is_a_host_failure() {
    let host = host();
    let echo = load(&host, "echo").await;
    let mut s = step(json!({ "message": "hi" }));
    s.invocation.workspace = s.workspace.join("does-not-exist");
    let outcome = echo.run(s.invocation).await;
    assert!(matches!(failure(&outcome), StepFailure::Host(m) if m.contains("workspace")));
}

#[tokio::test(flavor = "current_thread")]
async fn two_plugins_run_concurrently_even_when_one_spins() {
    let host = host();
    let hostile = load(&host, "hostile").await;
    let echo = load(&host, "echo").await;
    let mut spin = step(json!({ "behaviour": "spin" }));
    spin.invocation.timeout = Some(Duration::from_millis(1500));
    let quick = step(json!({ "message": "meanwhile" }));
    let started = Instant::now();
    let (spun, (echoed, echoed_after)) = tokio::join!(hostile.run(spin.invocation), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let outcome = echo.run(quick.invocation).await;
        (outcome, started.elapsed())
    });
    assert!(matches!(failure(&spun), StepFailure::TimedOut(_)));
    assert_eq!(echoed.result, Ok(()));
    assert!(
        echoed_after < Duration::from_millis(1000),
        "echo waited for the spinning plugin: {echoed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_steps_run_as_spawned_tasks_sharing_one_host() {
    let host = Arc::new(host());
    let bytes = Arc::new(plugin_bytes("echo"));
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let host = host.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let echo = host.load("echo", &bytes).await.expect("loads");
                let s = step(json!({ "message": format!("task {i}") }));
                echo.run(s.invocation).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.expect("the task ran");
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(outcome.outputs["message"], json!(format!("task {i}")));
    }
    assert_eq!(host.stats().compiled + host.stats().disk_cache_hits, 1);
}

#[tokio::test]
async fn dropping_a_running_step_cancels_it_and_frees_its_slot() {
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(shared_cache()),
        max_instances: 1,
        memory_limit: 64 * MIB,
        ..HostConfig::default()
    })
    .expect("host");
    let hostile = load(&host, "hostile").await;
    let echo = load(&host, "echo").await;
    for _ in 0..3 {
        let mut spin = step(json!({ "behaviour": "spin" }));
        spin.invocation.timeout = None;
        let started = Instant::now();
        let cancelled =
            tokio::time::timeout(Duration::from_millis(200), hostile.run(spin.invocation)).await;
        assert!(cancelled.is_err(), "the spin ended by itself");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(700),
            "cancelling took {took:?}"
        );
        eprintln!("a 200 ms cancellation returned after {took:?}");
    }
    let quick = step(json!({ "message": "still here" }));
    let outcome = tokio::time::timeout(Duration::from_secs(10), echo.run(quick.invocation))
        .await
        .expect("the only instance slot was freed");
    assert_eq!(outcome.result, Ok(()));
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_rejected() {
    let host = host();
    let empty_core_module = b"\0asm\x01\0\0\0".to_vec();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (origin, bytes) in [
        ("core.wasm", empty_core_module),
        (
            "Cargo.toml",
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("read"),
        ),
        ("random.bin", random),
        ("empty.wasm", Vec::new()),
    ] {
        match host.load(origin, &bytes).await {
            Err(HostError::InvalidComponent { origin: o, reason }) => {
                assert_eq!(o, origin);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("`{origin}`: unexpected error {other}"),
            Ok(_) => panic!("`{origin}` loaded"),
        }
    }
    let stats = host.stats();
    assert_eq!(
        stats.memory_cache_hits, 0,
        "failed loads are not remembered"
    );
}

#[test]
fn a_host_needs_at_least_one_instance_and_a_sane_memory_limit() {
    let zero = PluginHost::new(HostConfig {
        max_instances: 0,
        ..HostConfig::default()
    });
    assert!(matches!(zero, Err(HostError::Setup(m)) if m.contains("max_instances")));
    let tiny = PluginHost::new(HostConfig {
        memory_limit: 1000,
        ..HostConfig::default()
    });
    assert!(matches!(tiny, Err(HostError::Setup(m)) if m.contains("memory_limit")));
}
