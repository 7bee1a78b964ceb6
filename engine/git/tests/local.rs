//! The git layer against real repositories on disk (`file://`), built with the git CLI.
//! Network remotes (smart HTTP with basic auth, SSH with deploy keys) are tested end to end in
//! `tests/remote.rs` against the servers `scripts/services.sh` starts.

// Helpers outside `#[test]` functions set up fixtures; a failed setup should panic.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use kiln_git::{
    Access, Cancel, ChangeKind, CloneOptions, CommitOptions, Committed, Credentials, Git,
    GitConfig, GitError, HostKeyCheck, Identity, PushOptions, Pushed, Remote, RemoteUrl,
};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05+01:00")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05+01:00")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn access(cancel: &Cancel) -> Access<'_> {
    Access {
        remote: None,
        authorize: &|_| Ok(()),
        progress: &|_| {},
        cancel,
    }
}

/// A repository with a `main` branch of two commits, a tag `v1` on the first, and a `dev`
/// branch one commit ahead.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    git: Git,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let repo = root.join("origin");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "hello\n").unwrap();
        std::fs::create_dir_all(repo.join("src")).unwrap();
        std::fs::write(repo.join("src/lib.rs"), "pub fn a() {}\n".repeat(40)).unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "first"]);
        git(&repo, &["tag", "v1"]);
        std::fs::write(repo.join("README.md"), "hello again\n").unwrap();
        git(&repo, &["commit", "-q", "-am", "second"]);
        git(&repo, &["checkout", "-q", "-b", "dev"]);
        std::fs::write(repo.join("dev.txt"), "dev\n").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "on dev"]);
        git(&repo, &["checkout", "-q", "main"]);
        let git = Git::new(GitConfig {
            mirror_dir: root.join("mirrors"),
            mirror_max_bytes: 1 << 30,
            allow_local: true,
        });
        Fixture {
            _tmp: tmp,
            root,
            repo,
            git,
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.repo.display())
    }

    fn clone(&self, reference: Option<&str>, dest: &str) -> Result<kiln_git::Commit, GitError> {
        let options = CloneOptions {
            remote: Remote::new(RemoteUrl::parse(&self.url()).unwrap()),
            reference: reference.map(str::to_string),
            dest: self.root.join(dest),
            depth: None,
            submodules: true,
            authorize: &|_| Ok(()),
        };
        self.git.clone_repo(&options, &|_| {}, &Cancel::default())
    }
}

#[test]
fn a_clone_checks_out_the_default_branch_like_git_clone() {
    let f = Fixture::new();
    let c = f.clone(None, "ws").unwrap();
    let ws = f.root.join("ws");
    assert_eq!(c.reference, "refs/heads/main");
    assert_eq!(c.message.trim(), "second");
    assert_eq!(c.author_name, "Ada");
    assert_eq!(c.timestamp, "2026-01-02T03:04:05+01:00");
    assert_eq!(c.sha, git(&f.repo, &["rev-parse", "main"]));
    assert_eq!(
        std::fs::read_to_string(ws.join("README.md")).unwrap(),
        "hello again\n"
    );
    // The git CLI sees an ordinary clone: branch, upstream, remote-tracking refs, clean tree.
    assert_eq!(git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(
        git(&ws, &["rev-parse", "--abbrev-ref", "main@{u}"]),
        "origin/main"
    );
    assert_eq!(
        git(&ws, &["rev-parse", "origin/dev"]),
        git(&f.repo, &["rev-parse", "dev"])
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(git(&ws, &["fsck", "--no-progress"]), "");
}

#[test]
fn a_tag_and_a_sha_check_out_a_detached_head() {
    let f = Fixture::new();
    let c = f.clone(Some("v1"), "tag").unwrap();
    assert_eq!(c.reference, "refs/tags/v1");
    assert_eq!(c.message.trim(), "first");
    let sha = git(&f.repo, &["rev-parse", "dev"]);
    let c = f.clone(Some(&sha), "sha").unwrap();
    assert_eq!(c.reference, sha);
    assert!(f.root.join("sha/dev.txt").is_file());
    assert_eq!(git(&f.root.join("sha"), &["rev-parse", "HEAD"]), sha);
}

#[test]
fn a_missing_ref_is_an_error_naming_the_url_and_the_known_branches() {
    let f = Fixture::new();
    let e = f.clone(Some("nope"), "ws").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GitError::RefNotFound { .. }), "{msg}");
    assert!(
        msg.contains("`nope`") && msg.contains("main") && msg.contains(&f.url()),
        "{msg}"
    );
}

