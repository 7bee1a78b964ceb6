//! The host side of the `git` import: each call is checked against the step's grants, then
//! done by [`kiln_git`] on a blocking thread. Secrets are looked up by name here; their values
//! never cross into the guest.
//!
//! If the step ends while a call is in flight (timeout, cancel), the call's future is dropped
//! and its [`kiln_git::Cancel`] is set, which stops a running transfer at its next progress
//! callback.

use std::path::PathBuf;
use std::sync::Arc;

use kiln_git::{
    Access, Cancel, CloneOptions, CommitOptions, Credentials, Git, GitError, HostKeyCheck,
    Identity, PushOptions, Remote, RemoteUrl,
};

use crate::LogStream;
use crate::access::{AccessError, StepAccess};
use crate::bindings::git::{self as wit, Host};
use crate::log::StepLog;
use crate::state::StepState;

/// What one step's git calls may touch.
pub(crate) struct GitScope {
    pub(crate) git: Arc<Git>,
    pub(crate) access: Arc<StepAccess>,
}

fn error(kind: wit::ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

fn denied(message: impl Into<String>) -> wit::Error {
    error(wit::ErrorKind::Denied, message)
}

fn from_access(e: AccessError) -> wit::Error {
    match e {
        AccessError::Denied(m) => denied(m),
        AccessError::Failed(m) => error(wit::ErrorKind::Failed, m),
    }
}

fn from_git(e: GitError) -> wit::Error {
    use wit::ErrorKind as K;
    let kind = match &e {
        GitError::InvalidUrl { .. }
        | GitError::DestinationInUse { .. }
        | GitError::Invalid { .. } => K::Invalid,
        GitError::PushRejected { .. } => K::Rejected,
        GitError::PushRefused { .. } => K::Refused,
        GitError::LocalNotAllowed { .. } => K::Denied,
        GitError::Auth { .. } | GitError::AuthRequired { .. } => K::Auth,
        GitError::HostKeyUnknown { .. }
        | GitError::HostKeyMismatch { .. }
        | GitError::HostKeyRevoked { .. } => K::HostKey,
        GitError::RepoNotFound { .. }
        | GitError::RefNotFound { .. }
        | GitError::UnknownRevision { .. } => K::NotFound,
        GitError::Unreachable { .. } => K::Unreachable,
        GitError::Cancelled(_) | GitError::Other { .. } => K::Failed,
        GitError::Denied(_) => K::Denied,
    };
    error(kind, e.to_string())
}

/// Sets the cancel flag when the call's future is dropped before it finished.
struct CancelOnDrop {
    cancel: Cancel,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.cancel.cancel();
        }
    }
}

impl GitScope {
    fn host_path(&self, guest: &str) -> Result<PathBuf, wit::Error> {
        self.access.host_path(guest).map_err(from_access)
    }

    fn secret(&self, name: &str, what: &str) -> Result<String, wit::Error> {
        self.access.secret(name, what).map_err(from_access)
    }

    fn remote(&self, r: wit::Remote) -> Result<Remote, wit::Error> {
        let url = RemoteUrl::parse(&r.url).map_err(from_git)?;
        let network = matches!(url.location, kiln_git::Location::Network { .. });
        Ok(Remote {
            credentials: self.credentials(r.credentials)?,
            host_key: self.host_key(r.host_key, &url.to_string(), network)?,
            url,
        })
    }

    /// Credentials by secret name -> values.
    fn credentials(&self, c: wit::Credentials) -> Result<Credentials, wit::Error> {
        Ok(match c {
            wit::Credentials::None => Credentials::None,
            wit::Credentials::Basic(b) => Credentials::UserPass {
                password: self.secret(&b.password_secret, "password")?,
                username: b.username,
            },
            wit::Credentials::SshKey(k) => Credentials::SshKey {
                private_key: self.secret(&k.key_secret, "ssh key")?,
                passphrase: match &k.passphrase_secret {
                    Some(p) => Some(self.secret(p, "ssh key passphrase")?),
                    None => None,
                },
                username: k.username,
            },
        })
    }

