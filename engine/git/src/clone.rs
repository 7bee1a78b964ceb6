//! Clone: fetch into the remote's mirror, link its objects into the workspace repository, set
//! up refs like `git clone` does, check out, and recurse into submodules.

use std::cell::{Cell, RefCell};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use git2::{AutotagOption, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};

use crate::auth::{self, Attempts, HostKeyProblem};
use crate::mirror::link_objects;
use crate::{Cancel, Credentials, Git, GitError, Location, Progress, Remote, RemoteUrl};

/// What to clone, and where.
pub struct CloneOptions<'a> {
    pub remote: Remote,
    /// Branch, tag, full ref (`refs/pull/1/head`) or commit SHA; `None` for the remote's
    /// default branch.
    pub reference: Option<String>,
    /// Host directory of the working tree (created if missing; must be empty or an earlier
    /// clone of the same remote).
    pub dest: PathBuf,
    /// Fetch only this many commits of history (network remotes; local ones are always
    /// complete, which costs nothing extra).
    pub depth: Option<u32>,
    /// Clone submodules too, recursively, at the commits the tree records.
    pub submodules: bool,
    /// Asked before any remote is contacted (submodules included): the caller's grant check.
    pub authorize: &'a (dyn Fn(&RemoteUrl) -> Result<(), GitError> + Sync),
}

/// The commit a clone checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub sha: String,
    /// What the reference resolved to: `refs/heads/main`, `refs/tags/v1`, or the SHA itself.
    pub reference: String,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
    /// Author time, RFC 3339 with the author's offset.
    pub timestamp: String,
}

/// What a reference named.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    Branch(String),
    Tag(String),
    OtherRef(String),
    Commit,
}

impl Resolved {
    fn full_name(&self, oid: Oid) -> String {
        match self {
            Resolved::Branch(b) => format!("refs/heads/{b}"),
            Resolved::Tag(t) => format!("refs/tags/{t}"),
            Resolved::OtherRef(r) => r.clone(),
            Resolved::Commit => oid.to_string(),
        }
    }
}

/// What a fetch learned from the remote.
pub(crate) struct Advertised {
    pub(crate) head_branch: Option<String>,
    pub(crate) refs: Vec<(String, Oid)>,
}

