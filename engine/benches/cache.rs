//! `cargo bench -p kiln --bench cache`: the step cache and the cache store, against baselines
//! measured in the same run.
//!
//! 1. A 50-step pipeline (write-file steps with `cache.outputs` and echo steps reading their
//!    outputs, five chains of ten) run by `kiln run` as a process: the first run (every step
//!    misses and is saved), then the same run again with nothing changed (every step is
//!    replayed); goal: the second run end to end under 100 ms. `--no-cache` is the baseline.
//! 2. Save and restore of a 500 MB directory (480 files of 1 MiB, 4,000 of 5 KiB) with the local
//!    store against GNU `tar -cf` / `tar -xf` of the same directory on the same disk; goal at
//!    most 1.2x. Page cache warm for both; median of 3, interleaved.
//!
//! `KILN_BENCH_MB` shrinks part 2 (e.g. `KILN_BENCH_MB=50` for a quick look). Asserts nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_cache::{LocalStore, Saved};

const STEPS: usize = 50;
const RUNS: usize = 5;

fn main() {
    pipeline_bench();
    store_bench();
}

fn pipeline_yaml() -> String {
    let mut y = String::from("name: cached-50\nsteps:\n");
    for i in 0..STEPS {
        let need = if i % 10 == 0 {
            String::new()
        } else {
            format!("    needs: [s{}]\n", i - 1)
        };
        if i % 2 == 0 {
            y.push_str(&format!(
                "  - id: s{i}\n    uses: write-file\n{need}    allow: {{ workspace: write }}\n    cache: {{ outputs: [\"out/{i}.txt\"] }}\n    with: {{ path: out/{i}.txt, content: \"{}\" }}\n",
                "x".repeat(1000)
            ));
        } else {
            y.push_str(&format!(
                "  - id: s{i}\n    uses: echo\n{need}    with: {{ message: \"after ${{{{ steps.s{}.outputs.sha256 }}}}\" }}\n",
                i - 1
            ));
        }
    }
    y
}

fn kiln(file: &Path, home: &Path, extra: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg(file)
        .args(extra)
        .env("KILN_CACHE_DIR", home.join("cache"))
        .env("KILN_DATA_DIR", home.join("data"))
        .env("NO_COLOR", "1")
        .stderr(Stdio::null())
        .output()
        .expect("kiln runs");
    let took = started.elapsed();
    assert!(out.status.success(), "kiln run failed");
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("cache: "))
        .unwrap_or_default()
        .to_owned();
    (took, summary)
}

fn pipeline_bench() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, pipeline_yaml()).expect("write");
    // Warm the compiled-component cache without touching the step cache.
    kiln(&file, dir.path(), &["--no-cache"]);
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut uncached = Vec::new();
    let (mut first_summary, mut second_summary) = (String::new(), String::new());
    for _ in 0..RUNS {
        let _ = std::fs::remove_dir_all(dir.path().join("cache/store"));
        let (t, s) = kiln(&file, dir.path(), &[]);
        first.push(t);
        first_summary = s;
        let (t, s) = kiln(&file, dir.path(), &[]);
        second.push(t);
        second_summary = s;
        uncached.push(kiln(&file, dir.path(), &["--no-cache"]).0);
    }
    let (first, second, uncached) = (median(first), median(second), median(uncached));
    println!("step cache: {STEPS}-step pipeline, `kiln run` end to end, median of {RUNS}");
    println!("  {:<44} {:>9} {:>8}", "", "wall", "ratio");
    println!(
        "  {:<44} {:>9} {:>8}",
        "no cache (--no-cache)",
        fmt(uncached),
        "1.00x"
    );
    println!(
        "  {:<44} {:>9} {:>7.2}x   [{first_summary}]",
        "first run: all miss, all saved",
        fmt(first),
        ratio(first, uncached)
    );
    let verdict = if second < Duration::from_millis(100) {
        "goal <100ms: met"
    } else {
        "goal <100ms: MISSED"
    };
    println!(
        "  {:<44} {:>9} {:>7.2}x   {verdict} [{second_summary}]",
        "second run, nothing changed: all replayed",
        fmt(second),
        ratio(second, uncached)
    );
}

