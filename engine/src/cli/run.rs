//! `kiln run`: run a pipeline locally, with live progress and a summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::load::{load_pipeline, new_host};
use super::progress::{Progress, Style};
use crate::run::RunState;
use crate::scheduler::{HostExecutor, RunOptions, execute};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline file.
    file: PathBuf,
    /// Workspace directory shared by the steps (created if missing). Default: a new directory
    /// under the data dir (`$KILN_DATA_DIR/runs/<run id>/workspace`).
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Steps running at once.
    #[arg(long, short = 'j', default_value_t = 8)]
    jobs: usize,
    /// Keep running independent steps after a failure (default: stop at the first failure).
    #[arg(long)]
    no_fail_fast: bool,
    /// Print the finished run as one JSON document on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// JSON file with the triggering event (`event` in expressions). Default: a manual event.
    #[arg(long)]
    event: Option<PathBuf>,
    /// Make secret NAME available, read from the environment variable of the same name.
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Read secrets from a file of `NAME=value` lines (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    secrets_file: Option<PathBuf>,
    /// Set configuration variable NAME (`vars.NAME` in expressions), e.g.
    /// `--var REGISTRY=registry.example.com:443`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// Memory limit of one step, in MiB.
    #[arg(long, default_value_t = 256)]
    memory_limit: u64,
    /// Run every step: no step cache lookups or saves (the `cache` plugin still works).
    #[arg(long)]
    no_cache: bool,
    /// Log each step's cache key and the digest of each part of it, to see why a step missed.
    #[arg(long)]
    explain_cache: bool,
}

pub async fn run(args: RunArgs) -> ExitCode {
    match try_run(args).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn try_run(args: RunArgs) -> Result<ExitCode, String> {
    let memory_limit = args
        .memory_limit
        .checked_mul(1 << 20)
        .ok_or("`--memory-limit` is too large")?;
    if let Err(e) = crate::dirs::try_builder() {
        return Err(format!(
            "{e} (from `KILN_BUILDKIT_ADDR` / `KILN_BUILDKIT_TLS_*`)"
        ));
    }
    let store = crate::dirs::cache_store()?;
    let host = new_host(args.jobs, Some(memory_limit)).map_err(|e| e.to_string())?;
    let loaded = load_pipeline(&args.file, &host).await;
    if !loaded.diagnostics.is_empty() {
        eprint!("{}", kiln_pipeline::diag::render(&loaded.diagnostics));
    }
    let Some(resolved) = loaded.resolved else {
        return Ok(ExitCode::from(2));
    };
    if loaded
        .diagnostics
        .iter()
        .any(|d| d.severity == kiln_pipeline::Severity::Error)
    {
        return Ok(ExitCode::from(2));
    }

    let secrets = read_secrets(&args, &resolved.plan.secret_names())?;
    let event = match &args.event {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read event `{}`: {e}", path.display()))?;
            serde_json::from_str::<Value>(&text).map_err(|e| {
                format!(
                    "event `{}` is not JSON: {e}; hint: pass a JSON object",
                    path.display()
                )
            })?
        }
        None => json!({ "kind": "manual" }),
    };
    let git = git_facts(&event);
    let run_id = uuid::Uuid::now_v7().to_string();
    let workspace = match &args.workspace {
        Some(w) => w.clone(),
        None => crate::dirs::data_dir()
            .join("runs")
            .join(&run_id)
            .join("workspace"),
    };
    std::fs::create_dir_all(&workspace)
        .map_err(|e| format!("cannot create workspace `{}`: {e}", workspace.display()))?;
    let workspace = workspace.canonicalize().unwrap_or(workspace);

    let mut vars = BTreeMap::new();
    for v in &args.vars {
        let Some((name, value)) = v.split_once('=').filter(|(n, _)| !n.trim().is_empty()) else {
            return Err(format!(
                "`--var {v}` is not `NAME=VALUE`; hint: e.g. `--var REGISTRY=registry.example.com:443`"
            ));
        };
        vars.insert(name.trim().to_owned(), value.to_owned());
    }
    let options = RunOptions {
        vars,
        run_id,
        jobs: args.jobs.max(1),
        fail_fast: !args.no_fail_fast,
        workspace,
        event,
        git,
        secrets,
        memory_limit: Some(memory_limit),
        previous: None,
        cache: (!args.no_cache).then(|| {
            let mut cache = crate::cache::StepCache::new(Arc::new(store));
            cache.explain = args.explain_cache;
            Arc::new(cache)
        }),
    };
    let to_stderr = args.json;
    let tty = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let color = tty && std::env::var_os("NO_COLOR").is_none();
    let style = if tty {
        Style::Tty { color }
    } else {
        Style::Plain
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(Progress::new(style, to_stderr).consume(rx));

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ncancelling: stopping running steps (press Ctrl-C again to quit at once)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });

    let executor = Arc::new(HostExecutor {
        plugins: resolved.plugins,
    });
    let run = execute(resolved.plan, executor, options, tx, cancel).await;
    let _ = printer.await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&run).map_err(|e| e.to_string())?
        );
    }
    Ok(match run.state {
        RunState::Succeeded => ExitCode::SUCCESS,
        RunState::Cancelled => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

/// Secrets the plan needs, from `--secret NAME` (environment) and `--secrets-file`. A needed
/// secret that is missing is an error before anything runs.
fn read_secrets(args: &RunArgs, needed: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut secrets = BTreeMap::new();
    if let Some(path) = &args.secrets_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secrets file `{}`: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!(
                    "{}:{}: expected `NAME=value`; hint: one secret per line",
                    path.display(),
                    n + 1
                ));
            };
            secrets.insert(name.trim().to_owned(), value.to_owned());
        }
    }
    for name in &args.secrets {
        let value = std::env::var(name)
            .map_err(|_| format!("`--secret {name}` names an environment variable that is not set; hint: export {name}=..."))?;
        secrets.insert(name.clone(), value);
    }
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !secrets.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
        return Err(format!(
            "the pipeline needs secrets that were not given: {}; hint: pass `--secret NAME` (read from the environment) or `--secrets-file FILE`",
            list.join(", ")
        ));
    }
    secrets.retain(|k, _| needed.contains(k));
    Ok(secrets)
}

/// `git` in expressions, from a push-like event: `sha`, `ref`, `branch`, `tag`.
fn git_facts(event: &Value) -> Value {
    let sha = event
        .get("after")
        .or_else(|| event.pointer("/pull_request/head/sha"))
        .cloned()
        .unwrap_or(Value::Null);
    let git_ref = event.get("ref").cloned().unwrap_or(Value::Null);
    let (branch, tag) = match git_ref.as_str() {
        Some(r) => (
            r.strip_prefix("refs/heads/")
                .map(|b| Value::String(b.to_owned()))
                .unwrap_or(Value::Null),
            r.strip_prefix("refs/tags/")
                .map(|t| Value::String(t.to_owned()))
                .unwrap_or(Value::Null),
        ),
        None => (Value::Null, Value::Null),
    };
    json!({ "sha": sha, "ref": git_ref, "branch": branch, "tag": tag })
}