impl Git {
    /// Clones `options.remote` at `options.reference` into `options.dest`.
    pub fn clone_repo(
        &self,
        options: &CloneOptions<'_>,
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<Commit, GitError> {
        let url = &options.remote.url;
        if url.is_local() && !self.config.allow_local {
            return Err(GitError::LocalNotAllowed {
                url: url.to_string(),
            });
        }
        (options.authorize)(url)?;
        let dest_repo = prepare_dest(&options.dest, url)?;

        let mirror = self.lock_mirror(url)?;
        let mirror_repo =
            Repository::open_bare(&mirror.path).map_err(|e| GitError::other("open mirror", e))?;
        let shallow = options.depth.filter(|_| !url.is_local());
        let (oid, resolved, head_branch) = self.fetch_and_resolve(
            &mirror_repo,
            &options.remote,
            options.reference.as_deref(),
            shallow,
            progress,
            cancel,
        )?;
        let objects = dest_repo.path().join("objects");
        link_objects(&mirror.path.join("objects"), &objects)?;
        copy_shallow(&mirror.path, dest_repo.path())?;
        let mirror_refs = list_refs(&mirror_repo)?;
        drop(mirror_repo);
        drop(mirror); // the workspace has its objects now: let other clones in
        if let Err(e) = self.trim_mirrors(self.config.mirror_max_bytes) {
            tracing::warn!("cannot trim the git mirror cache: {e}");
        }

        setup_refs(&dest_repo, url, &mirror_refs, head_branch.as_deref())?;
        let commit = checkout(&dest_repo, oid, &resolved, progress)?;

        if options.submodules {
            self.clone_submodules(&dest_repo, options, progress, cancel)?;
        }
        Ok(commit)
    }

    /// Fetches what `reference` needs into the locked mirror and resolves it there.
    fn fetch_and_resolve(
        &self,
        mirror: &Repository,
        remote: &Remote,
        reference: Option<&str>,
        depth: Option<u32>,
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<(Oid, Resolved, Option<String>), GitError> {
        let url = &remote.url;
        let not_found = |known: &[(String, Oid)], r: &str| {
            let mut names: Vec<&str> = known
                .iter()
                .filter_map(|(n, _)| {
                    n.strip_prefix("refs/heads/")
                        .or_else(|| n.strip_prefix("refs/tags/"))
                })
                .take(8)
                .collect();
            names.sort_unstable();
            GitError::RefNotFound {
                url: url.to_string(),
                reference: r.to_string(),
                known: if names.is_empty() {
                    String::new()
                } else {
                    format!("; it has {}", names.join(", "))
                },
                hint: "check `ref:` (a branch, a tag, a full ref or a commit SHA)".into(),
            }
        };

        // A shallow mirror is only ever made for a shallow request; a full one stays full.
        let mirror_is_new = mirror.is_empty().unwrap_or(true);
        let shallow = match depth {
            Some(d) if mirror_is_new || mirror.is_shallow() => Some(d),
            _ if mirror.is_shallow() => Some(0), // unshallow
            _ => None,
        };
        let advertised = if let Some(d) = shallow.filter(|d| *d > 0) {
            // Shallow: fetch exactly the wanted ref (as `git clone --depth` does).
            self.fetch(
                mirror,
                remote,
                Want::Exact(reference),
                Some(d),
                progress,
                cancel,
            )?
        } else {
            let extra = reference
                .filter(|r| {
                    r.starts_with("refs/")
                        && !r.starts_with("refs/heads/")
                        && !r.starts_with("refs/tags/")
                })
                .map(str::to_string);
            let adv = self.fetch(
                mirror,
                remote,
                Want::All(extra),
                shallow.map(|_| 0),
                progress,
                cancel,
            )?;
            prune(mirror, &adv.refs)?;
            adv
        };

        let head_branch = advertised.head_branch.clone();
        let resolved = match resolve(mirror, reference, head_branch.as_deref()) {
            Some(r) => r,
            None => {
                let r = reference.unwrap_or("HEAD");
                if reference.is_none() {
                    return Err(GitError::RefNotFound {
                        url: url.to_string(),
                        reference: "HEAD".into(),
                        known: String::new(),
                        hint: "the repository is empty: push a commit, or name a ref".into(),
                    });
                }
                // A commit that no branch or tag points to: ask for it by id.
                if is_full_sha(r) {
                    let oid = Oid::from_str(r).map_err(|e| GitError::other("parse sha", e))?;
                    let fetched = self.fetch(
                        mirror,
                        remote,
                        Want::Commit(oid),
                        shallow.filter(|d| *d > 0),
                        progress,
                        cancel,
                    );
                    if fetched.is_ok() && mirror.find_commit(oid).is_ok() {
                        (oid, Resolved::Commit)
                    } else {
                        return Err(not_found(&advertised.refs, r));
                    }
                } else {
                    return Err(not_found(&advertised.refs, r));
                }
            }
        };
        Ok((resolved.0, resolved.1, head_branch))
    }

    /// One connection: list the remote's refs, then download what `want` asks for.
    pub(crate) fn fetch(
        &self,
        repo: &Repository,
        remote: &Remote,
        want: Want<'_>,
        depth: Option<u32>,
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<Advertised, GitError> {
        let url = &remote.url;
        let attempts = RefCell::new(Attempts::default());
        let throttle = Throttle::new();
        let mut r = repo
            .remote_anonymous(url.as_str())
            .map_err(|e| GitError::other(format!("remote `{url}`"), e))?;
        let mut conn = r
            .connect_auth(
                Direction::Fetch,
                Some(callbacks(remote, &attempts, progress, &throttle, cancel)),
                None,
            )
            .map_err(|e| explain(e, remote, &attempts.borrow(), cancel))?;
        let refs: Vec<(String, Oid)> = conn
            .list()
            .map_err(|e| GitError::other(format!("list refs of `{url}`"), e))?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        let head_branch = conn
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_string))
            .and_then(|b| b.strip_prefix("refs/heads/").map(str::to_string));
        let specs: Vec<String> = match &want {
            Want::All(extra) => {
                let mut s = vec![
                    "+refs/heads/*:refs/heads/*".to_string(),
                    "+refs/tags/*:refs/tags/*".to_string(),
                ];
                if let Some(e) = extra {
                    s.push(format!("+{e}:{e}"));
                }
                s
            }
            Want::Exact(reference) => {
                let wanted = match reference {
                    None => head_branch.as_ref().map(|b| format!("refs/heads/{b}")),
                    Some(r) => exact_ref(&refs, r),
                };
                match wanted {
                    Some(full) => vec![format!("+{full}:{full}")],
                    None => match reference {
                        Some(r) if is_full_sha(r) => vec![r.to_string()],
                        _ => Vec::new(), // resolved (and reported) by the caller
                    },
                }
            }
            Want::Commit(oid) => vec![oid.to_string()],
        };
        if !specs.is_empty() {
            let mut fo = FetchOptions::new();
            fo.remote_callbacks(callbacks(remote, &attempts, progress, &throttle, cancel));
            fo.download_tags(AutotagOption::None);
            if let Some(d) = depth {
                fo.depth(if d == 0 { i32::MAX } else { d as i32 });
            }
            conn.remote()
                .download(&specs, Some(&mut fo))
                .map_err(|e| explain(e, remote, &attempts.borrow(), cancel))?;
        }
        drop(conn);
        if !specs.is_empty() {
            let mut cb = RemoteCallbacks::new();
            r.update_tips(
                Some(&mut cb),
                git2::RemoteUpdateFlags::empty(),
                AutotagOption::None,
                Some("kiln: fetch"),
            )
            .map_err(|e| GitError::other(format!("update refs from `{url}`"), e))?;
        }
        progress(&format!("fetched {url}"));
        Ok(Advertised { head_branch, refs })
    }

    fn clone_submodules(
        &self,
        repo: &Repository,
        parent: &CloneOptions<'_>,
        progress: Progress<'_>,
        cancel: &Cancel,
    ) -> Result<(), GitError> {
        let workdir = repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| parent.dest.clone());
        let submodules = repo
            .submodules()
            .map_err(|e| GitError::other("read .gitmodules", e))?;
        for mut sm in submodules {
            let name = sm.name().unwrap_or("?").to_string();
            let (Some(raw_url), Some(oid)) =
                (sm.url().ok().flatten().map(str::to_string), sm.head_id())
            else {
                continue; // declared but not in the tree
            };
            let url = parent.remote.url.join(&raw_url)?;
            let same_host = url.endpoint() == parent.remote.url.endpoint();
            let remote = Remote {
                credentials: if same_host {
                    parent.remote.credentials.clone()
                } else {
                    Credentials::None
                },
                host_key: parent.remote.host_key.clone(),
                url,
            };
            progress(&format!("submodule {name}: {}", remote.url));
            let dest = workdir.join(sm.path());
            let options = CloneOptions {
                remote,
                reference: Some(oid.to_string()),
                dest,
                depth: None,
                submodules: true,
                authorize: parent.authorize,
            };
            self.clone_repo(&options, progress, cancel)?;
            let _ = sm.init(false);
        }
        Ok(())
    }
}