/// A deterministic pseudo-random file body (xorshift), so the archive is not trivially small.
fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn store_bench() {
    let mb: usize = std::env::var("KILN_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let big = (mb * 480 / 500).max(1);
    let small = mb * 4000 / 500;
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    for i in 0..big {
        let d = src.join(format!("data/big/{}", i % 16));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(format!("f{i}.bin")), body(i as u64, 1 << 20)).expect("write");
    }
    for i in 0..small {
        let d = src.join(format!("data/small/{}", i % 100));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(format!("f{i}.js")), body(i as u64 + 7, 5 << 10)).expect("write");
    }
    let total: u64 = kiln_cache::files::walk(&src, None)
        .expect("walk")
        .iter()
        .map(|f| match f.kind {
            kiln_cache::files::FileKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let tar_file = dir.path().join("t.tar");
    let fresh = |name: &str| {
        let d = dir.path().join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    };
    let paths = vec!["data".to_owned()];
    let (mut tar_save, mut tar_restore, mut kiln_save, mut kiln_restore) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One untimed pass of each to warm the page cache.
    for round in 0..4 {
        let _ = std::fs::remove_file(&tar_file);
        let t = Instant::now();
        let ok = Command::new("tar")
            .arg("-cf")
            .arg(&tar_file)
            .arg("-C")
            .arg(&src)
            .arg("data")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tar -cf failed");
        let ts = t.elapsed();
        let dest = fresh("tar-dest");
        let t = Instant::now();
        let ok = Command::new("tar")
            .arg("-xf")
            .arg(&tar_file)
            .arg("-C")
            .arg(&dest)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tar -xf failed");
        let tr = t.elapsed();

        let store_dir = fresh("store");
        let store = LocalStore::open(&store_dir, u64::MAX).expect("store");
        let t = Instant::now();
        let saved = store
            .save("bench", serde_json::json!({}), Some((&src, &paths)))
            .expect("save");
        let ks = t.elapsed();
        let Saved::New(entry) = saved else {
            panic!("not saved")
        };
        let dest = fresh("kiln-dest");
        let t = Instant::now();
        store.restore(&entry, &dest).expect("restore");
        let kr = t.elapsed();
        if round > 0 {
            tar_save.push(ts);
            tar_restore.push(tr);
            kiln_save.push(ks);
            kiln_restore.push(kr);
        }
    }
    let (ts, tr, ks, kr) = (
        median(tar_save),
        median(tar_restore),
        median(kiln_save),
        median(kiln_restore),
    );
    println!(
        "cache store: {} MB in {} files, local store vs GNU tar, median of 3",
        total / 1_000_000,
        big + small
    );
    let verdict = |r: f64| {
        if r <= 1.2 {
            "goal <=1.2x: met"
        } else {
            "goal <=1.2x: MISSED"
        }
    };
    println!("  {:<44} {:>9} {:>8}", "", "wall", "vs tar");
    println!("  {:<44} {:>9} {:>8}", "tar -cf", fmt(ts), "1.00x");
    println!(
        "  {:<44} {:>9} {:>7.2}x   {}",
        "kiln save (tar + sha256 + atomic rename)",
        fmt(ks),
        ratio(ks, ts),
        verdict(ratio(ks, ts))
    );
    println!("  {:<44} {:>9} {:>8}", "tar -xf", fmt(tr), "1.00x");
    println!(
        "  {:<44} {:>9} {:>7.2}x   {}",
        "kiln restore (verify while unpacking + move)",
        fmt(kr),
        ratio(kr, tr),
        verdict(ratio(kr, tr))
    );
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2}ms", d.as_secs_f64() * 1e3)
    } else if d < Duration::from_secs(1) {
        format!("{:.0}ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}