#[test]
fn gitattributes_in_the_tree_still_apply_at_checkout() {
    // Checkout skips libgit2's filters when nothing could configure them; a `.gitattributes`
    // in the tree (here in a subdirectory) must still convert line endings and expand `ident`.
    let f = Fixture::new();
    std::fs::create_dir_all(f.repo.join("win")).unwrap();
    std::fs::write(
        f.repo.join("win/.gitattributes"),
        "*.txt text eol=crlf\n*.id ident\n",
    )
    .unwrap();
    std::fs::write(f.repo.join("win/a.txt"), "one\ntwo\n").unwrap();
    std::fs::write(f.repo.join("win/b.id"), "$Id$\n").unwrap();
    std::fs::write(f.repo.join("plain.txt"), "one\ntwo\n").unwrap();
    git(&f.repo, &["add", "."]);
    git(&f.repo, &["commit", "-q", "-m", "attributes"]);
    f.clone(None, "ws").unwrap();
    let ws = f.root.join("ws");
    assert_eq!(
        std::fs::read_to_string(ws.join("win/a.txt")).unwrap(),
        "one\r\ntwo\r\n"
    );
    assert!(
        std::fs::read_to_string(ws.join("win/b.id"))
            .unwrap()
            .starts_with("$Id: "),
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("plain.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
}

#[test]
fn a_second_clone_reuses_the_mirror_and_sees_new_commits() {
    let f = Fixture::new();
    f.clone(None, "one").unwrap();
    std::fs::write(f.repo.join("new.txt"), "new\n").unwrap();
    git(&f.repo, &["add", "."]);
    git(&f.repo, &["commit", "-q", "-m", "third"]);
    let c = f.clone(None, "two").unwrap();
    assert_eq!(c.message.trim(), "third");
    assert!(f.root.join("two/new.txt").is_file());
    let mirrors = f.git.mirrors().unwrap();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
    assert_eq!(mirrors[0].url, f.url());
}

#[test]
fn a_workspace_clone_survives_the_mirror_being_cleared() {
    let f = Fixture::new();
    f.clone(None, "ws").unwrap();
    assert!(f.git.clear_mirrors().unwrap() > 0);
    assert!(f.git.mirrors().unwrap().is_empty());
    let ws = f.root.join("ws");
    assert_eq!(git(&ws, &["fsck", "--no-progress"]), "");
    assert_eq!(git(&ws, &["log", "--format=%s", "-1", "v1"]), "first");
}

#[test]
fn cloning_again_into_the_same_directory_updates_it() {
    let f = Fixture::new();
    f.clone(Some("v1"), "ws").unwrap();
    let c = f.clone(Some("dev"), "ws").unwrap();
    assert_eq!(c.message.trim(), "on dev");
    assert!(f.root.join("ws/dev.txt").is_file());
}

#[test]
fn cloning_the_checked_out_branch_again_after_new_commits_moves_it_forward() {
    let f = Fixture::new();
    f.clone(Some("main"), "ws").unwrap();
    std::fs::write(f.repo.join("new.txt"), "new\n").unwrap();
    git(&f.repo, &["add", "."]);
    git(&f.repo, &["commit", "-q", "-m", "third"]);
    let c = f.clone(Some("main"), "ws").unwrap();
    assert_eq!(c.message.trim(), "third");
    let ws = f.root.join("ws");
    assert_eq!(git(&ws, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(
        git(&ws, &["rev-parse", "HEAD"]),
        git(&f.repo, &["rev-parse", "main"])
    );
    assert!(ws.join("new.txt").is_file());
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
}

#[test]
fn a_directory_holding_other_files_is_refused() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.root.join("busy")).unwrap();
    std::fs::write(f.root.join("busy/x"), "").unwrap();
    let e = f.clone(None, "busy").unwrap_err();
    assert!(matches!(e, GitError::DestinationInUse { .. }), "{e}");
}

#[test]
fn local_remotes_are_refused_unless_allowed() {
    let f = Fixture::new();
    let git = Git::new(GitConfig {
        mirror_dir: f.root.join("m2"),
        mirror_max_bytes: 1 << 30,
        allow_local: false,
    });
    let options = CloneOptions {
        remote: Remote::new(RemoteUrl::parse(&f.url()).unwrap()),
        reference: None,
        dest: f.root.join("ws"),
        depth: None,
        submodules: false,
        authorize: &|_| Ok(()),
    };
    let e = git
        .clone_repo(&options, &|_| {}, &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, GitError::LocalNotAllowed { .. }), "{e}");
}

#[test]
fn a_missing_repository_is_reported_as_such() {
    let f = Fixture::new();
    let options = CloneOptions {
        remote: Remote::new(RemoteUrl::parse("file:///nonexistent/repo.git").unwrap()),
        reference: None,
        dest: f.root.join("ws"),
        depth: None,
        submodules: false,
        authorize: &|_| Ok(()),
    };
    let e = f
        .git
        .clone_repo(&options, &|_| {}, &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, GitError::RepoNotFound { .. }), "{e}");
}