/// What a fetch asks for.
pub(crate) enum Want<'a> {
    /// All branches and tags (a full mirror), plus one extra full ref.
    All(Option<String>),
    /// Just this reference (`None`: the default branch) — for shallow fetches.
    Exact(Option<&'a str>),
    /// One commit by id.
    Commit(Oid),
}

fn exact_ref(refs: &[(String, Oid)], r: &str) -> Option<String> {
    let candidates = [
        r.to_string(),
        format!("refs/heads/{r}"),
        format!("refs/tags/{r}"),
    ];
    candidates
        .into_iter()
        .find(|c| c.starts_with("refs/") && refs.iter().any(|(n, _)| n == c))
}

pub(crate) fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve(
    repo: &Repository,
    reference: Option<&str>,
    head_branch: Option<&str>,
) -> Option<(Oid, Resolved)> {
    let peel = |name: &str| -> Option<Oid> {
        let r = repo.find_reference(name).ok()?;
        Some(r.peel_to_commit().ok()?.id())
    };
    let Some(r) = reference else {
        let b = head_branch?;
        return Some((
            peel(&format!("refs/heads/{b}"))?,
            Resolved::Branch(b.into()),
        ));
    };
    if let Some(b) = r.strip_prefix("refs/heads/") {
        return Some((peel(r)?, Resolved::Branch(b.into())));
    }
    if let Some(t) = r.strip_prefix("refs/tags/") {
        return Some((peel(r)?, Resolved::Tag(t.into())));
    }
    if r.starts_with("refs/") {
        return Some((peel(r)?, Resolved::OtherRef(r.into())));
    }
    if let Some(oid) = peel(&format!("refs/heads/{r}")) {
        return Some((oid, Resolved::Branch(r.into())));
    }
    if let Some(oid) = peel(&format!("refs/tags/{r}")) {
        return Some((oid, Resolved::Tag(r.into())));
    }
    if r.len() >= 4 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
        let obj = repo.revparse_single(r).ok()?;
        let commit = obj.peel_to_commit().ok()?;
        return Some((commit.id(), Resolved::Commit));
    }
    None
}