    /// The host-key policy, with the known_hosts secret read; `network` says whether opting
    /// out deserves a warning.
    fn host_key(
        &self,
        h: wit::HostKeyCheck,
        remote: &str,
        network: bool,
    ) -> Result<HostKeyCheck, wit::Error> {
        Ok(match h {
            wit::HostKeyCheck::System => HostKeyCheck::System,
            wit::HostKeyCheck::KnownHostsSecret(name) => {
                HostKeyCheck::KnownHosts(self.secret(&name, "known_hosts")?)
            }
            wit::HostKeyCheck::Pinned(lines) => HostKeyCheck::Pinned(lines),
            wit::HostKeyCheck::AcceptAny => {
                if network {
                    self.access.log.message(
                        LogStream::Warn,
                        &format!("not checking the ssh host key of {remote}: the step opted out"),
                    );
                }
                HostKeyCheck::AcceptAny
            }
        })
    }

    /// The grant check handed to the git layer (also asked for submodules and `origin`).
    fn authorize(net: &[String]) -> impl Fn(&RemoteUrl) -> Result<(), GitError> + Sync + '_ {
        move |url: &RemoteUrl| match url.endpoint() {
            None => Ok(()), // local: the git layer applies `allow_local`
            Some(endpoint) if net.contains(&endpoint) => Ok(()),
            Some(endpoint) => Err(GitError::Denied(format!(
                "`{url}` is not in the step's network grants\n  hint: add `allow: {{ net: [\"{endpoint}\"] }}` to the step"
            ))),
        }
    }
}

/// Runs `job` on a blocking thread with a progress sink into the step log and a cancel flag
/// that dropping the future sets.
async fn blocking<T: Send + 'static>(
    log: Arc<StepLog>,
    job: impl FnOnce(&(dyn Fn(&str) + Sync), &Cancel) -> Result<T, wit::Error> + Send + 'static,
) -> Result<T, wit::Error> {
    let cancel = Cancel::default();
    let mut guard = CancelOnDrop {
        cancel: cancel.clone(),
        armed: true,
    };
    let result = tokio::task::spawn_blocking(move || {
        let progress = |line: &str| log.message(LogStream::Info, line);
        job(&progress, &cancel)
    })
    .await
    .unwrap_or_else(|e| {
        Err(error(
            wit::ErrorKind::Failed,
            format!("git task failed: {e}"),
        ))
    });
    guard.armed = false; // finished: nothing to cancel
    result
}

impl StepState {
    fn git_scope(&self) -> Result<&GitScope, wit::Error> {
        self.git.as_ref().ok_or_else(|| {
            denied("git is not available here (only while a step runs, on a host with git)")
        })
    }
}

impl Host for StepState {
    async fn clone(&mut self, request: wit::CloneRequest) -> Result<wit::CommitInfo, wit::Error> {
        let scope = self.git_scope()?;
        if !scope.access.workspace_write {
            return Err(denied(
                "cloning writes to the workspace, which this step may only read\n  hint: add `allow: { workspace: write }` to the step",
            ));
        }
        let remote = scope.remote(request.remote)?;
        let dest = scope.host_path(&request.path)?;
        let git = scope.git.clone();
        let net = scope.access.net.clone();
        let reference = request.ref_;
        let (depth, submodules) = (request.depth, request.submodules);
        blocking(scope.access.log.clone(), move |progress, cancel| {
            let authorize = GitScope::authorize(&net);
            let options = CloneOptions {
                remote,
                reference,
                dest,
                depth,
                submodules,
                authorize: &authorize,
            };
            git.clone_repo(&options, progress, cancel)
                .map(commit)
                .map_err(from_git)
        })
        .await
    }

