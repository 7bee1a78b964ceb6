//! Kiln's git layer, on libgit2: clone a remote into a workspace through a mirror cache, with
//! credentials and SSH host-key checks, and read history (changed files between commits, files
//! at a commit), and write through it (commit changes of a working tree, push a commit).
//!
//! Everything here blocks: call it from a blocking thread (`tokio::task::spawn_blocking`), never
//! from an async task. Long transfers stop early when the [`Cancel`] flag is set.
//!
//! # Mirror cache
//! Every remote is fetched into a bare mirror under [`GitConfig::mirror_dir`], keyed by the
//! remote's canonical URL, so the next clone of the same repository fetches only new objects.
//! The workspace gets its own repository whose object files are hard links into the mirror
//! (copies across filesystems): it is self-contained and survives the mirror's eviction. A
//! mirror is locked (an OS file lock) while it is fetched and linked from; concurrent clones of
//! one repository take turns, clones of different repositories do not wait for each other.
//! After each clone, the least recently used mirrors that nobody holds are removed until the
//! cache fits [`GitConfig::mirror_max_bytes`].
//!
//! # Where remotes may be
//! Network remotes are checked by the caller against the step's grants ([`RemoteUrl::endpoint`]).
//! Local remotes (`file://`, absolute paths) are refused unless [`GitConfig::allow_local`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod auth;
mod clone;
mod history;
mod mirror;
mod url;
mod write;

pub use auth::{Credentials, HostKeyCheck};
pub use clone::{CloneOptions, Commit};
pub use history::{Access, Change, ChangeKind};
pub use mirror::MirrorInfo;
pub use url::{Location, RemoteUrl, redact};
pub use write::{CommitOptions, Committed, Identity, PushOptions, Pushed};

/// Settings of the git layer.
#[derive(Debug, Clone)]
pub struct GitConfig {
    /// Where mirrors live.
    pub mirror_dir: PathBuf,
    /// Size the mirror cache is trimmed to after each clone (least recently used first).
    pub mirror_max_bytes: u64,
    /// Whether `file://` URLs and absolute paths may be cloned (yes for `kiln run` on one's own
    /// machine, no for a shared server).
    pub allow_local: bool,
}

/// A remote and how to reach it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: RemoteUrl,
    pub credentials: Credentials,
    pub host_key: HostKeyCheck,
}

impl Remote {
    pub fn new(url: RemoteUrl) -> Remote {
        Remote {
            url,
            credentials: Credentials::None,
            host_key: HostKeyCheck::System,
        }
    }
}

/// Set from another thread to stop a transfer.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Receives progress lines (rate-limited: about one a second, plus the last).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Why a git operation failed. Every message names the remote (credentials never included) and
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{url}` is not a usable git URL: {reason}\n  hint: {hint}")]
    InvalidUrl {
        url: String,
        reason: String,
        hint: String,
    },
    #[error(
        "cloning local repositories is not allowed here: `{url}`\n  hint: use a network URL; local paths are only allowed for `kiln run`"
    )]
    LocalNotAllowed { url: String },
    #[error("authentication to `{url}` failed with {credentials}\n  hint: {hint}")]
    Auth {
        url: String,
        credentials: &'static str,
        hint: String,
    },
    #[error(
        "`{url}` asks for credentials and none were given\n  hint: pass them from a secret with `auth:`"
    )]
    AuthRequired { url: String },
    #[error("the ssh host key of `{host}` is not known (server offered `{key}`)\n  hint: {hint}")]
    HostKeyUnknown {
        host: String,
        key: String,
        hint: String,
    },
    #[error(
        "the ssh host key of `{host}` does not match the known key (server offered `{key}`): someone may be intercepting the connection, or the server's key changed\n  hint: verify the new key with the server's owner, then update the known_hosts entry"
    )]
    HostKeyMismatch { host: String, key: String },
    #[error("the ssh host key of `{host}` is revoked in known_hosts\n  hint: use a current key")]
    HostKeyRevoked { host: String },
    #[error("cannot reach `{url}`: {reason}\n  hint: {hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: String,
    },
    #[error(
        "`{url}` has no repository here\n  hint: check the URL and that the credentials may read it"
    )]
    RepoNotFound { url: String },
    #[error("`{url}` has no branch, tag or commit `{reference}`{known}\n  hint: {hint}")]
    RefNotFound {
        url: String,
        reference: String,
        /// `; it has main, dev, ...` or empty.
        known: String,
        hint: String,
    },
    #[error(
        "`{path}` is not empty and not a clone of `{url}`\n  hint: clone into an empty `path:`"
    )]
    DestinationInUse { path: String, url: String },
    #[error("commit `{reference}` is not in `{repo}`\n  hint: {hint}")]
    UnknownRevision {
        repo: String,
        reference: String,
        hint: String,
    },
    /// Bad input for a commit or a push: a path that matches nothing, an empty message, a
    /// detached `HEAD` with no branch named, ...
    #[error("{message}\n  hint: {hint}")]
    Invalid { message: String, hint: String },
    /// The remote ref has commits the pushed one does not contain (a non-fast-forward).
    #[error(
        "the push to `{url}` was rejected: `{reference}` there has commits that `{sha}` does not contain (non-fast-forward)\n  hint: {hint}"
    )]
    PushRejected {
        url: String,
        reference: String,
        sha: String,
        hint: String,
    },
    /// The server refused the update itself: a hook, branch protection, a read-only path.
    #[error("`{url}` refused the push to `{reference}`: {reason}{remote_says}\n  hint: {hint}")]
    PushRefused {
        url: String,
        reference: String,
        /// The status the server gave the ref (`pre-receive hook declined`).
        reason: String,
        /// `\n  the server said: …` with its messages, or empty.
        remote_says: String,
        hint: String,
    },
    /// The caller's grant check refused a remote.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("git: {context}: {message}")]
    Other { context: String, message: String },
}

impl GitError {
    pub(crate) fn other(context: impl Into<String>, e: impl std::fmt::Display) -> GitError {
        GitError::Other {
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// Whether trying again may help (network trouble), as opposed to a problem of input,
    /// credentials or trust.
    pub fn retryable(&self) -> bool {
        matches!(self, GitError::Unreachable { .. } | GitError::Other { .. })
    }
}

/// The git layer: config plus the process-wide libgit2 settings.
#[derive(Debug)]
pub struct Git {
    config: GitConfig,
}

impl Git {
    pub fn new(config: GitConfig) -> Git {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            // SAFETY: process-wide libgit2 options, set once before any other libgit2 call of
            // this crate; the values are plain integers.
            unsafe {
                let _ = git2::opts::set_server_connect_timeout_in_milliseconds(15_000);
                let _ = git2::opts::set_server_timeout_in_milliseconds(120_000);
            }
            // libgit2 re-hashes (SHA-1 with collision detection) every object it reads from
            // disk; git does not. The objects come from libgit2's own indexer, which named each
            // one by hashing it on arrival, and zlib checks their integrity on every read. In a
            // profile of a 5,000-file checkout that re-hashing was ~7% of all samples.
            git2::opts::strict_hash_verification(false);
        });
        Git { config }
    }

    pub fn config(&self) -> &GitConfig {
        &self.config
    }
}