/// Deletes mirror branches and tags the remote no longer has.
fn prune(mirror: &Repository, advertised: &[(String, Oid)]) -> Result<(), GitError> {
    let names: std::collections::HashSet<&str> =
        advertised.iter().map(|(n, _)| n.as_str()).collect();
    let refs = mirror
        .references()
        .map_err(|e| GitError::other("list mirror refs", e))?;
    let mut stale = Vec::new();
    for r in refs.flatten() {
        if let Ok(name) = r.name()
            && (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            && !names.contains(name)
        {
            stale.push(name.to_string());
        }
    }
    for name in stale {
        if let Ok(mut r) = mirror.find_reference(&name) {
            let _ = r.delete();
        }
    }
    Ok(())
}

fn list_refs(repo: &Repository) -> Result<Vec<(String, Oid)>, GitError> {
    let refs = repo
        .references()
        .map_err(|e| GitError::other("list mirror refs", e))?;
    Ok(refs
        .flatten()
        .filter_map(|r| Some((r.name().ok()?.to_string(), r.target()?)))
        .collect())
}

/// Opens the destination: a new repository in an empty (or missing) directory, or the one an
/// earlier attempt of this clone left.
fn prepare_dest(dest: &Path, url: &RemoteUrl) -> Result<Repository, GitError> {
    let in_use = || GitError::DestinationInUse {
        path: dest.display().to_string(),
        url: url.to_string(),
    };
    if dest.join(".git").exists() {
        let repo = Repository::open(dest).map_err(|_| in_use())?;
        let same = repo
            .find_remote("origin")
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
            .and_then(|u| RemoteUrl::parse(&u).ok())
            .is_some_and(|u| u.canonical() == url.canonical());
        return if same { Ok(repo) } else { Err(in_use()) };
    }
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(in_use());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest)
                .map_err(|e| GitError::other(format!("create `{}`", dest.display()), e))?;
        }
        Err(e) => return Err(GitError::other(format!("read `{}`", dest.display()), e)),
    }
    let repo = Repository::init(dest)
        .map_err(|e| GitError::other(format!("init `{}`", dest.display()), e))?;
    // `origin` first: a clone that fails later (network, missing ref) leaves a repository that
    // a retry of the same clone recognizes as its own.
    repo.remote("origin", &url.to_string())
        .map_err(|e| GitError::other(format!("init `{}`", dest.display()), e))?;
    Ok(repo)
}

