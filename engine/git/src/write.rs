//! Writing through a workspace repository: commit changes of its working tree, and push a
//! commit to a remote with the credentials and SSH host-key checks clone uses.
//!
//! Both refuse a repository whose git directory, object store or alternates lie outside
//! [`CommitOptions::confine`] / [`PushOptions::confine`]: a `.git` *file* or an alternates entry
//! planted by an earlier step could otherwise point the host at a repository elsewhere on the
//! machine.

use std::cell::{Cell, RefCell};
use std::fs;
use std::path::{Component, Path, PathBuf};

use git2::{IndexAddOption, Oid, Pathspec, PathspecFlags, Repository, Signature};

use crate::auth::Attempts;
use crate::clone::{Throttle, callbacks, commit_info, explain};
use crate::history::{Change, diff_trees};
use crate::{
    Cancel, Commit, Credentials, Git, GitError, HostKeyCheck, Progress, Remote, RemoteUrl,
};

/// Who made a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    /// Parses `Name <email>`, as `git commit --author` takes it.
    pub fn parse(text: &str) -> Result<Identity, GitError> {
        let invalid = || GitError::Invalid {
            message: format!("`{text}` is not an identity"),
            hint: "write it as `Name <email@example.com>`".into(),
        };
        let (name, rest) = text.split_once('<').ok_or_else(invalid)?;
        let email = rest.strip_suffix('>').ok_or_else(invalid)?;
        let id = Identity {
            name: name.trim().to_string(),
            email: email.trim().to_string(),
        };
        id.check("identity")?;
        Ok(id)
    }

    /// Refuses what git cannot store: an empty part, `<`, `>` or a line break.
    fn check(&self, what: &str) -> Result<(), GitError> {
        let bad = |s: &str| s.trim().is_empty() || s.contains(['<', '>', '\n', '\r', '\0']);
        if bad(&self.name) || bad(&self.email) || self.email.contains(char::is_whitespace) {
            return Err(GitError::Invalid {
                message: format!(
                    "the {what} `{} <{}>` is not usable in a commit",
                    self.name, self.email
                ),
                hint: "give a non-empty name and an email without spaces, `<`, `>` or line breaks"
                    .into(),
            });
        }
        Ok(())
    }

    fn signature(&self, what: &str) -> Result<Signature<'static>, GitError> {
        self.check(what)?;
        Signature::now(self.name.trim(), self.email.trim())
            .map_err(|e| GitError::other(format!("{what} signature"), e))
    }
}

/// What to commit.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// Root of the working tree.
    pub repo: PathBuf,
    /// The repository's git directory, object store and alternates must lie inside this
    /// directory (the workspace). `None`: no check.
    pub confine: Option<PathBuf>,
    /// What to stage, relative to the repository root: files, directories or globs
    /// (`docs/*.md`). Empty: every change, as `git add -A` (ignored files stay out). A path
    /// that matches nothing, tracked or not, is an error; an ignored file named exactly too.
    pub paths: Vec<String>,
    pub message: String,
    pub author: Identity,
    /// Defaults to the author.
    pub committer: Option<Identity>,
    /// Commit even when the staged tree equals `HEAD`'s.
    pub allow_empty: bool,
}

/// What [`Git::commit_changes`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// `HEAD` afterwards: the new commit, or the unchanged `HEAD` when nothing was committed.
    pub commit: Commit,
    /// Whether a commit was made.
    pub created: bool,
    /// What the new commit changed (empty when none was made).
    pub changes: Vec<Change>,
}

/// What to push, and where.
pub struct PushOptions<'a> {
    /// The repository (working tree root, or a bare repository).
    pub repo: PathBuf,
    /// As [`CommitOptions::confine`].
    pub confine: Option<PathBuf>,
    /// A remote of the repository by name (`origin`; its `pushurl` wins over its `url`), or a
    /// URL.
    pub remote: String,
    pub credentials: Credentials,
    pub host_key: HostKeyCheck,
    /// The commit to push: a revision (`HEAD`, a branch, a SHA). `None`: `HEAD`.
    pub source: Option<String>,
    /// The remote ref to update: a branch name or a full ref. `None`: the branch `HEAD` is on.
    pub destination: Option<String>,
    /// Overwrite the remote ref even when that drops commits from it.
    pub force: bool,
    /// After a push to a named remote, update `refs/remotes/<name>/<branch>` as git does
    /// (writes to the repository).
    pub update_tracking: bool,
    /// Asked before the remote is contacted: the caller's grant check.
    pub authorize: &'a (dyn Fn(&RemoteUrl) -> Result<(), GitError> + Sync),
}

