//! `cargo bench -p kiln --bench image`: image builds and pushes through Kiln against the same
//! work done straight on the same daemon, side by side in one run.
//!
//! Needs the `docker` and `registry` services (`scripts/services.sh up docker registry`, started
//! here when missing). Three comparisons, each the median of `KILN_BENCH_RUNS` (default 5)
//! alternating runs:
//!
//! 1. a full build (`no-cache`) of a context of 2,000 files (about 16 MiB) with a `COPY` and a
//!    `RUN` that reads every file: `kiln run` of a one-step `build` pipeline vs the daemon's own
//!    client (`DOCKER_BUILDKIT=1 docker build --no-cache`, Debian's 20.10 CLI). Goal: ≤ 1.05x.
//! 2. the same build again with nothing changed: every BuildKit step must say `CACHED`
//!    (checked, printed), and its time against the full build.
//! 3. a push of a fresh 32 MiB layer to the anonymous registry: `kiln run` of a `push` step vs
//!    `skopeo copy docker-daemon:… docker://…` of an image of the same size.
//!
//! Prints figures and ratios measured in the same run. Not a test: it asserts only that the
//! commands succeed and that the unchanged rebuild was fully cached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn services(names: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/services.sh"))
        .arg("up")
        .args(names)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/services.sh runs");
    assert!(
        out.status.success(),
        "services: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::env::var_os("KILN_SERVICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/services"));
    let mut vars = BTreeMap::new();
    for name in names {
        let text = std::fs::read_to_string(dir.join(name).join("env.json")).expect("env.json");
        let map: BTreeMap<String, String> = serde_json::from_str(&text).expect("env.json");
        vars.extend(map);
    }
    vars
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Bench {
    docker_host: String,
    home: tempfile::TempDir,
}

impl Bench {
    fn kiln(&self, pipeline: &str) -> (Duration, String) {
        let file = self.home.path().join("pipeline.yaml");
        std::fs::write(&file, pipeline).expect("write pipeline");
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("run")
            .arg(&file)
            .arg("--workspace")
            .arg(self.home.path().join("ws"))
            .env("KILN_CACHE_DIR", self.home.path().join("cache"))
            .env("KILN_DATA_DIR", self.home.path().join("data"))
            .env("KILN_BUILDKIT_ADDR", format!("docker+{}", self.docker_host))
            .env("NO_COLOR", "1")
            .output()
            .expect("kiln runs");
        let took = started.elapsed();
        let out = check(out, "kiln run");
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn docker(&self, args: &[&str]) -> (Duration, Output) {
        let started = Instant::now();
        // Builds get no network, as Kiln's do by default (this daemon has no bridge).
        let network: &[&str] = if args.first() == Some(&"build") {
            &["--network", "none"]
        } else {
            &[]
        };
        let out = Command::new("/usr/bin/docker")
            .args(["-H", &self.docker_host])
            .args(&args[..1])
            .args(network)
            .args(&args[1..])
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.home.path().join("docker-config"))
            .output()
            .expect("docker runs");
        (started.elapsed(), check(out, &format!("docker {args:?}")))
    }
}

/// Whether every Dockerfile step (`#N [k/n] …`) in a build log was answered `#N CACHED`.
fn all_steps_cached(log: &str) -> bool {
    let vertex = |l: &str| -> Option<String> {
        let rest = l.split_once("] #")?.1;
        let (n, rest) = rest.split_once(' ')?;
        Some(format!("{n} {rest}"))
    };
    let steps: Vec<String> = log
        .lines()
        .filter_map(vertex)
        .filter(|v| {
            // `[2/3] COPY …` or `[stage-1 2/3] RUN …`, not `[internal] load … a/b`. A `FROM`
            // is resolved, not built, so BuildKit reports it `DONE` either way.
            let Some((inside, instruction)) =
                v.split_once(" [").and_then(|(_, r)| r.split_once(']'))
            else {
                return false;
            };
            if instruction.trim_start().starts_with("FROM ") {
                return false;
            }
            let last = inside.rsplit(' ').next().unwrap_or_default();
            last.split_once('/').is_some_and(|(k, n)| {
                !k.is_empty()
                    && !n.is_empty()
                    && k.bytes().all(|b| b.is_ascii_digit())
                    && n.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .map(|v| v.split(' ').next().unwrap_or_default().to_string())
        .collect();
    !steps.is_empty()
        && steps
            .iter()
            .all(|n| log.lines().any(|l| l.ends_with(&format!("#{n} CACHED"))))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::var("KILN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let vars = services(&["docker", "registry"]);
    let bench = Bench {
        docker_host: vars["KILN_DOCKER_HOST"].clone(),
        home: tempfile::tempdir().expect("temp dir"),
    };
    let base = &vars["KILN_BASE_IMAGE"];
    let registry = &vars["KILN_REGISTRY"];
    let ws = bench.home.path().join("ws");

    // The build context: 2,000 files of 8 KiB in 20 directories.
    for i in 0..2000 {
        let dir = ws.join(format!("app/src/d{}", i % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let body: Vec<u8> = (0..8192u32)
            .map(|j| (j.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
            .collect();
        std::fs::write(dir.join(format!("f{i}.dat")), body).expect("write");
    }
    std::fs::write(
        ws.join("app/Dockerfile"),
        format!(
            "FROM {base}\nCOPY src /src\nRUN find /src -type f | xargs cat | sha256sum > /digest\n"
        ),
    )
    .expect("Dockerfile");

    // 1. Full builds, alternating.
    let build = |no_cache: bool| {
        format!(
            "name: bench-build\nsteps:\n  - id: image\n    uses: build\n    with: {{ context: app, tags: \"kiln.local/bench/build:kiln\", no-cache: {no_cache} }}\n"
        )
    };
    let ctx = ws.join("app");
    let ctx = ctx.to_string_lossy();
    // Warm both paths once (the component cache, the base image's metadata).
    bench.kiln(&build(true));
    bench.docker(&[
        "build",
        "-q",
        "--no-cache",
        "-t",
        "kiln.local/bench/build:docker",
        &ctx,
    ]);
    let mut kiln_full = Vec::new();
    let mut docker_full = Vec::new();
    for _ in 0..runs {
        kiln_full.push(bench.kiln(&build(true)).0);
        docker_full.push(
            bench
                .docker(&[
                    "build",
                    "-q",
                    "--no-cache",
                    "-t",
                    "kiln.local/bench/build:docker",
                    &ctx,
                ])
                .0,
        );
    }
    let (kiln_full, docker_full) = (median(kiln_full), median(docker_full));

    // 2. Unchanged rebuilds.
    let mut kiln_cached = Vec::new();
    let mut docker_cached = Vec::new();
    let mut fully_cached = true;
    for _ in 0..runs {
        let (took, log) = bench.kiln(&build(false));
        kiln_cached.push(took);
        fully_cached &= all_steps_cached(&log);
        docker_cached.push(
            bench
                .docker(&["build", "-q", "-t", "kiln.local/bench/build:docker", &ctx])
                .0,
        );
    }
    let (kiln_cached, docker_cached) = (median(kiln_cached), median(docker_cached));

    // 3. Pushes of a fresh 32 MiB layer each time.
    let mut kiln_push = Vec::new();
    let mut skopeo_push = Vec::new();
    for i in 0..runs {
        for who in ["kiln", "skopeo"] {
            let tag = format!("kiln.local/bench/push-{who}:{i}");
            std::fs::create_dir_all(ws.join("push")).expect("mkdir");
            std::fs::write(
                ws.join("push/Dockerfile"),
                format!(
                    "FROM {base}\nRUN head -c 33554432 /dev/urandom > /blob && echo {who}-{i}-{} > /id\n",
                    std::process::id()
                ),
            )
            .expect("Dockerfile");
            let push_ctx = ws.join("push");
            bench.docker(&["build", "-q", "-t", &tag, &push_ctx.to_string_lossy()]);
            let target = format!("{registry}/bench/{who}-{}:{i}", std::process::id());
            if who == "kiln" {
                let pipeline = format!(
                    "name: bench-push\nsteps:\n  - id: publish\n    uses: push\n    allow: {{ net: [\"{registry}\"] }}\n    with: {{ image: \"{tag}\", tags: \"{target}\" }}\n"
                );
                kiln_push.push(bench.kiln(&pipeline).0);
            } else {
                let started = Instant::now();
                let out = Command::new("skopeo")
                    .args(["copy", "--quiet", "--dest-tls-verify=false"])
                    .arg(format!("--src-daemon-host={}", bench.docker_host))
                    .arg(format!("docker-daemon:{tag}"))
                    .arg(format!("docker://{target}"))
                    .output()
                    .expect("skopeo runs");
                skopeo_push.push(started.elapsed());
                check(out, "skopeo copy");
            }
        }
    }
    let (kiln_push, skopeo_push) = (median(kiln_push), median(skopeo_push));

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("kiln image bench: median of {runs} alternating runs on the same dockerd");
    println!(
        "{:<52} {:>10} {:>10} {:>8}",
        "", "kiln", "baseline", "ratio"
    );
    let full = ratio(kiln_full, docker_full);
    println!(
        "{:<52} {:>10} {:>10} {:>7.2}x  goal ≤1.05x: {}",
        "full build, 2,000 files (vs docker build)",
        ms(kiln_full),
        ms(docker_full),
        full,
        if full <= 1.05 { "met" } else { "MISSED" }
    );
    println!(
        "{:<52} {:>10} {:>10} {:>7.2}x  fully cached: {}",
        "unchanged rebuild (vs docker build)",
        ms(kiln_cached),
        ms(docker_cached),
        ratio(kiln_cached, docker_cached),
        if fully_cached { "yes" } else { "NO" }
    );
    println!(
        "{:<52} {:>10} {:>10} {:>7.2}x",
        "push of a fresh 32 MiB layer (vs skopeo copy)",
        ms(kiln_push),
        ms(skopeo_push),
        ratio(kiln_push, skopeo_push)
    );
}