    async fn changed_files(
        &mut self,
        repo: String,
        base: String,
        head: String,
        remote: Option<wit::Remote>,
    ) -> Result<Vec<wit::Change>, wit::Error> {
        let scope = self.git_scope()?;
        let path = scope.host_path(&repo)?;
        let remote = remote.map(|r| scope.remote(r)).transpose()?;
        let git = scope.git.clone();
        let net = scope.access.net.clone();
        blocking(scope.access.log.clone(), move |progress, cancel| {
            let authorize = GitScope::authorize(&net);
            let access = Access {
                remote: remote.as_ref(),
                authorize: &authorize,
                progress,
                cancel,
            };
            let changes = git
                .changed_files(&path, &base, &head, &access)
                .map_err(from_git)?;
            Ok(changes.into_iter().map(change).collect())
        })
        .await
    }

    async fn resolve(&mut self, repo: String, rev: String) -> Result<wit::CommitInfo, wit::Error> {
        let scope = self.git_scope()?;
        let path = scope.host_path(&repo)?;
        let git = scope.git.clone();
        blocking(scope.access.log.clone(), move |_, _| {
            git.commit(&path, &rev).map(commit).map_err(from_git)
        })
        .await
    }

    async fn read_file(
        &mut self,
        repo: String,
        rev: String,
        file: String,
    ) -> Result<Option<Vec<u8>>, wit::Error> {
        let scope = self.git_scope()?;
        let path = scope.host_path(&repo)?;
        let git = scope.git.clone();
        blocking(scope.access.log.clone(), move |_, _| {
            git.read_file(&path, &rev, &file).map_err(from_git)
        })
        .await
    }

    async fn list_files(&mut self, repo: String, rev: String) -> Result<Vec<String>, wit::Error> {
        let scope = self.git_scope()?;
        let path = scope.host_path(&repo)?;
        let git = scope.git.clone();
        blocking(scope.access.log.clone(), move |_, _| {
            git.list_files(&path, &rev).map_err(from_git)
        })
        .await
    }

    async fn commit(
        &mut self,
        request: wit::CommitRequest,
    ) -> Result<wit::CommitResult, wit::Error> {
        let scope = self.git_scope()?;
        if !scope.access.workspace_write {
            return Err(denied(
                "committing writes to the workspace, which this step may only read\n  hint: add `allow: { workspace: write }` to the step",
            ));
        }
        let options = CommitOptions {
            repo: scope.host_path(&request.repo)?,
            confine: Some(scope.access.workspace.clone()),
            paths: request.paths,
            message: request.message,
            author: identity(request.author),
            committer: request.committer.map(identity),
            allow_empty: request.allow_empty,
        };
        let git = scope.git.clone();
        blocking(scope.access.log.clone(), move |_, _| {
            let done = git.commit_changes(&options).map_err(from_git)?;
            Ok(wit::CommitResult {
                commit: commit(done.commit),
                created: done.created,
                changes: done.changes.into_iter().map(change).collect(),
            })
        })
        .await
    }

    async fn push(&mut self, request: wit::PushRequest) -> Result<wit::PushResult, wit::Error> {
        let scope = self.git_scope()?;
        let repo = scope.host_path(&request.repo)?;
        let target = request.remote.url;
        // A remote name is resolved (and its URL checked) by the git layer.
        let network = RemoteUrl::parse(&target)
            .map(|u| !u.is_local())
            .unwrap_or(true);
        let credentials = scope.credentials(request.remote.credentials)?;
        let host_key = scope.host_key(request.remote.host_key, &target, network)?;
        let git = scope.git.clone();
        let net = scope.access.net.clone();
        let confine = scope.access.workspace.clone();
        // Moving `refs/remotes/<name>/<branch>` writes to the repository.
        let update_tracking = scope.access.workspace_write;
        let (source, destination, force) = (request.source, request.destination, request.force);
        blocking(scope.access.log.clone(), move |progress, cancel| {
            let authorize = GitScope::authorize(&net);
            let options = PushOptions {
                repo,
                confine: Some(confine),
                remote: target,
                credentials,
                host_key,
                source,
                destination,
                force,
                update_tracking,
                authorize: &authorize,
            };
            let pushed = git.push(&options, progress, cancel).map_err(from_git)?;
            Ok(wit::PushResult {
                ref_: pushed.reference,
                sha: pushed.sha,
                previous: pushed.previous,
                updated: pushed.updated,
            })
        })
        .await
    }
}

