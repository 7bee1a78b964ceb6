//! The `kiln` command line: the edge where typed errors become messages and exit codes.
//!
//! Exit codes: 0 success; 1 a run failed or `validate` found errors; 2 bad usage or a pipeline
//! that cannot run (diagnostics printed); 130 cancelled (Ctrl-C).

mod cache;
mod load;
mod nx;
mod progress;
mod run;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use load::{Loaded, load_pipeline, load_text, new_host, new_host_with};

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "A build engine: YAML pipelines run as a DAG of sandboxed WASI component steps"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check pipeline files and print every problem found (exit 1 if any is an error).
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run a pipeline locally.
    Run(run::RunArgs),
    /// Print the resolved DAG of a pipeline.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of pipeline files (for editors).
    Schema,
    /// List the built-in plugins, or describe one (its config schema and outputs).
    Plugins { name: Option<String> },
    /// Inspect, trim or clear the caches (step results and `cache` entries, git mirrors, compiled components).
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Nx workspaces: which projects a change affects (no Node needed).
    #[command(subcommand)]
    Nx(nx::NxCommand),
    /// Run the HTTP server: the runs API, GitHub/GitLab webhooks, the durable queue.
    Serve(serve::ServeArgs),
    /// API tokens for `kiln serve`.
    #[command(subcommand)]
    Token(serve::TokenCommand),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

/// Entry point of the `kiln` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Validate { files, format } => validate(files, format).await,
        Command::Run(args) => run::run(args).await,
        Command::Graph { file, format } => graph(file, format).await,
        Command::Schema => {
            println!("{}", pretty(&kiln_pipeline::schema::schema()));
            ExitCode::SUCCESS
        }
        Command::Plugins { name } => plugins(name).await,
        Command::Cache(command) => cache::cache(command),
        Command::Nx(command) => nx::nx(command),
        Command::Serve(args) => serve::serve(args).await,
        Command::Token(command) => serve::token(command),
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

async fn validate(files: Vec<PathBuf>, format: Format) -> ExitCode {
    let host = match new_host(1, None) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let mut all = Vec::new();
    let mut errors = false;
    for file in &files {
        let loaded = load_pipeline(file, &host).await;
        errors |= loaded.has_errors();
        if format == Format::Human {
            if loaded.diagnostics.is_empty() {
                let steps = loaded
                    .resolved
                    .as_ref()
                    .map_or(0, |r| r.plan.pipeline.steps.len());
                println!("ok: {} ({steps} steps)", file.display());
            } else {
                print!("{}", kiln_pipeline::diag::render(&loaded.diagnostics));
            }
        }
        all.extend(loaded.diagnostics);
    }
    if format == Format::Json {
        println!("{}", pretty(&kiln_pipeline::diag::to_json(&all)));
    }
    if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn graph(file: PathBuf, format: GraphFormat) -> ExitCode {
    let host = match new_host(1, None) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let loaded = load_pipeline(&file, &host).await;
    let Some(resolved) = loaded.resolved else {
        eprint!("{}", kiln_pipeline::diag::render(&loaded.diagnostics));
        return ExitCode::from(2);
    };
    match format {
        GraphFormat::Mermaid => print!("{}", resolved.plan.to_mermaid()),
        GraphFormat::Dot => print!("{}", resolved.plan.to_dot()),
    }
    ExitCode::SUCCESS
}

async fn plugins(name: Option<String>) -> ExitCode {
    let host = match new_host(1, None) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let loader = crate::plan::PluginLoader::new(host);
    let names: Vec<&str> = match &name {
        Some(n) => vec![n.as_str()],
        None => crate::builtins::names().collect(),
    };
    for n in names {
        let plugin = match loader
            .load(
                &kiln_pipeline::PluginRef::Builtin(n.to_owned()),
                std::path::Path::new("."),
            )
            .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {}", e.message);
                if let Some(h) = e.hint {
                    eprintln!("hint: {h}");
                }
                return ExitCode::from(2);
            }
        };
        let info = &plugin.info;
        let caps: Vec<&str> = info.capabilities.iter().map(|c| c.as_str()).collect();
        if name.is_some() {
            println!("{} {}: {}", info.name, info.version, info.description);
            println!("digest: {}", plugin.digest);
            println!(
                "capabilities: {}",
                if caps.is_empty() {
                    "none".to_owned()
                } else {
                    caps.join(", ")
                }
            );
            println!(
                "outputs: {}",
                if info.outputs.is_empty() {
                    "any".to_owned()
                } else {
                    info.outputs.join(", ")
                }
            );
            println!("config schema:\n{}", pretty(&info.config_schema));
        } else {
            let caps = if caps.is_empty() {
                String::new()
            } else {
                format!(" [needs: {}]", caps.join(", "))
            };
            println!(
                "{:<12} {:<8} {}{caps}",
                info.name, info.version, info.description
            );
        }
    }
    ExitCode::SUCCESS
}

fn fail(message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
