//! Reading a workspace repository's history: changed files between two commits (as
//! `git diff base...head`), a file at a commit, the files of a commit.

use std::path::Path;

use git2::{Delta, DiffFindOptions, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use crate::clone::{Want, commit_info, copy_shallow, is_full_sha};
use crate::mirror::link_objects;
use crate::{Cancel, Commit, Git, GitError, Progress, Remote, RemoteUrl};

/// How a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    /// Moved, possibly with edits (`old_path` says from where).
    Renamed,
    /// File became a symlink or the other way round.
    TypeChanged,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Renamed => "renamed",
            ChangeKind::TypeChanged => "type-changed",
        }
    }
}

/// What a history read may use when it must fetch missing commits from `origin`.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    /// Credentials for `origin` (used only when its URL matches).
    pub remote: Option<&'a Remote>,
    /// The caller's grant check, asked before `origin` is contacted.
    pub authorize: &'a (dyn Fn(&RemoteUrl) -> Result<(), GitError> + Sync),
    pub progress: Progress<'a>,
    pub cancel: &'a Cancel,
}

/// One changed file, paths relative to the repository root with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
}

fn open(repo: &Path) -> Result<Repository, GitError> {
    Repository::open(repo).map_err(|e| GitError::UnknownRevision {
        repo: repo.display().to_string(),
        reference: "HEAD".into(),
        hint: format!(
            "`{}` is not a git repository ({})",
            repo.display(),
            e.message()
        ),
    })
}

fn find_commit(repo: &Repository, path: &Path, rev: &str) -> Result<Oid, GitError> {
    repo.revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map(|c| c.id())
        .map_err(|_| GitError::UnknownRevision {
            repo: path.display().to_string(),
            reference: rev.to_string(),
            hint: "check the SHA or ref; for a shallow clone, pass the step credentials so the missing history can be fetched".into(),
        })
}

impl Git {
    /// Files changed between the merge base of `base` and `head`, and `head` (what
    /// `git diff base...head` lists), renames detected.
    ///
    /// When `base`, or the history down to the merge base, is missing from a shallow clone,
    /// it is fetched from the repository's `origin` through the mirror (with `remote`'s
    /// credentials; its URL must match `origin`'s), never silently ignored.
    pub fn changed_files(
        &self,
        repo_path: &Path,
        base: &str,
        head: &str,
        access: &Access<'_>,
    ) -> Result<Vec<Change>, GitError> {
        let Access {
            remote,
            authorize,
            progress,
            cancel,
        } = *access;
        let mut repo = open(repo_path)?;
        let head_oid = find_commit(&repo, repo_path, head)?;
        let mut fetched = false;
        let base_oid = match find_commit(&repo, repo_path, base) {
            Ok(oid) => oid,
            Err(e) if is_full_sha(base) => {
                self.complete_history(&repo, repo_path, base, remote, authorize, progress, cancel)
                    .map_err(|fetch_error| match fetch_error {
                        GitError::UnknownRevision { .. } => e,
                        other => other,
                    })?;
                fetched = true;
                repo = open(repo_path)?;
                find_commit(&repo, repo_path, base)?
            }
            Err(e) => return Err(e),
        };
        let merge_base = match repo.merge_base(base_oid, head_oid) {
            Ok(mb) => mb,
            Err(_) if repo.is_shallow() && !fetched => {
                self.complete_history(&repo, repo_path, base, remote, authorize, progress, cancel)?;
                repo = open(repo_path)?;
                repo.merge_base(base_oid, head_oid)
                    .map_err(|_| no_merge_base(repo_path, base, head))?
            }
            Err(_) => return Err(no_merge_base(repo_path, base, head)),
        };
        diff(&repo, merge_base, head_oid)
    }