/// What [`Git::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The URL pushed to (never with credentials).
    pub url: String,
    /// The full remote ref, e.g. `refs/heads/main`.
    pub reference: String,
    /// The commit the remote ref points to now.
    pub sha: String,
    /// What it pointed to before; `None` when the push created it.
    pub previous: Option<String>,
    /// `false` when the remote already had `sha` there: nothing was sent.
    pub updated: bool,
}

/// Most bytes of the server's messages (`remote: …`) kept to explain a refusal.
const MAX_REMOTE_MESSAGES: usize = 4 << 10;

impl Git {
    /// Stages `options.paths` (or every change) and commits them on top of `HEAD`, moving the
    /// branch `HEAD` is on (or the detached `HEAD`). Nothing is committed when the staged tree
    /// equals `HEAD`'s, unless [`CommitOptions::allow_empty`].
    pub fn commit_changes(&self, options: &CommitOptions) -> Result<Committed, GitError> {
        let repo = open_repo(&options.repo)?;
        if let Some(root) = &options.confine {
            confined(&repo, &options.repo, root)?;
        }
        if repo.is_bare() {
            return Err(GitError::Invalid {
                message: format!(
                    "`{}` is a bare repository: it has no working tree to commit from",
                    options.repo.display()
                ),
                hint: "point `path:` at a clone's working tree".into(),
            });
        }
        let message = git2::message_prettify(&options.message, None)
            .map_err(|e| GitError::other("clean up the commit message", e))?;
        if message.trim().is_empty() {
            return Err(GitError::Invalid {
                message: "the commit message is empty".into(),
                hint: "give the commit a `message:`".into(),
            });
        }
        let author = options.author.signature("author")?;
        let committer = match &options.committer {
            Some(c) => c.signature("committer")?,
            None => author.clone(),
        };
        let specs = options
            .paths
            .iter()
            .map(|p| pathspec(p))
            .collect::<Result<Vec<_>, _>>()?;
        // `.` (or nothing) means everything; libgit2 takes an empty list for that.
        let specs: Vec<String> = if specs.iter().any(|s| s == ".") {
            Vec::new()
        } else {
            specs
        };
        let err = |what: &'static str| move |e: git2::Error| GitError::other(what, e);
        let mut index = repo.index().map_err(err("read the index"))?;
        if !specs.is_empty() {
            unmatched(&repo, &index, &specs, &options.repo)?;
        }
        index
            .add_all(
                &specs,
                IndexAddOption::DEFAULT | IndexAddOption::CHECK_PATHSPEC,
                None,
            )
            .map_err(|e| {
                if e.code() == git2::ErrorCode::InvalidSpec {
                    GitError::Invalid {
                        message: format!("cannot stage in `{}`: {}", options.repo.display(), e.message()),
                        hint: "the path is ignored by a .gitignore; remove it from the paths, or from .gitignore".into(),
                    }
                } else {
                    GitError::other("stage the changes", e)
                }
            })?;
        index
            .update_all(&specs, None)
            .map_err(err("stage removals"))?;
        index.write().map_err(err("write the index"))?;
        let tree_id = index.write_tree().map_err(err("write the tree"))?;
        let tree = repo.find_tree(tree_id).map_err(err("read the tree"))?;

        let parent = match repo.head() {
            Ok(head) => Some(head.peel_to_commit().map_err(err("read HEAD"))?),
            Err(e) if e.code() == git2::ErrorCode::UnbornBranch => None,
            Err(e) => return Err(GitError::other("read HEAD", e)),
        };
        let head_ref = head_reference(&repo);
        let parent_tree = match &parent {
            Some(p) => Some(p.tree().map_err(err("read HEAD's tree"))?),
            None => None,
        };
        let unchanged = match &parent_tree {
            Some(t) => t.id() == tree_id,
            None => tree.is_empty(),
        };
        if unchanged && !options.allow_empty {
            let Some(parent) = parent else {
                return Err(GitError::Invalid {
                    message: format!(
                        "nothing to commit in `{}`, and its branch has no commits yet",
                        options.repo.display()
                    ),
                    hint: "check the paths to commit".into(),
                });
            };
            return Ok(Committed {
                commit: commit_info(&parent, head_ref.unwrap_or_else(|| parent.id().to_string())),
                created: false,
                changes: Vec::new(),
            });
        }
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = repo
            .commit(Some("HEAD"), &author, &committer, &message, &tree, &parents)
            .map_err(err("commit"))?;
        let commit = repo.find_commit(oid).map_err(err("read the new commit"))?;
        let changes = diff_trees(&repo, parent_tree.as_ref(), &tree)?;
        Ok(Committed {
            commit: commit_info(&commit, head_ref.unwrap_or_else(|| oid.to_string())),
            created: true,
            changes,
        })
    }