/// Gives a repository the mirror's shallow boundary, or none when the mirror is complete.
pub(crate) fn copy_shallow(mirror: &Path, git_dir: &Path) -> Result<(), GitError> {
    let from = mirror.join("shallow");
    let to = git_dir.join("shallow");
    if from.is_file() {
        fs::copy(&from, &to).map_err(|e| GitError::other("copy shallow", e))?;
    } else if to.exists() {
        fs::remove_file(&to).map_err(|e| GitError::other("remove shallow", e))?;
    }
    Ok(())
}

/// `origin` as `git clone` sets it up: the URL, the fetch refspec, remote-tracking branches,
/// tags and `origin/HEAD`.
fn setup_refs(
    repo: &Repository,
    url: &RemoteUrl,
    mirror_refs: &[(String, Oid)],
    head_branch: Option<&str>,
) -> Result<(), GitError> {
    let err = |e: git2::Error| GitError::other("set up refs", e);
    if repo.find_remote("origin").is_err() {
        repo.remote("origin", &url.to_string()).map_err(err)?;
    }
    for (name, oid) in mirror_refs {
        let local = if let Some(b) = name.strip_prefix("refs/heads/") {
            format!("refs/remotes/origin/{b}")
        } else if name.starts_with("refs/tags/") {
            name.clone()
        } else {
            continue;
        };
        repo.reference(&local, *oid, true, "kiln: clone")
            .map_err(err)?;
    }
    if let Some(b) = head_branch {
        repo.reference_symbolic(
            "refs/remotes/origin/HEAD",
            &format!("refs/remotes/origin/{b}"),
            true,
            "kiln: clone",
        )
        .map_err(err)?;
    }
    Ok(())
}

fn checkout(
    repo: &Repository,
    oid: Oid,
    resolved: &Resolved,
    progress: Progress<'_>,
) -> Result<Commit, GitError> {
    let err = |e: git2::Error| GitError::other("check out", e);
    let commit = repo.find_commit(oid).map_err(err)?;
    let throttle = Throttle::new();
    let mut co = git2::build::CheckoutBuilder::new();
    co.force();
    if let Ok(tree) = commit.tree()
        && filters_are_noops(repo, &tree)
    {
        co.disable_filters(true);
    }
    co.progress(|_, done, total| {
        if throttle.due(done == total) {
            progress(&format!("checking out files: {done}/{total}"));
        }
    });
    repo.checkout_tree(commit.as_object(), Some(&mut co))
        .map_err(err)?;
    match resolved {
        Resolved::Branch(b) => {
            // Not `Repository::branch`: it refuses to move the branch `HEAD` is on, which is
            // what cloning again into an earlier clone of the same branch must do.
            repo.reference(&format!("refs/heads/{b}"), oid, true, "kiln: clone")
                .map_err(err)?;
            let mut cfg = repo.config().map_err(err)?;
            cfg.set_str(&format!("branch.{b}.remote"), "origin")
                .map_err(err)?;
            cfg.set_str(&format!("branch.{b}.merge"), &format!("refs/heads/{b}"))
                .map_err(err)?;
            repo.set_head(&format!("refs/heads/{b}")).map_err(err)?;
        }
        _ => repo.set_head_detached(oid).map_err(err)?,
    }
    Ok(commit_info(&commit, resolved.full_name(oid)))
}

