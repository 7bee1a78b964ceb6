//! Clone benchmark against the real smart-HTTP server of `scripts/services.sh`:
//!
//! * cold: a clone through Kiln into an empty mirror cache vs `git clone` of the same URL
//!   (goal: Kiln takes at most 1.2x as long);
//! * warm: a clone through Kiln's mirror cache after one new commit was pushed vs a cold
//!   `git clone` (goal: at least 10x faster).
//!
//! Run: `cargo bench -p kiln-git --bench clone` (release build). The repository (10,000 commits,
//! 5,000 files by default) is made once with `scripts/gen-bench-repo.sh` and cached under
//! `target/bench-repos/`; each run serves a copy of it through the anonymous HTTP URL.
//!
//! Environment: `KILN_BENCH_RUNS` (default 5; the median is reported), `KILN_BENCH_COMMITS`
//! (10000), `KILN_BENCH_FILES` (5000), `KILN_BENCH_PROFILE=1` to print where a Kiln cold clone
//! spends its time (from the progress lines).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_git::{Cancel, CloneOptions, Git, GitConfig, Remote, RemoteUrl};

fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this in test mode
    // without it, where a minutes-long benchmark has no place.
    if !std::env::args().any(|a| a == "--bench") {
        println!("clone benchmark: skipped (run it with `cargo bench -p kiln-git --bench clone`)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let runs = env_num("KILN_BENCH_RUNS", 5).max(1);
    let commits = env_num("KILN_BENCH_COMMITS", 10_000);
    let files = env_num("KILN_BENCH_FILES", 5_000);

    // Servers.
    run(Command::new("bash")
        .arg(root.join("scripts/services.sh"))
        .args(["up", "git"])
        .current_dir(&root));
    let env = run(Command::new("bash")
        .arg(root.join("scripts/services.sh"))
        .args(["env", "git"])
        .current_dir(&root));
    let var = |name: &str| -> String {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} not in `services.sh env git`"))
            .trim_matches('\'')
            .to_string()
    };
    let repos = PathBuf::from(var("KILN_GIT_REPOS"));
    let anon = var("KILN_GIT_HTTP_ANON_URL");

    // The generated repository, cached between runs.
    let cache = root.join(format!("target/bench-repos/gen-{commits}x{files}.git"));
    if !cache.join("HEAD").is_file() {
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        eprintln!("generating {} ...", cache.display());
        run(Command::new("bash")
            .arg(root.join("scripts/gen-bench-repo.sh"))
            .arg(&cache)
            .arg(commits.to_string())
            .arg(files.to_string()));
    }
    let name = format!("kiln-bench-{}.git", std::process::id());
    let served = repos.join(&name);
    let _ = std::fs::remove_dir_all(&served);
    run(Command::new("cp").arg("-a").arg(&cache).arg(&served));
    let _cleanup = Cleanup(served.clone());
    let url = format!("{anon}/{name}");

    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let scratch = scratch.path();
    let git_version = run(Command::new("git").arg("--version"));
    println!(
        "repository: {commits} commits, {files} files, {} MiB on disk, served at {url}",
        dir_size(&served) / (1 << 20)
    );
    println!(
        "client: {git_version} vs kiln-git (libgit2 {}), {runs} runs each, median",
        libgit2_version()
    );

    let git_clone = |dest: &Path| -> Duration {
        let t = Instant::now();
        run(Command::new("git")
            .args(["clone", "-q", &url])
            .arg(dest)
            .env("GIT_TERMINAL_PROMPT", "0"));
        t.elapsed()
    };
    let profile = std::env::var_os("KILN_BENCH_PROFILE").is_some();
    let kiln_clone = |mirrors: &Path, dest: &Path| -> Duration {
        let g = Git::new(GitConfig {
            mirror_dir: mirrors.to_path_buf(),
            mirror_max_bytes: 1 << 40,
            allow_local: false,
        });
        let options = CloneOptions {
            remote: Remote::new(RemoteUrl::parse(&url).unwrap()),
            reference: None,
            dest: dest.to_path_buf(),
            depth: None,
            submodules: false,
            authorize: &|_| Ok(()),
        };
        let t = Instant::now();
        let lines = Mutex::new(Vec::new());
        g.clone_repo(
            &options,
            &|l| lines.lock().unwrap().push((t.elapsed(), l.to_string())),
            &Cancel::default(),
        )
        .unwrap();
        let took = t.elapsed();
        if profile {
            for (at, l) in lines.into_inner().unwrap() {
                eprintln!("  {:>8.1} ms  {l}", ms(at));
            }
            eprintln!("  {:>8.1} ms  done", ms(took));
        }
        took
    };

    // Warm up the server's page cache (and the pack it sends) once, untimed.
    git_clone(&scratch.join("warmup"));

    // Nothing is deleted until the end: freeing thousands of inodes just before creating
    // thousands makes ext4 (without a journal, as on some CI machines) scan for inodes not
    // recently deleted, which slows every checkout, git's and ours, by up to 3x.
    let (mut git_cold, mut kiln_cold) = (Vec::new(), Vec::new());
    for i in 0..runs {
        git_cold.push(git_clone(&scratch.join(format!("git-cold-{i}"))));
        kiln_cold.push(kiln_clone(
            &scratch.join(format!("mirrors-cold-{i}")),
            &scratch.join(format!("kiln-cold-{i}")),
        ));
    }

    // Warm: the mirror of the first cold run, one new commit on the server before each clone.
    let mut kiln_warm = Vec::new();
    let mut git_after = Vec::new();
    let mut git_checkout = Vec::new();
    for i in 0..runs {
        run(Command::new("bash")
            .arg(root.join("scripts/gen-bench-repo.sh"))
            .arg("add-commit")
            .arg(&served));
        kiln_warm.push(kiln_clone(
            &scratch.join("mirrors-cold-0"),
            &scratch.join(format!("kiln-warm-{i}")),
        ));
        // A cold `git clone` of the same state, for the warm ratio.
        git_after.push(git_clone(&scratch.join(format!("git-after-{i}"))));
        // What writing the working tree alone costs here: `git checkout` in a clone made with
        // `--no-checkout` (the floor of any clone into an empty directory).
        let bare = scratch.join(format!("git-nocheckout-{i}"));
        run(Command::new("git")
            .args(["clone", "-q", "--no-checkout", &url])
            .arg(&bare));
        let t = Instant::now();
        run(Command::new("git")
            .args(["checkout", "-q", "main"])
            .current_dir(&bare));
        git_checkout.push(t.elapsed());
    }

    let git_cold_m = median(&mut git_cold);
    let kiln_cold_m = median(&mut kiln_cold);
    let kiln_warm_m = median(&mut kiln_warm);
    let git_after_m = median(&mut git_after);
    let git_checkout_m = median(&mut git_checkout);
    let cold_ratio = ms(kiln_cold_m) / ms(git_cold_m);
    let warm_speedup = ms(git_after_m) / ms(kiln_warm_m);
    println!();
    println!("| case                                   | median ms | runs (ms)");
    println!("|----------------------------------------|-----------|----------");
    let row = |what: &str, m: Duration, all: &[Duration]| {
        let all: Vec<String> = all.iter().map(|d| format!("{:.0}", ms(*d))).collect();
        println!("| {what:<38} | {:>9.0} | {}", ms(m), all.join(", "));
    };
    row("git clone (cold)", git_cold_m, &git_cold);
    row(
        "kiln clone (cold, empty mirror cache)",
        kiln_cold_m,
        &kiln_cold,
    );
    row(
        "git clone (cold, after a new commit)",
        git_after_m,
        &git_after,
    );
    row(
        "kiln clone (warm mirror, 1 new commit)",
        kiln_warm_m,
        &kiln_warm,
    );
    row(
        "git checkout only (working tree floor)",
        git_checkout_m,
        &git_checkout,
    );
    println!();
    println!(
        "cold: kiln / git = {cold_ratio:.2}x (goal <= 1.20x): {}",
        if cold_ratio <= 1.2 { "met" } else { "MISSED" }
    );
    println!(
        "warm: git cold / kiln warm = {warm_speedup:.1}x faster (goal >= 10x): {}",
        if warm_speedup >= 10.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "      (writing the {files} files alone takes git {:.0} ms here: at best {:.1}x for any clone into an empty directory)",
        ms(git_checkout_m),
        ms(git_after_m) / ms(git_checkout_m)
    );
}

fn libgit2_version() -> String {
    let v = git2::Version::get();
    let (a, b, c) = v.libgit2_version();
    format!("{a}.{b}.{c}")
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