    /// Pushes one commit to one remote ref, refusing (unless [`PushOptions::force`]) to drop
    /// commits the remote has. A non-fast-forward ([`GitError::PushRejected`]) and a server that
    /// refuses the update itself — a hook, branch protection ([`GitError::PushRefused`]) — are
    /// different errors.
    pub fn push(
        &self,
        options: &PushOptions<'_>,
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<Pushed, GitError> {
        let repo = open_repo(&options.repo)?;
        if let Some(root) = &options.confine {
            confined(&repo, &options.repo, root)?;
        }
        let (name, url) = remote_of(&repo, &options.repo, &options.remote)?;
        if url.is_local() && !self.config.allow_local {
            return Err(GitError::LocalNotAllowed {
                url: url.to_string(),
            });
        }
        (options.authorize)(&url)?;

        let source = options.source.as_deref().unwrap_or("HEAD");
        let oid = repo
            .revparse_single(source)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
            .map_err(|_| GitError::UnknownRevision {
                repo: options.repo.display().to_string(),
                reference: source.to_string(),
                hint: "push a commit of the repository: `HEAD`, a branch or a SHA".into(),
            })?;
        let reference = destination(&repo, options.destination.as_deref())?;
        let remote = Remote {
            url,
            credentials: options.credentials.clone(),
            host_key: options.host_key.clone(),
        };
        let shown = remote.url.to_string();

        let attempts = RefCell::new(Attempts::default());
        let throttle = Throttle::new();
        let previous: Cell<Option<Option<Oid>>> = Cell::new(None);
        let statuses: RefCell<Vec<(String, Option<String>)>> = RefCell::new(Vec::new());
        let messages = RemoteMessages::new(progress);
        let mut cb = callbacks(&remote, &attempts, progress, &throttle, cancel);
        cb.push_negotiation(|updates| {
            for u in updates {
                if u.dst_refname().ok() == Some(reference.as_str()) {
                    let old = u.src();
                    previous.set(Some((!old.is_zero()).then_some(old)));
                }
            }
            Ok(())
        });
        cb.push_update_reference(|name, status| {
            statuses
                .borrow_mut()
                .push((name.to_string(), status.map(str::to_string)));
            Ok(())
        });
        cb.push_transfer_progress(|current, total, bytes| {
            if throttle.due(current == total) && total > 0 {
                progress(&format!(
                    "pushing objects: {current}/{total} ({:.1} KiB)",
                    bytes as f64 / 1024.0
                ));
            }
        });
        cb.sideband_progress(|data| {
            messages.feed(data);
            !cancel.is_cancelled()
        });
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(cb);
        let spec = format!("{}{oid}:{reference}", if options.force { "+" } else { "" });
        let mut r = repo
            .remote_anonymous(remote.url.as_str())
            .map_err(|e| GitError::other(format!("remote `{shown}`"), e))?;
        let pushed = r.push(&[spec.as_str()], Some(&mut po));
        drop(po);
        messages.flush();
        if let Err(e) = pushed {
            if e.code() == git2::ErrorCode::NotFastForward && !cancel.is_cancelled() {
                return Err(rejected(&shown, &reference, oid));
            }
            return Err(explain_push(
                e,
                &remote,
                &attempts.borrow(),
                cancel,
                &messages.text(),
            ));
        }
        for (name, status) in statuses.borrow().iter() {
            let Some(reason) = status else { continue };
            let lower = reason.to_ascii_lowercase();
            let non_ff = lower.contains("non-fast-forward")
                || lower.contains("fetch first")
                || lower.contains("stale info");
            if non_ff && !options.force {
                return Err(rejected(&shown, name, oid));
            }
            return Err(GitError::PushRefused {
                url: shown.clone(),
                reference: name.clone(),
                reason: reason.clone(),
                remote_says: said(&messages.text()),
                hint: if non_ff {
                    "the server does not allow force pushes to this ref; push to another branch, or ask its owner"
                } else {
                    "the server's hooks or branch protection decide what may be pushed; ask its owner, or push to another branch"
                }
                .into(),
            });
        }
        // A ref the remote already has at this commit may be left out of the negotiation.
        let previous = previous.get().unwrap_or(Some(oid));
        let updated = previous != Some(oid);
        progress(&if updated {
            format!("pushed {} to {reference} of {shown}", short(oid))
        } else {
            format!("{reference} of {shown} is already at {}", short(oid))
        });
        if options.update_tracking
            && let (Some(name), Some(branch)) = (&name, reference.strip_prefix("refs/heads/"))
        {
            let tracking = format!("refs/remotes/{name}/{branch}");
            if let Err(e) = repo.reference(&tracking, oid, true, "kiln: push") {
                tracing::warn!("cannot update `{tracking}` after the push: {e}");
            }
        }
        Ok(Pushed {
            url: shown,
            reference,
            sha: oid.to_string(),
            previous: previous.map(|o| o.to_string()),
            updated,
        })
    }
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

fn open_repo(path: &Path) -> Result<Repository, GitError> {
    Repository::open(path).map_err(|e| GitError::Invalid {
        message: format!(
            "`{}` is not a git repository ({})",
            path.display(),
            e.message()
        ),
        hint: "point `path:` at a clone (the `path` of a `clone` step)".into(),
    })
}

/// Refuses a repository whose data lies outside `root`.
fn confined(repo: &Repository, path: &Path, root: &Path) -> Result<(), GitError> {
    let real_root =
        fs::canonicalize(root).map_err(|e| GitError::other(format!("`{}`", root.display()), e))?;
    let outside = |what: &str, dir: &Path| {
        GitError::Denied(format!(
            "the repository at `{}` keeps its {what} outside the workspace (`{}`)\n  hint: commit and push only repositories cloned into the workspace",
            path.display(),
            dir.display()
        ))
    };
    let inside = |dir: &Path| {
        fs::canonicalize(dir)
            .map(|d| d.starts_with(&real_root))
            .unwrap_or(false)
    };
    for (what, dir) in [
        ("git directory", repo.path()),
        ("objects", repo.commondir()),
    ] {
        if !inside(dir) {
            return Err(outside(what, dir));
        }
    }
    let alternates = repo.commondir().join("objects/info/alternates");
    if let Ok(text) = fs::read_to_string(&alternates) {
        let objects = repo.commondir().join("objects");
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let dir = objects.join(line);
            if !inside(&dir) {
                return Err(outside("object alternates", &dir));
            }
        }
    }
    Ok(())
}

/// A pathspec relative to the repository root: no absolute paths, no `..`, nothing in `.git`.
fn pathspec(raw: &str) -> Result<String, GitError> {
    let invalid = |reason: &str| GitError::Invalid {
        message: format!("path `{raw}` {reason}"),
        hint: "name files, directories or globs relative to the repository root".into(),
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(invalid("is empty"));
    }
    if trimmed.starts_with('/') {
        return Err(invalid("is absolute"));
    }
    let mut parts = Vec::new();
    for c in Path::new(trimmed).components() {
        match c {
            Component::Normal(p) => {
                let p = p.to_string_lossy();
                if p.eq_ignore_ascii_case(".git") {
                    return Err(invalid("is inside `.git`"));
                }
                parts.push(p.into_owned());
            }
            Component::CurDir => {}
            _ => return Err(invalid("leaves the repository")),
        }
    }
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

/// Refuses pathspecs that match no file of the working tree and no tracked file (a deletion).
fn unmatched(
    repo: &Repository,
    index: &git2::Index,
    specs: &[String],
    path: &Path,
) -> Result<(), GitError> {
    let err = |e: git2::Error| GitError::other("match the paths", e);
    let all = Pathspec::new(specs.iter()).map_err(err)?;
    let in_workdir = all
        .match_workdir(repo, PathspecFlags::FIND_FAILURES)
        .map_err(err)?;
    let failed: Vec<String> = in_workdir
        .failed_entries()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    for spec in failed {
        let one = Pathspec::new([spec.as_str()]).map_err(err)?;
        let tracked = one
            .match_index(index, PathspecFlags::DEFAULT)
            .map_err(err)?;
        if tracked.entries().next().is_none() {
            let file = path.join(&spec);
            if file.exists() && repo.is_path_ignored(Path::new(&spec)).unwrap_or(false) {
                return Err(GitError::Invalid {
                    message: format!(
                        "path `{spec}` is ignored by a .gitignore of `{}`",
                        path.display()
                    ),
                    hint: "remove it from the paths to commit, or from .gitignore".into(),
                });
            }
            return Err(GitError::Invalid {
                message: format!(
                    "path `{spec}` matches no file in `{}`",
                    path.display()
                ),
                hint: "paths are relative to the repository root; check the name, or that an earlier step wrote the file".into(),
            });
        }
    }
    Ok(())
}

/// `refs/heads/<branch>` when `HEAD` is on a branch.
fn head_reference(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok()??;
    target
        .starts_with("refs/heads/")
        .then(|| target.to_string())
}

/// The remote's name (when given by name) and URL.
fn remote_of(
    repo: &Repository,
    path: &Path,
    remote: &str,
) -> Result<(Option<String>, RemoteUrl), GitError> {
    let is_name = !remote.is_empty()
        && remote
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !remote.starts_with('.');
    if !is_name {
        return Ok((None, RemoteUrl::parse(remote)?));
    }
    let found = repo.find_remote(remote).map_err(|_| {
        let names: Vec<String> = repo
            .remotes()
            .map(|r| {
                r.iter()
                    .filter_map(|n| n.ok().flatten())
                    .map(|n| format!("`{n}`"))
                    .collect()
            })
            .unwrap_or_default();
        GitError::Invalid {
            message: format!(
                "`{}` has no remote `{remote}`{}",
                path.display(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!("; it has {}", names.join(", "))
                }
            ),
            hint: "name one of its remotes, or give the URL to push to".into(),
        }
    })?;
    let url = found
        .pushurl()
        .ok()
        .flatten()
        .or_else(|| found.url().ok())
        .ok_or_else(|| GitError::Invalid {
            message: format!("remote `{remote}` of `{}` has no URL", path.display()),
            hint: "give the URL to push to".into(),
        })?;
    Ok((Some(remote.to_string()), RemoteUrl::parse(url)?))
}

/// The full remote ref to update.
fn destination(repo: &Repository, given: Option<&str>) -> Result<String, GitError> {
    let full = match given.map(str::trim) {
        Some(d) if d.starts_with("refs/") => d.to_string(),
        Some(d) if !d.is_empty() => format!("refs/heads/{d}"),
        _ => head_reference(repo).ok_or_else(|| GitError::Invalid {
            message: "HEAD is detached (the clone checked out a tag or a commit), so there is no branch to push to".into(),
            hint: "name the remote branch, e.g. `branch: main`".into(),
        })?,
    };
    if !git2::Reference::is_valid_name(&full) {
        return Err(GitError::Invalid {
            message: format!("`{full}` is not a valid ref name"),
            hint: "name a branch (`main`) or a full ref (`refs/heads/main`)".into(),
        });
    }
    Ok(full)
}

fn rejected(url: &str, reference: &str, oid: Oid) -> GitError {
    GitError::PushRejected {
        url: url.to_string(),
        reference: reference.to_string(),
        sha: short(oid),
        hint: "someone pushed since this repository was cloned: clone again and re-run, or set `force: true` to overwrite the remote branch".into(),
    }
}

fn said(messages: &str) -> String {
    let text = messages.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("\n  the server said: {}", text.replace('\n', "\n    "))
    }
}

/// libgit2's error for a push, reworded where the fetch wording would mislead.
fn explain_push(
    e: git2::Error,
    remote: &Remote,
    attempts: &Attempts,
    cancel: &Cancel,
    messages: &str,
) -> GitError {
    let url = remote.url.to_string();
    if cancel.is_cancelled() {
        return GitError::Cancelled(format!("push to `{url}` cancelled"));
    }
    match explain(e, remote, attempts, cancel) {
        GitError::Auth {
            url, credentials, ..
        } => GitError::Auth {
            url,
            credentials,
            hint: match remote.credentials {
                Credentials::SshKey { .. } => "check that the key is a deploy key of this repository with write access".into(),
                Credentials::None => "the server wants credentials that may push: pass them from a secret with `auth:`".into(),
                Credentials::UserPass { .. } => "check the secret's value and that these credentials may push to this repository".into(),
            },
        },
        GitError::Other { message, .. } => GitError::Other {
            context: format!("push to `{url}`"),
            message: format!("{message}{}", said(messages)),
        },
        other => other,
    }
}

/// The server's progress side band (`remote: …` lines): logged as they come, the last few
/// kept to explain a refusal.
struct RemoteMessages<'a> {
    progress: Progress<'a>,
    partial: RefCell<Vec<u8>>,
    kept: RefCell<String>,
}