/// Whether checkout filters (line endings, `ident`, filter drivers) have nothing to do when
/// `tree` is checked out into this new repository: no `.gitattributes` in the tree, no other
/// attributes file, no `core.autocrlf`, `core.eol` at most `lf`, and an empty index (a first
/// checkout: no `.gitattributes` of an earlier commit in the working tree). libgit2 would
/// otherwise look up attributes for every file, ~10% of the time of a large checkout.
fn filters_are_noops(repo: &Repository, tree: &git2::Tree<'_>) -> bool {
    if !repo.index().is_ok_and(|i| i.is_empty()) {
        return false;
    }
    let Ok(cfg) = repo.config() else {
        return false;
    };
    let unset = |e: &git2::Error| e.code() == git2::ErrorCode::NotFound;
    match cfg.get_bool("core.autocrlf") {
        Ok(false) => {}
        Err(e) if unset(&e) => {}
        _ => return false, // true, input, or unreadable
    }
    match cfg.get_string("core.eol") {
        Ok(v) if v.eq_ignore_ascii_case("lf") || v.eq_ignore_ascii_case("native") => {}
        Err(e) if unset(&e) => {}
        _ => return false,
    }
    if !cfg
        .get_string("core.attributesfile")
        .is_err_and(|e| unset(&e))
    {
        return false;
    }
    if repo.path().join("info/attributes").exists()
        || attribute_files_outside_repos().iter().any(|p| p.exists())
    {
        return false;
    }
    let mut found = false;
    let walked = tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.name_bytes() == b".gitattributes" {
            found = true;
            git2::TreeWalkResult::Abort
        } else {
            git2::TreeWalkResult::Ok
        }
    });
    walked.is_ok() && !found
}

/// The system and user attributes files libgit2 reads: `gitattributes` in the system config
/// directories, `attributes` in the XDG ones (`~/.config/git/attributes`).
fn attribute_files_outside_repos() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for (level, file) in [
        (git2::ConfigLevel::System, "gitattributes"),
        (git2::ConfigLevel::XDG, "attributes"),
    ] {
        // SAFETY: reads libgit2's search paths, which nothing in this process changes (this
        // crate never sets them).
        if let Ok(paths) = unsafe { git2::opts::get_search_path(level) }
            && let Ok(paths) = paths.into_string()
        {
            v.extend(
                paths
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| Path::new(p).join(file)),
            );
        }
    }
    v.push(PathBuf::from("/etc/gitattributes"));
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME") {
        v.push(PathBuf::from(xdg).join("git/attributes"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        v.push(PathBuf::from(home).join(".config/git/attributes"));
    }
    v
}

pub(crate) fn commit_info(commit: &git2::Commit<'_>, reference: String) -> Commit {
    let author = commit.author();
    let when = author.when();
    Commit {
        sha: commit.id().to_string(),
        reference,
        message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
        author_name: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        author_email: String::from_utf8_lossy(author.email_bytes()).into_owned(),
        timestamp: rfc3339(when.seconds(), when.offset_minutes()),
    }
}

/// `2026-11-22T05:00:00+01:00` from Unix seconds and an offset in minutes.
pub(crate) fn rfc3339(secs: i64, offset_min: i32) -> String {
    let local = secs + i64::from(offset_min) * 60;
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let offset = if offset_min == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let o = offset_min.unsigned_abs();
        format!("{sign}{:02}:{:02}", o / 60, o % 60)
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{offset}")
}

/// The callbacks of one connection: credentials, host key, progress and cancellation.
pub(crate) fn callbacks<'a>(
    remote: &'a Remote,
    attempts: &'a RefCell<Attempts>,
    progress: Progress<'a>,
    throttle: &'a Throttle,
    cancel: &'a Cancel,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let url_user = remote.url.user();
    cb.credentials(move |_url, user, allowed| {
        auth::credential(&remote.credentials, user.or(url_user), allowed, attempts)
    });
    let (host, port) = match &remote.url.location {
        Location::Network { host, port, .. } => (host.clone(), *port),
        Location::Local(_) => (String::new(), 0),
    };
    cb.certificate_check(move |cert, _| {
        auth::check_certificate(cert, &host, port, &remote.host_key, attempts)
    });
    cb.transfer_progress(move |p| {
        let done =
            p.received_objects() == p.total_objects() && p.indexed_objects() == p.total_objects();
        if throttle.due(done) && p.total_objects() > 0 {
            progress(&format!(
                "receiving objects: {}/{} ({:.1} MiB), indexed {}",
                p.received_objects(),
                p.total_objects(),
                p.received_bytes() as f64 / (1024.0 * 1024.0),
                p.indexed_objects()
            ));
        }
        !cancel.is_cancelled()
    });
    cb.sideband_progress(move |_| !cancel.is_cancelled());
    cb
}

