//! `kiln nx affected`: the Nx projects affected between two commits of a local repository, with
//! the same `kiln-nx` code the `nx-affected` plugin runs (here on the host's git).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kiln_nx::{Change, ChangeKind, Snapshot};

#[derive(Subcommand, Debug)]
pub enum NxCommand {
    /// Print the projects affected between two commits (as `nx show projects --affected`).
    Affected(AffectedArgs),
}

#[derive(Args, Debug)]
pub struct AffectedArgs {
    /// The repository (the Nx workspace root).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Base commit; the changes are `git diff base...head` (from the merge base).
    #[arg(long)]
    base: String,
    /// Head commit.
    #[arg(long, default_value = "HEAD")]
    head: String,
    /// Print a JSON array of names instead of one name per line.
    #[arg(long)]
    json: bool,
}

pub fn nx(command: NxCommand) -> ExitCode {
    match command {
        NxCommand::Affected(args) => match affected(&args) {
            Ok(names) => {
                if args.json {
                    println!("{}", serde_json::Value::from(names));
                } else {
                    for n in names {
                        println!("{n}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(message) => super::fail(&message),
        },
    }
}

fn affected(args: &AffectedArgs) -> Result<Vec<String>, String> {
    let git = crate::dirs::git(true);
    let repo = args.repo.as_path();
    let authorize = |_: &kiln_git::RemoteUrl| Ok(());
    let progress = |line: &str| eprintln!("{line}");
    let cancel = kiln_git::Cancel::default();
    let access = kiln_git::Access {
        remote: None,
        authorize: &authorize,
        progress: &progress,
        cancel: &cancel,
    };
    let changes: Vec<Change> = git
        .changed_files(repo, &args.base, &args.head, &access)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| Change {
            kind: match c.kind {
                kiln_git::ChangeKind::Added => ChangeKind::Added,
                kiln_git::ChangeKind::Deleted => ChangeKind::Deleted,
                kiln_git::ChangeKind::Renamed => ChangeKind::Renamed,
                kiln_git::ChangeKind::Modified | kiln_git::ChangeKind::TypeChanged => {
                    ChangeKind::Modified
                }
            },
            path: c.path,
            old_path: c.old_path,
        })
        .collect();
    let head_sha = git.commit(repo, &args.head).map_err(|e| e.to_string())?.sha;
    // A checkout at head is read from disk (fast); otherwise every file comes from git.
    let checked_out = git.commit(repo, "HEAD").is_ok_and(|c| c.sha == head_sha);
    let head = Rev {
        git: &git,
        repo,
        rev: head_sha,
        disk: checked_out,
    };
    // Nx diffs root JSON files against `--base` itself (not the merge base); so does kiln.
    let base = Rev {
        git: &git,
        repo,
        rev: args.base.clone(),
        disk: false,
    };
    let projects = kiln_nx::affected(&base, &head, &changes).map_err(|e| e.to_string())?;
    Ok(projects.into_iter().map(|p| p.name).collect())
}

struct Rev<'a> {
    git: &'a kiln_git::Git,
    repo: &'a Path,
    rev: String,
    disk: bool,
}

impl Snapshot for Rev<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, kiln_nx::Error> {
        if self.disk {
            return match std::fs::read(self.repo.join(path)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(kiln_nx::Error::read(path, e.to_string())),
            };
        }
        self.git
            .read_file(self.repo, &self.rev, path)
            .map_err(|e| kiln_nx::Error::read(path, e.to_string()))
    }

    fn list(&self) -> Result<Vec<String>, kiln_nx::Error> {
        self.git
            .list_files(self.repo, &self.rev)
            .map_err(|e| kiln_nx::Error::read(".", e.to_string()))
    }
}