fn identity(i: wit::Identity) -> Identity {
    Identity {
        name: i.name,
        email: i.email,
    }
}

fn change(c: kiln_git::Change) -> wit::Change {
    wit::Change {
        kind: match c.kind {
            kiln_git::ChangeKind::Added => wit::ChangeKind::Added,
            kiln_git::ChangeKind::Modified => wit::ChangeKind::Modified,
            kiln_git::ChangeKind::Deleted => wit::ChangeKind::Deleted,
            kiln_git::ChangeKind::Renamed => wit::ChangeKind::Renamed,
            kiln_git::ChangeKind::TypeChanged => wit::ChangeKind::TypeChanged,
        },
        path: c.path,
        old_path: c.old_path,
    }
}

fn commit(c: kiln_git::Commit) -> wit::CommitInfo {
    wit::CommitInfo {
        sha: c.sha,
        ref_: c.reference,
        message: c.message,
        author_name: c.author_name,
        author_email: c.author_email,
        timestamp: c.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogSink;
    use crate::log::StepLog;
    use std::path::Path;

    struct Discard;
    impl LogSink for Discard {
        fn line(&self, _: LogStream, _: &str) {}
    }

    fn scope(workspace: &Path) -> GitScope {
        GitScope {
            git: Arc::new(Git::new(kiln_git::GitConfig {
                mirror_dir: workspace.join("../mirrors"),
                mirror_max_bytes: 1 << 20,
                allow_local: false,
            })),
            access: Arc::new(StepAccess {
                workspace: workspace.to_path_buf(),
                workspace_write: true,
                net: vec!["example.com:443".into()],
                secrets: std::collections::BTreeMap::from([("TOKEN".into(), "s3cret".into())]),
                log: StepLog::new(Arc::new(Discard)),
            }),
        }
    }

    #[test]
    fn guest_paths_map_into_the_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let s = scope(tmp.path());
        assert_eq!(
            s.host_path("/workspace/src").unwrap(),
            tmp.path().join("src")
        );
        assert_eq!(
            s.host_path("src/./app").unwrap(),
            tmp.path().join("src/app")
        );
        assert_eq!(s.host_path("/workspace").unwrap(), tmp.path().to_path_buf());
    }

    #[test]
    fn paths_leaving_the_workspace_are_denied() {
        let tmp = tempfile::tempdir().unwrap();
        let s = scope(tmp.path());
        for p in ["../x", "/etc", "/workspace/../x", "/workspacex"] {
            let e = s.host_path(p).unwrap_err();
            assert_eq!(e.kind, wit::ErrorKind::Denied, "{p}");
        }
    }

    #[test]
    fn a_symlink_planted_in_the_workspace_cannot_lead_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::os::unix::fs::symlink("/tmp", ws.join("link")).unwrap();
        let e = scope(&ws).host_path("link/clone").unwrap_err();
        assert!(e.message.contains("symlink"), "{}", e.message);
    }

    #[test]
    fn network_remotes_must_be_granted_and_local_ones_are_left_to_the_git_layer() {
        let net = vec!["example.com:443".to_string()];
        let authorize = GitScope::authorize(&net);
        let ok = RemoteUrl::parse("https://example.com/a.git").unwrap();
        assert!(authorize(&ok).is_ok());
        let other = RemoteUrl::parse("git@example.com:a.git").unwrap();
        let e = authorize(&other).unwrap_err().to_string();
        assert!(e.contains("net: [\"example.com:22\"]"), "{e}");
        assert!(authorize(&RemoteUrl::parse("/srv/a.git").unwrap()).is_ok());
    }

    #[test]
    fn secrets_are_read_by_name_and_an_unlisted_one_is_denied() {
        let tmp = tempfile::tempdir().unwrap();
        let s = scope(tmp.path());
        assert_eq!(s.secret("TOKEN", "token").unwrap(), "s3cret");
        let e = s.secret("OTHER", "token").unwrap_err();
        assert_eq!(e.kind, wit::ErrorKind::Denied);
        assert!(!e.message.contains("s3cret"));
    }
}