impl<'a> RemoteMessages<'a> {
    fn new(progress: Progress<'a>) -> Self {
        RemoteMessages {
            progress,
            partial: RefCell::new(Vec::new()),
            kept: RefCell::new(String::new()),
        }
    }

    fn feed(&self, data: &[u8]) {
        let mut partial = self.partial.borrow_mut();
        for &b in data {
            if b == b'\n' || b == b'\r' {
                let line = String::from_utf8_lossy(&partial).trim().to_string();
                partial.clear();
                self.line(line);
            } else if partial.len() < MAX_REMOTE_MESSAGES {
                partial.push(b);
            }
        }
    }

    fn line(&self, line: String) {
        if line.is_empty() {
            return;
        }
        (self.progress)(&format!("remote: {line}"));
        // Counting/compressing progress is not worth keeping.
        if line.contains("objects:") || line.contains("deltas:") {
            return;
        }
        let mut kept = self.kept.borrow_mut();
        if kept.len() + line.len() < MAX_REMOTE_MESSAGES {
            if !kept.is_empty() {
                kept.push('\n');
            }
            kept.push_str(&line);
        }
    }

    fn flush(&self) {
        let rest = std::mem::take(&mut *self.partial.borrow_mut());
        self.line(String::from_utf8_lossy(&rest).trim().to_string());
    }