    /// Fetches the full history of `origin` into the mirror and links it into the repository
    /// (dropping its shallow boundary).
    #[allow(clippy::too_many_arguments)]
    fn complete_history(
        &self,
        repo: &Repository,
        repo_path: &Path,
        wanted: &str,
        remote: Option<&Remote>,
        authorize: &(dyn Fn(&RemoteUrl) -> Result<(), GitError> + Sync),
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<(), GitError> {
        let origin = repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
            .ok_or_else(|| GitError::UnknownRevision {
                repo: repo_path.display().to_string(),
                reference: wanted.to_string(),
                hint: "the repository has no `origin` to fetch the missing history from".into(),
            })?;
        let origin = RemoteUrl::parse(&origin)?;
        let remote = match remote {
            Some(r) if r.url.canonical() == origin.canonical() => r.clone(),
            _ => Remote::new(origin),
        };
        if remote.url.is_local() && !self.config.allow_local {
            return Err(GitError::LocalNotAllowed {
                url: remote.url.to_string(),
            });
        }
        authorize(&remote.url)?;
        progress(&format!(
            "fetching history of {} to reach `{wanted}`",
            remote.url
        ));
        let mirror = self.lock_mirror(&remote.url)?;
        let mirror_repo =
            Repository::open_bare(&mirror.path).map_err(|e| GitError::other("open mirror", e))?;
        let unshallow = (mirror_repo.is_shallow() && !remote.url.is_local()).then_some(0);
        self.fetch(
            &mirror_repo,
            &remote,
            Want::All(None),
            unshallow,
            progress,
            cancel,
        )?;
        if is_full_sha(wanted)
            && let Ok(oid) = Oid::from_str(wanted)
            && mirror_repo.find_commit(oid).is_err()
        {
            let _ = self.fetch(
                &mirror_repo,
                &remote,
                Want::Commit(oid),
                None,
                progress,
                cancel,
            );
        }
        link_objects(&mirror.path.join("objects"), &repo.path().join("objects"))?;
        copy_shallow(&mirror.path, repo.path())?;
        Ok(())
    }

    /// The commit `rev` names in the repository.
    pub fn commit(&self, repo_path: &Path, rev: &str) -> Result<Commit, GitError> {
        let repo = open(repo_path)?;
        let oid = find_commit(&repo, repo_path, rev)?;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| GitError::other("read commit", e))?;
        let reference = repo
            .resolve_reference_from_short_name(rev)
            .ok()
            .and_then(|r| r.name().ok().map(str::to_string))
            .unwrap_or_else(|| oid.to_string());
        Ok(commit_info(&commit, reference))
    }

    /// The content of `path` at `rev`, or `None` when the commit has no such file.
    pub fn read_file(
        &self,
        repo_path: &Path,
        rev: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, GitError> {
        let repo = open(repo_path)?;
        let oid = find_commit(&repo, repo_path, rev)?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::other("read tree", e))?;
        let entry = match tree.get_path(Path::new(path.trim_start_matches('/'))) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(GitError::other(format!("look up `{path}`"), e)),
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        let blob = repo
            .find_blob(entry.id())
            .map_err(|e| GitError::other(format!("read `{path}`"), e))?;
        Ok(Some(blob.content().to_vec()))
    }

    /// Every file (blob) path of commit `rev`, sorted.
    pub fn list_files(&self, repo_path: &Path, rev: &str) -> Result<Vec<String>, GitError> {
        let repo = open(repo_path)?;
        let oid = find_commit(&repo, repo_path, rev)?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::other("read tree", e))?;
        let mut files = Vec::new();
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob)
                && let Ok(name) = entry.name()
            {
                files.push(format!("{dir}{name}"));
            }
            TreeWalkResult::Ok
        })
        .map_err(|e| GitError::other("walk tree", e))?;
        files.sort_unstable();
        Ok(files)
    }
}

fn no_merge_base(repo: &Path, base: &str, head: &str) -> GitError {
    GitError::UnknownRevision {
        repo: repo.display().to_string(),
        reference: format!("{base}...{head}"),
        hint: "the two commits have no common ancestor; compare commits of one history".into(),
    }
}

fn diff(repo: &Repository, base: Oid, head: Oid) -> Result<Vec<Change>, GitError> {
    let err = |e: git2::Error| GitError::other("diff", e);
    let old = repo.find_commit(base).and_then(|c| c.tree()).map_err(err)?;
    let new = repo.find_commit(head).and_then(|c| c.tree()).map_err(err)?;
    diff_trees(repo, Some(&old), &new)
}

/// What changed from `old` (none: the empty tree) to `new`, renames detected.
pub(crate) fn diff_trees(
    repo: &Repository,
    old: Option<&git2::Tree<'_>>,
    new: &git2::Tree<'_>,
) -> Result<Vec<Change>, GitError> {
    let err = |e: git2::Error| GitError::other("diff", e);
    let mut diff = repo.diff_tree_to_tree(old, Some(new), None).map_err(err)?;
    let mut find = DiffFindOptions::new();
    find.renames(true);
    diff.find_similar(Some(&mut find)).map_err(err)?;
    let path_of = |f: git2::DiffFile<'_>| {
        f.path()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for d in diff.deltas() {
        let (kind, path, old_path) = match d.status() {
            Delta::Added | Delta::Copied => (ChangeKind::Added, path_of(d.new_file()), None),
            Delta::Deleted => (ChangeKind::Deleted, path_of(d.old_file()), None),
            Delta::Modified => (ChangeKind::Modified, path_of(d.new_file()), None),
            Delta::Renamed => (
                ChangeKind::Renamed,
                path_of(d.new_file()),
                Some(path_of(d.old_file())),
            ),
            Delta::Typechange => (ChangeKind::TypeChanged, path_of(d.new_file()), None),
            _ => continue,
        };
        out.push(Change {
            kind,
            path,
            old_path,
        });
    }
    Ok(out)
}