#[test]
fn submodules_are_cloned_at_the_recorded_commit() {
    let f = Fixture::new();
    let lib = f.root.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    std::fs::write(lib.join("lib.txt"), "v1\n").unwrap();
    git(&lib, &["add", "."]);
    git(&lib, &["commit", "-q", "-m", "lib v1"]);
    let lib_v1 = git(&lib, &["rev-parse", "HEAD"]);
    git(
        &f.repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            &format!("file://{}", lib.display()),
            "vendor/lib",
        ],
    );
    git(&f.repo, &["commit", "-q", "-m", "add lib"]);
    // A later lib commit is not what the parent records.
    std::fs::write(lib.join("lib.txt"), "v2\n").unwrap();
    git(&lib, &["commit", "-q", "-am", "lib v2"]);

    f.clone(None, "ws").unwrap();
    let sub = f.root.join("ws/vendor/lib");
    assert_eq!(
        std::fs::read_to_string(sub.join("lib.txt")).unwrap(),
        "v1\n"
    );
    assert_eq!(git(&sub, &["rev-parse", "HEAD"]), lib_v1);
}

#[test]
fn changed_files_use_merge_base_semantics_with_renames_and_deletions() {
    let f = Fixture::new();
    let base = git(&f.repo, &["rev-parse", "main"]);
    git(&f.repo, &["checkout", "-q", "-b", "feature"]);
    git(&f.repo, &["mv", "src/lib.rs", "src/core.rs"]);
    git(&f.repo, &["rm", "-q", "README.md"]);
    std::fs::write(f.repo.join("added.txt"), "x\n").unwrap();
    git(&f.repo, &["add", "."]);
    git(&f.repo, &["commit", "-q", "-m", "feature"]);
    // main moves on after the branch point: `base...head` must not show main's change.
    git(&f.repo, &["checkout", "-q", "main"]);
    std::fs::write(f.repo.join("main-only.txt"), "m\n").unwrap();
    git(&f.repo, &["add", "."]);
    git(&f.repo, &["commit", "-q", "-m", "main moves"]);
    let main = git(&f.repo, &["rev-parse", "main"]);

    f.clone(Some("feature"), "ws").unwrap();
    let ws = f.root.join("ws");
    let changes = f
        .git
        .changed_files(&ws, &main, "HEAD", &access(&Cancel::default()))
        .unwrap();
    let mut seen: Vec<(ChangeKind, String, Option<String>)> = changes
        .into_iter()
        .map(|c| (c.kind, c.path, c.old_path))
        .collect();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        seen,
        vec![
            (ChangeKind::Deleted, "README.md".into(), None),
            (ChangeKind::Added, "added.txt".into(), None),
            (
                ChangeKind::Renamed,
                "src/core.rs".into(),
                Some("src/lib.rs".into())
            ),
        ]
    );
    // The same as git itself says.
    let cli = git(
        &ws,
        &["diff", "--name-status", "-M", &format!("{base}...HEAD")],
    );
    assert_eq!(cli.lines().count(), 3, "{cli}");
}