/// Turns libgit2's error into one that says what went wrong and what to do.
pub(crate) fn explain(
    e: git2::Error,
    remote: &Remote,
    attempts: &Attempts,
    cancel: &Cancel,
) -> GitError {
    let url = remote.url.to_string();
    if cancel.is_cancelled() {
        return GitError::Cancelled(format!("fetch from `{url}` cancelled"));
    }
    if let Some(problem) = &attempts.host_key {
        return match problem.clone() {
            HostKeyProblem::Unknown { host, key } => GitError::HostKeyUnknown {
                hint: format!(
                    "pin it with `known-hosts:` (a secret holding known_hosts lines) or `host-key: \"{key}\"` after checking it with the server's owner"
                ),
                host,
                key,
            },
            HostKeyProblem::Mismatch { host, key } => GitError::HostKeyMismatch { host, key },
            HostKeyProblem::Revoked { host } => GitError::HostKeyRevoked { host },
            HostKeyProblem::Invalid(reason) => GitError::Unreachable {
                url,
                reason,
                hint: "check that the address is an ssh server".into(),
            },
        };
    }
    let msg = e.message().to_string();
    let lower = msg.to_ascii_lowercase();
    if attempts.auth_missing
        || (matches!(remote.credentials, Credentials::None)
            && (lower.contains("401") || lower.contains("authentication required")))
    {
        return GitError::AuthRequired { url };
    }
    // libssh2 cannot tell a wrong passphrase from a key it cannot parse: both are "Unable to
    // extract public key from private key"; either way the key is the problem, not the network.
    let key_unreadable = matches!(remote.credentials, Credentials::SshKey { .. })
        && (lower.contains("private key") || lower.contains("passphrase"));
    if key_unreadable {
        return GitError::Auth {
            url,
            credentials: remote.credentials.describe(),
            hint: "the private key could not be opened: check its passphrase, and that it is an OpenSSH or PEM private key".into(),
        };
    }
    if attempts.auth_rejected
        || e.code() == git2::ErrorCode::Auth
        || lower.contains("401")
        || lower.contains("403")
        || lower.contains("authentication")
    {
        return GitError::Auth {
            url,
            credentials: remote.credentials.describe(),
            hint: match remote.credentials {
                Credentials::SshKey { .. } => {
                    "check that the key is a deploy key of this repository and its passphrase is right".into()
                }
                _ => "check the secret's value and that it may read this repository".into(),
            },
        };
    }
    if lower.contains("404")
        || lower.contains("not found")
        || lower.contains("not appear to be a git repository")
        || lower.contains("could not find repository")
        || lower.contains("failed to resolve path")
    {
        return GitError::RepoNotFound { url };
    }
    if matches!(
        e.class(),
        git2::ErrorClass::Net
            | git2::ErrorClass::Ssh
            | git2::ErrorClass::Http
            | git2::ErrorClass::Os
    ) || lower.contains("connect")
        || lower.contains("resolve")
        || lower.contains("timed out")
    {
        return GitError::Unreachable {
            url,
            reason: msg,
            hint: "check the host and port, and that the server is up and reachable from here"
                .into(),
        };
    }
    GitError::Other {
        context: format!("fetch from `{url}`"),
        message: msg,
    }
}

/// Lets a progress line through about once a second, and always the last one.
pub(crate) struct Throttle {
    last: Cell<Option<Instant>>,
}

impl Throttle {
    pub(crate) fn new() -> Throttle {
        Throttle {
            last: Cell::new(None),
        }
    }

    pub(crate) fn due(&self, last: bool) -> bool {
        let now = Instant::now();
        match self.last.get() {
            Some(t) if !last && now.duration_since(t) < Duration::from_secs(1) => false,
            _ => {
                self.last.set(Some(now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_the_authors_offset() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_323_600, 60), "2026-11-22T06:00:00+01:00");
        assert_eq!(rfc3339(951_782_400, -330), "2000-02-28T18:30:00-05:30");
    }
}
