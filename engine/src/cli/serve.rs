//! `kiln serve` and `kiln token new`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::server::config::{Config, Overrides};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (YAML); environment variables override it, these flags override both.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free one). Env: KILN_LISTEN.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Where the store (unless `store.path`), workspaces and the worker id live. Env:
    /// KILN_DATA_DIR.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new API token: prints the token (give it to the client) and the line for
    /// `api.tokens` in the server's configuration (only the hash is kept there).
    New {
        /// A name for the token, shown in the configuration.
        #[arg(long, default_value = "client")]
        name: String,
    },
    /// Print the `sha256:` hash of a token read from standard input.
    Hash,
}

pub async fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        config: args.config,
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = match Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::server::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn token(command: TokenCommand) -> ExitCode {
    use crate::server::auth::{TokenHash, new_token};
    match command {
        TokenCommand::New { name } => match new_token() {
            Ok(token) => {
                println!("token: {token}");
                println!("config:");
                println!("  api:");
                println!("    tokens:");
                println!(
                    "      - {{ name: {name}, hash: \"{}\" }}",
                    TokenHash::of(&token).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        TokenCommand::Hash => {
            let mut line = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut line) {
                eprintln!("error: cannot read standard input: {e}");
                return ExitCode::from(2);
            }
            println!(
                "{}",
                TokenHash::of(line.trim_end_matches(['\n', '\r'])).display()
            );
            ExitCode::SUCCESS
        }
    }
}