#[test]
fn an_unknown_base_is_an_error_not_an_empty_list() {
    let f = Fixture::new();
    f.clone(None, "ws").unwrap();
    let e = f
        .git
        .changed_files(
            &f.root.join("ws"),
            "0123456789012345678901234567890123456789",
            "HEAD",
            &access(&Cancel::default()),
        )
        .unwrap_err();
    assert!(matches!(e, GitError::UnknownRevision { .. }), "{e}");
}

#[test]
fn files_can_be_read_and_listed_at_any_commit() {
    let f = Fixture::new();
    f.clone(None, "ws").unwrap();
    let ws = f.root.join("ws");
    assert_eq!(
        f.git.read_file(&ws, "v1", "README.md").unwrap().unwrap(),
        b"hello\n"
    );
    assert_eq!(f.git.read_file(&ws, "v1", "dev.txt").unwrap(), None);
    assert_eq!(
        f.git.list_files(&ws, "origin/dev").unwrap(),
        vec!["README.md", "dev.txt", "src/lib.rs"]
    );
}

#[test]
fn concurrent_clones_of_one_repository_all_succeed() {
    let f = Fixture::new();
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..6 {
            let f = &f;
            let errors = &errors;
            s.spawn(move || {
                if let Err(e) = f.clone(None, &format!("ws{i}")) {
                    errors.lock().unwrap().push(e.to_string());
                }
            });
        }
    });
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    for i in 0..6 {
        assert_eq!(
            git(&f.root.join(format!("ws{i}")), &["status", "--porcelain"]),
            ""
        );
    }
    assert_eq!(f.git.mirrors().unwrap().len(), 1);
}

#[test]
fn the_mirror_cache_is_trimmed_to_its_size_least_recently_used_first() {
    let f = Fixture::new();
    let other = f.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q", "-b", "main"]);
    std::fs::write(other.join("a"), "a\n").unwrap();
    git(&other, &["add", "."]);
    git(&other, &["commit", "-q", "-m", "a"]);
    f.clone(None, "one").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let options = CloneOptions {
        remote: Remote::new(RemoteUrl::parse(&format!("file://{}", other.display())).unwrap()),
        reference: None,
        dest: f.root.join("two"),
        depth: None,
        submodules: false,
        authorize: &|_| Ok(()),
    };
    f.git
        .clone_repo(&options, &|_| {}, &Cancel::default())
        .unwrap();
    let newest = f.git.mirrors().unwrap()[0].bytes;
    f.git.trim_mirrors(newest).unwrap();
    let left = f.git.mirrors().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].url, format!("file://{}", other.display()));
}

// ---------------------------------------------------------------------------------------------
// commit and push

