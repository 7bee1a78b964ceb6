//! `cargo bench -p kiln --bench engine`: the engine end to end through the CLI, against the limit.
//!
//! - the limit: a bare wasmtime instantiate + `run` call of the `echo` component (pooling
//!   allocator, `InstancePre`, no Kiln);
//! - a 1,000-step pipeline of `echo` steps, wide (all independent) and deep (a chain), run by
//!   `kiln run` as a process with a warm compiled-component cache; goal under 1 s each;
//! - the cold first run (the component compiled on the way), separately.
//!
//! Prints figures and ratios measured in the same run. Not a test: it asserts nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, Val};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

const STEPS: usize = 1000;
const RUNS: usize = 5;

fn main() {
    let echo = kiln::builtins::get("echo").expect("echo is a built-in");
    let bare = bare_wasmtime(echo, 2000);

    let dir = tempfile::tempdir().expect("temp dir");
    let wide = dir.path().join("wide.yaml");
    let deep = dir.path().join("deep.yaml");
    std::fs::write(&wide, pipeline(false)).expect("write");
    std::fs::write(&deep, pipeline(true)).expect("write");
    let cache = dir.path().join("cache");

    let cold = run_kiln(&wide, &cache, dir.path());
    let wide_times: Vec<Duration> = (0..RUNS)
        .map(|_| run_kiln(&wide, &cache, dir.path()))
        .collect();
    let deep_times: Vec<Duration> = (0..RUNS)
        .map(|_| run_kiln(&deep, &cache, dir.path()))
        .collect();
    let (wide, deep) = (median(wide_times), median(deep_times));

    let per_step = |d: Duration| d / u32::try_from(STEPS).unwrap_or(1);
    let ratio = |d: Duration| per_step(d).as_secs_f64() / bare.as_secs_f64();
    println!("kiln engine bench: {STEPS} echo steps, `kiln run` end to end, median of {RUNS} runs");
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "", "wall", "per step", "vs limit"
    );
    println!(
        "{:<34} {:>10} {:>12} {:>10}",
        "limit: bare wasmtime inst.+call",
        "-",
        fmt(bare),
        "1.00x"
    );
    for (name, d) in [
        ("wide, warm cache", wide),
        ("deep (chain), warm cache", deep),
    ] {
        let verdict = if d < Duration::from_secs(1) {
            "goal <1s: met"
        } else {
            "goal <1s: MISSED"
        };
        println!(
            "{name:<34} {:>10} {:>12} {:>9.1}x   {verdict}",
            fmt(d),
            fmt(per_step(d)),
            ratio(d)
        );
    }
    println!("{:<34} {:>10}", "wide, cold (compiles echo)", fmt(cold));
}

/// A pipeline of `STEPS` echo steps; `chain` makes each need the one before.
fn pipeline(chain: bool) -> String {
    let mut y = format!("name: {}\nsteps:\n", if chain { "deep" } else { "wide" });
    for i in 0..STEPS {
        y.push_str(&format!(
            "  - id: s{i}\n    uses: echo\n    with: {{ message: \"step {i}\" }}\n"
        ));
        if chain && i > 0 {
            y.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    y
}

fn run_kiln(file: &Path, cache: &Path, scratch: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg(file)
        .arg("--workspace")
        .arg(scratch.join("ws"))
        .env("KILN_CACHE_DIR", cache)
        .env("KILN_DATA_DIR", scratch.join("data"))
        .stdout(Stdio::null())
        .status()
        .expect("run kiln");
    let took = started.elapsed();
    assert!(status.success(), "kiln run {} failed", file.display());
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else if d < Duration::from_secs(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Mean time of a fresh instance + one `run` call, with wasmtime alone.
fn bare_wasmtime(bytes: &[u8], n: u32) -> Duration {
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).expect("engine");
    let component = Component::new(&engine, bytes).expect("compile");
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi");
    linker
        .instance("kiln:plugin/log@0.1.0")
        .and_then(|mut i| i.func_new("log", |_, _, _, _| Ok(())))
        .expect("log");
    linker
        .instance("kiln:plugin/outputs@0.1.0")
        .and_then(|mut i| {
            i.func_new("set", |_, _, _, results| {
                results[0] = Val::Result(Ok(None));
                Ok(())
            })
        })
        .expect("outputs");
    let pre = linker.instantiate_pre(&component).expect("instantiate_pre");
    let ctx = Val::Record(vec![
        ("run-id".into(), Val::String("r".into())),
        ("step-id".into(), Val::String("s".into())),
        ("attempt".into(), Val::U32(1)),
        ("config".into(), Val::String(r#"{"message":"step"}"#.into())),
        ("event".into(), Val::String("{}".into())),
        ("workspace".into(), Val::String("/workspace".into())),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let call = async || {
            let mut store = Store::new(
                &engine,
                Bare {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                },
            );
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            let run = instance.get_func(&mut store, "run").expect("run export");
            let mut results = [Val::Bool(false)];
            run.call_async(&mut store, std::slice::from_ref(&ctx), &mut results)
                .await
                .expect("call");
            assert_eq!(results[0], Val::Result(Ok(None)));
        };
        for _ in 0..50 {
            call().await;
        }
        let started = Instant::now();
        for _ in 0..n {
            call().await;
        }
        started.elapsed() / n
    })
}