    fn text(&self) -> String {
        self.kept.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_like_git_commit_author() {
        let id = Identity::parse("Ada Lovelace <ada@example.com>").unwrap();
        assert_eq!(id.name, "Ada Lovelace");
        assert_eq!(id.email, "ada@example.com");
        for bad in [
            "Ada",
            "<ada@example.com>",
            "Ada <>",
            "Ada <a b@c>",
            "A <x> y",
        ] {
            let e = Identity::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{bad}`")) || e.contains("not usable"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn pathspecs_stay_inside_the_repository() {
        assert_eq!(pathspec("./docs/URL.md").unwrap(), "docs/URL.md");
        assert_eq!(pathspec("docs/*.md").unwrap(), "docs/*.md");
        assert_eq!(pathspec(".").unwrap(), ".");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".git/config",
            "sub/.GIT/hooks",
            " ",
        ] {
            assert!(pathspec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_messages_are_split_into_lines_and_progress_is_not_kept() {
        let lines = std::sync::Mutex::new(Vec::new());
        let sink = |l: &str| lines.lock().unwrap().push(l.to_string());
        let m = RemoteMessages::new(&sink);
        m.feed(b"Counting objects: 1\rCounting objects: 2\nerror: protected bra");
        m.feed(b"nch `main`\n");
        m.feed(b"bye");
        m.flush();
        assert_eq!(m.text(), "error: protected branch `main`\nbye");
        assert_eq!(lines.lock().unwrap().len(), 4);
    }
}