/// A bare copy of the fixture's repository (pushes go to a bare repository, as to a server)
/// and a clone of it in `ws`.
fn bare_and_clone(f: &Fixture) -> (PathBuf, PathBuf) {
    let bare = f.root.join("served.git");
    git(
        &f.root,
        &[
            "clone",
            "-q",
            "--bare",
            f.repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let ws = f.root.join("ws");
    let options = CloneOptions {
        remote: Remote::new(RemoteUrl::parse(&format!("file://{}", bare.display())).unwrap()),
        reference: None,
        dest: ws.clone(),
        depth: None,
        submodules: false,
        authorize: &|_| Ok(()),
    };
    f.git
        .clone_repo(&options, &|_| {}, &Cancel::default())
        .unwrap();
    (bare, ws)
}

fn commit_options(repo: &Path, paths: &[&str], message: &str) -> CommitOptions {
    CommitOptions {
        repo: repo.to_path_buf(),
        confine: Some(repo.parent().unwrap().to_path_buf()),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        message: message.to_string(),
        author: Identity::parse("Kiln Bot <bot@example.com>").unwrap(),
        committer: None,
        allow_empty: false,
    }
}

fn commit(f: &Fixture, repo: &Path, paths: &[&str], message: &str) -> Committed {
    f.git
        .commit_changes(&commit_options(repo, paths, message))
        .unwrap_or_else(|e| panic!("commit failed: {e}"))
}

fn push_options<'a>(repo: &Path, remote: &str) -> PushOptions<'a> {
    PushOptions {
        repo: repo.to_path_buf(),
        confine: Some(repo.parent().unwrap().to_path_buf()),
        remote: remote.to_string(),
        credentials: Credentials::None,
        host_key: HostKeyCheck::System,
        source: None,
        destination: None,
        force: false,
        update_tracking: true,
        authorize: &|_| Ok(()),
    }
}

fn push(f: &Fixture, options: &PushOptions<'_>) -> Result<Pushed, GitError> {
    f.git.push(options, &|_| {}, &Cancel::default())
}

fn changes(c: &Committed) -> Vec<String> {
    c.changes
        .iter()
        .map(|c| format!("{} {}", c.kind.as_str(), c.path))
        .collect()
}

#[test]
fn a_commit_stages_only_the_named_paths_and_git_sees_an_ordinary_commit() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    let before = git(&ws, &["rev-parse", "HEAD"]);
    std::fs::write(ws.join("URL.md"), "https://nb.example.com/a\n").unwrap();
    std::fs::write(ws.join("README.md"), "changed\n").unwrap();
    std::fs::write(ws.join("scratch.txt"), "not committed\n").unwrap();
    let c = commit(&f, &ws, &["URL.md", "README.md"], "Update URL.md\n\n\n");
    assert!(c.created);
    assert_eq!(changes(&c), ["modified README.md", "added URL.md"]);
    assert_eq!(c.commit.reference, "refs/heads/main");
    assert_eq!(c.commit.message, "Update URL.md\n");
    assert_eq!(c.commit.sha, git(&ws, &["rev-parse", "HEAD"]));
    assert_eq!(git(&ws, &["rev-parse", "HEAD~1"]), before);
    assert_eq!(
        git(&ws, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]),
        "Kiln Bot <bot@example.com>|Kiln Bot <bot@example.com>|Update URL.md"
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "?? scratch.txt");
    assert_eq!(git(&ws, &["fsck", "--no-progress"]), "");
}

#[test]
fn without_paths_every_change_is_committed_deletions_included_and_ignored_files_stay_out() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    std::fs::write(ws.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(ws.join("build.log"), "noise\n").unwrap();
    std::fs::create_dir_all(ws.join("docs")).unwrap();
    std::fs::write(ws.join("docs/new.md"), "new\n").unwrap();
    std::fs::remove_file(ws.join("src/lib.rs")).unwrap();
    let mut options = commit_options(&ws, &[], "everything");
    options.committer = Some(Identity {
        name: "CI".into(),
        email: "ci@example.com".into(),
    });
    let c = f.git.commit_changes(&options).unwrap();
    assert_eq!(
        changes(&c),
        [
            "added .gitignore",
            "added docs/new.md",
            "deleted src/lib.rs"
        ]
    );
    assert_eq!(
        git(&ws, &["log", "-1", "--format=%cn <%ce>"]),
        "CI <ci@example.com>"
    );
    assert_eq!(
        git(&ws, &["status", "--porcelain", "--ignored"]),
        "!! build.log"
    );
}

#[test]
fn globs_and_directories_select_files_and_a_deleted_tracked_file_can_be_named() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    std::fs::create_dir_all(ws.join("docs/deep")).unwrap();
    std::fs::write(ws.join("docs/a.md"), "a\n").unwrap();
    std::fs::write(ws.join("docs/b.txt"), "b\n").unwrap();
    std::fs::write(ws.join("docs/deep/c.md"), "c\n").unwrap();
    std::fs::remove_file(ws.join("README.md")).unwrap();
    let c = commit(&f, &ws, &["docs/*.md", "./README.md"], "docs");
    assert_eq!(
        changes(&c),
        [
            "deleted README.md",
            "added docs/a.md",
            "added docs/deep/c.md"
        ]
    );
    let c = commit(&f, &ws, &["docs"], "the rest");
    assert_eq!(changes(&c), ["added docs/b.txt"]);
}

#[test]
fn nothing_to_commit_makes_no_commit_unless_empty_commits_are_allowed() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    let head = git(&ws, &["rev-parse", "HEAD"]);
    let c = commit(&f, &ws, &["README.md"], "nothing");
    assert!(!c.created);
    assert_eq!(c.commit.sha, head);
    assert!(c.changes.is_empty());
    let mut options = commit_options(&ws, &[], "empty on purpose");
    options.allow_empty = true;
    let c = f.git.commit_changes(&options).unwrap();
    assert!(c.created);
    assert_eq!(git(&ws, &["rev-parse", "HEAD~1"]), head);
}

#[test]
fn bad_commit_input_is_refused_with_what_to_change() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    std::fs::write(ws.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(ws.join("build.log"), "noise\n").unwrap();
    let cases: [(&[&str], &str, &str); 6] = [
        (&["nope.txt"], "msg", "path `nope.txt` matches no file"),
        (
            &["../outside"],
            "msg",
            "path `../outside` leaves the repository",
        ),
        (&["/etc/passwd"], "msg", "path `/etc/passwd` is absolute"),
        (&[".git/config"], "msg", "is inside `.git`"),
        (&["build.log"], "msg", "ignored by a .gitignore"),
        (&["README.md"], "  \n\n", "the commit message is empty"),
    ];
    for (paths, message, expected) in cases {
        let e = f
            .git
            .commit_changes(&commit_options(&ws, paths, message))
            .unwrap_err();
        assert!(matches!(e, GitError::Invalid { .. }), "{paths:?}: {e:?}");
        assert!(e.to_string().contains(expected), "{paths:?}: {e}");
        assert!(e.to_string().contains("hint:"), "{e}");
    }
    let mut options = commit_options(&ws, &[], "x");
    options.author = Identity {
        name: "Eve\nInjected".into(),
        email: "eve@example.com".into(),
    };
    let e = f.git.commit_changes(&options).unwrap_err();
    assert!(e.to_string().contains("not usable in a commit"), "{e}");
    assert_eq!(
        git(&ws, &["rev-parse", "HEAD"]),
        git(&f.repo, &["rev-parse", "main"])
    );
}

#[test]
fn a_repository_whose_git_dir_lies_outside_the_workspace_is_refused() {
    let f = Fixture::new();
    let ws = f.root.join("workspace");
    std::fs::create_dir_all(ws.join("evil")).unwrap();
    // A `.git` file, as a worktree or submodule has, pointing at a repository elsewhere.
    std::fs::write(
        ws.join("evil/.git"),
        format!("gitdir: {}\n", f.repo.join(".git").display()),
    )
    .unwrap();
    let mut options = commit_options(&ws.join("evil"), &[], "x");
    options.confine = Some(ws.clone());
    let e = f.git.commit_changes(&options).unwrap_err();
    assert!(matches!(e, GitError::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("outside the workspace"), "{e}");
    let mut p = push_options(&ws.join("evil"), "origin");
    p.confine = Some(ws.clone());
    let e = push(&f, &p).unwrap_err();
    assert!(matches!(e, GitError::Denied(_)), "{e:?}");

    // Alternates pointing outside are refused as well.
    let (_, clone) = bare_and_clone(&f);
    std::fs::write(
        clone.join(".git/objects/info/alternates"),
        format!("{}\n", f.repo.join(".git/objects").display()),
    )
    .unwrap();
    let mut options = commit_options(&clone, &[], "x");
    options.confine = Some(clone.clone());
    let e = f.git.commit_changes(&options).unwrap_err();
    assert!(e.to_string().contains("object alternates"), "{e}");
}

#[test]
fn a_commit_is_pushed_to_origin_and_the_tracking_branch_follows() {
    let f = Fixture::new();
    let (bare, ws) = bare_and_clone(&f);
    let before = git(&bare, &["rev-parse", "main"]);
    std::fs::write(ws.join("URL.md"), "u\n").unwrap();
    let c = commit(&f, &ws, &["URL.md"], "Add URL.md");
    let p = push(&f, &push_options(&ws, "origin")).unwrap();
    assert_eq!(p.reference, "refs/heads/main");
    assert_eq!(p.sha, c.commit.sha);
    assert_eq!(p.previous.as_deref(), Some(before.as_str()));
    assert!(p.updated);
    assert_eq!(git(&bare, &["rev-parse", "main"]), c.commit.sha);
    assert_eq!(git(&ws, &["rev-parse", "origin/main"]), c.commit.sha);
    assert_eq!(git(&bare, &["fsck", "--no-progress"]), "");
    // Pushing again sends nothing.
    let again = push(&f, &push_options(&ws, "origin")).unwrap();
    assert!(!again.updated);
    assert_eq!(again.previous.as_deref(), Some(c.commit.sha.as_str()));
}

#[test]
fn a_push_to_a_new_branch_from_a_detached_head_needs_the_branch_named() {
    let f = Fixture::new();
    let (bare, ws) = bare_and_clone(&f);
    git(&ws, &["checkout", "-q", "--detach", "HEAD~1"]);
    let e = push(&f, &push_options(&ws, "origin")).unwrap_err();
    assert!(e.to_string().contains("HEAD is detached"), "{e}");
    let mut options = push_options(&ws, "origin");
    options.destination = Some("release".into());
    let p = push(&f, &options).unwrap();
    assert_eq!(p.reference, "refs/heads/release");
    assert_eq!(p.previous, None);
    assert_eq!(
        git(&bare, &["rev-parse", "release"]),
        git(&bare, &["rev-parse", "main~1"])
    );
    let mut options = push_options(&ws, "upstream");
    options.destination = Some("x".into());
    let e = push(&f, &options).unwrap_err();
    assert!(
        e.to_string()
            .contains("has no remote `upstream`; it has `origin`"),
        "{e}"
    );
    options.remote = "origin".into();
    options.destination = Some("bad..name".into());
    let e = push(&f, &options).unwrap_err();
    assert!(e.to_string().contains("not a valid ref name"), "{e}");
}

#[test]
fn a_non_fast_forward_push_is_rejected_and_force_overwrites() {
    let f = Fixture::new();
    let (bare, ws) = bare_and_clone(&f);
    // Someone else pushes first.
    let other = f.root.join("other");
    git(
        &f.root,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("theirs.txt"), "theirs\n").unwrap();
    git(&other, &["add", "."]);
    git(&other, &["commit", "-q", "-m", "theirs"]);
    git(&other, &["push", "-q", "origin", "main"]);
    let theirs = git(&other, &["rev-parse", "HEAD"]);

    std::fs::write(ws.join("URL.md"), "u\n").unwrap();
    let ours = commit(&f, &ws, &["URL.md"], "ours");
    let e = push(&f, &push_options(&ws, "origin")).unwrap_err();
    assert!(matches!(e, GitError::PushRejected { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("non-fast-forward"), "{msg}");
    assert!(msg.contains("`refs/heads/main`"), "{msg}");
    assert!(msg.contains("force: true"), "{msg}");
    assert_eq!(git(&bare, &["rev-parse", "main"]), theirs);

    let mut options = push_options(&ws, "origin");
    options.force = true;
    let p = push(&f, &options).unwrap();
    assert_eq!(p.previous.as_deref(), Some(theirs.as_str()));
    assert_eq!(git(&bare, &["rev-parse", "main"]), ours.commit.sha);
}

#[test]
fn local_remotes_are_not_pushed_to_unless_allowed_and_the_grant_check_is_asked() {
    let f = Fixture::new();
    let (_, ws) = bare_and_clone(&f);
    let strict = Git::new(GitConfig {
        mirror_dir: f.root.join("mirrors2"),
        mirror_max_bytes: 1 << 30,
        allow_local: false,
    });
    let e = strict
        .push(&push_options(&ws, "origin"), &|_| {}, &Cancel::default())
        .unwrap_err();
    assert!(matches!(e, GitError::LocalNotAllowed { .. }), "{e:?}");
    let mut options = push_options(&ws, "origin");
    let deny = |u: &RemoteUrl| Err(GitError::Denied(format!("no: {u}")));
    options.authorize = &deny;
    let e = push(&f, &options).unwrap_err();
    assert!(e.to_string().starts_with("no: file://"), "{e}");
}
