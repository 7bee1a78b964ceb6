//! Webhook events -> runs: normalise the provider's payload, fetch the repository at the
//! event's commit, read `.kiln/*.yaml` there, and queue a run of every pipeline whose `on:`
//! matches (branches, tags, changed paths). The runs and the event's outcome are stored in one
//! transaction, so a crash in between repeats the work instead of losing or doubling runs.

use std::sync::Arc;
use std::time::Duration;

use kiln_pipeline::{TriggerEvent, TriggerMatch};
use serde_json::{Value, json};

use super::Worker;
use crate::store::{self, EventRow, NewRun, now_ms};

/// Attempts to process one event before it is marked failed (the repository may be down).
const EVENT_ATTEMPTS: u32 = 5;

/// What a push or pull/merge request means, whatever the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// `push` or `pull_request`.
    pub kind: &'static str,
    pub repo_url: String,
    /// The commit to build.
    pub sha: String,
    /// The full ref: `refs/heads/main`, `refs/tags/v1`, `refs/pull/7/head`.
    pub git_ref: String,
    /// For a push: the commit before (absent or all zeros for a new branch).
    pub before: Option<String>,
    /// For a pull request: the target branch and (when the payload has it) its commit.
    pub base_branch: Option<String>,
    pub base_sha: Option<String>,
    /// A deleted branch or tag: nothing to build.
    pub deleted: bool,
}

fn s(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn zeros(sha: &str) -> bool {
    sha.chars().all(|c| c == '0')
}

/// Read a stored event's payload. `Err` says what is missing (the event is then failed).
pub fn normalize(provider: &str, kind: &str, p: &Value) -> Result<Normalized, String> {
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| format!("the {provider} `{kind}` payload has no `{what}`"))
    };
    match (provider, kind) {
        ("github", "push") => {
            let after = need(s(p, "/after"), "after")?;
            Ok(Normalized {
                kind: "push",
                repo_url: need(s(p, "/repository/clone_url"), "repository.clone_url")?,
                git_ref: need(s(p, "/ref"), "ref")?,
                before: s(p, "/before").filter(|b| !zeros(b)),
                deleted: p.get("deleted").and_then(Value::as_bool).unwrap_or(false)
                    || zeros(&after),
                sha: after,
                base_branch: None,
                base_sha: None,
            })
        }
        ("github", "pull_request") => {
            let number = p
                .pointer("/pull_request/number")
                .or_else(|| p.get("number"))
                .and_then(Value::as_u64)
                .ok_or_else(|| "the github `pull_request` payload has no `number`".to_owned())?;
            Ok(Normalized {
                kind: "pull_request",
                repo_url: need(s(p, "/repository/clone_url"), "repository.clone_url")?,
                sha: need(s(p, "/pull_request/head/sha"), "pull_request.head.sha")?,
                git_ref: format!("refs/pull/{number}/head"),
                before: None,
                base_branch: Some(need(
                    s(p, "/pull_request/base/ref"),
                    "pull_request.base.ref",
                )?),
                base_sha: s(p, "/pull_request/base/sha"),
                deleted: false,
            })
        }
        ("gitlab", "push") | ("gitlab", "tag_push") => {
            let after = need(s(p, "/checkout_sha").or_else(|| s(p, "/after")), "after")?;
            Ok(Normalized {
                kind: "push",
                repo_url: need(
                    s(p, "/project/git_http_url").or_else(|| s(p, "/repository/git_http_url")),
                    "project.git_http_url",
                )?,
                git_ref: need(s(p, "/ref"), "ref")?,
                before: s(p, "/before").filter(|b| !zeros(b)),
                deleted: zeros(&after),
                sha: after,
                base_branch: None,
                base_sha: None,
            })
        }
        ("gitlab", "merge_request") => {
            let iid = p
                .pointer("/object_attributes/iid")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    "the gitlab `merge_request` payload has no `object_attributes.iid`".to_owned()
                })?;
            Ok(Normalized {
                kind: "pull_request",
                repo_url: need(
                    s(p, "/object_attributes/target/git_http_url")
                        .or_else(|| s(p, "/project/git_http_url")),
                    "object_attributes.target.git_http_url",
                )?,
                sha: need(
                    s(p, "/object_attributes/last_commit/id"),
                    "object_attributes.last_commit.id",
                )?,
                git_ref: format!("refs/merge-requests/{iid}/head"),
                before: None,
                base_branch: Some(need(
                    s(p, "/object_attributes/target_branch"),
                    "object_attributes.target_branch",
                )?),
                base_sha: None,
                deleted: false,
            })
        }
        _ => Err(format!(
            "`{provider}` events of kind `{kind}` are not handled"
        )),
    }
}

impl Worker {
    pub(super) async fn event_loop(self: Arc<Self>) {
        loop {
            loop {
                let (worker, lease) = (self.id.clone(), self.lease_ms());
                match self
                    .store
                    .write(move |c| store::claim_event(c, &worker, now_ms(), lease))
                    .await
                {
                    Ok(Some(event)) => self.process(event).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!("cannot claim a webhook event: {e}");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.wake_events.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn process(self: &Arc<Self>, event: EventRow) {
        let id = event.id.clone();
        match self.runs_for(&event).await {
            Ok((runs, skipped)) => {
                let n = runs.len();
                let eid = id.clone();
                match self
                    .store
                    .write(move |c| store::finish_event(c, &eid, &runs, &skipped, now_ms()))
                    .await
                {
                    Ok(()) => {
                        tracing::info!(event = %id, runs = n, "webhook event processed");
                        self.wake_runs.notify_one();
                    }
                    Err(e) => tracing::error!(event = %id, "cannot store the event's runs: {e}"),
                }
            }
            Err((error, retryable)) => {
                let retry_at = (retryable && event.attempts < EVENT_ATTEMPTS)
                    .then(|| now_ms() + 2000 * (1 << event.attempts.min(10)));
                tracing::warn!(event = %id, "webhook event failed: {error}");
                let eid = id.clone();
                if let Err(e) = self
                    .store
                    .write(move |c| store::fail_event(c, &eid, &error, retry_at, now_ms()))
                    .await
                {
                    tracing::error!(event = %id, "cannot record the event's failure: {e}");
                }
            }
        }
    }

    /// The runs an event starts, and the pipelines it does not start with the reason.
    async fn runs_for(&self, event: &EventRow) -> Result<(Vec<NewRun>, Value), (String, bool)> {
        let n = normalize(&event.provider, &event.kind, &event.payload).map_err(|e| (e, false))?;
        if n.deleted {
            return Ok((
                Vec::new(),
                json!([{ "reason": format!("`{}` was deleted: nothing to build", n.git_ref) }]),
            ));
        }
        if let Ok(url) = kiln_git::RemoteUrl::parse(&n.repo_url)
            && url.is_local()
            && !self.config.allow_local_repos
        {
            return Err((
                format!(
                    "the event's repository `{}` is local; hint: enable `runs.allow_local_repos` only on a trusted server",
                    n.repo_url
                ),
                false,
            ));
        }
        let scratch = self
            .config
            .data_dir
            .join("scratch")
            .join(format!("event-{}-{}", event.id, event.attempts));
        let _cleanup = Remove(scratch.clone());
        // An event's fetch has no run log to write to: progress goes to the server's log.
        let event_id = event.id.clone();
        let progress = move |line: &str| tracing::debug!(event = %event_id, "{line}");
        let commit = super::run::fetch(
            &self.git,
            &n.repo_url,
            Some(n.sha.clone()),
            &scratch,
            progress,
        )
        .await?;
        let git = self.git.clone();
        let dir = scratch.clone();
        let facts = n.clone();
        let (files, changed) =
            tokio::task::spawn_blocking(move || read_pipelines(&git, &dir, &commit.sha, &facts))
                .await
                .map_err(|e| (format!("the read task ended abnormally: {e}"), true))??;

        let trigger = match n.kind {
            "push" => TriggerEvent::Push {
                branch: n.git_ref.strip_prefix("refs/heads/").map(str::to_owned),
                tag: n.git_ref.strip_prefix("refs/tags/").map(str::to_owned),
                changed: changed.clone(),
            },
            _ => TriggerEvent::PullRequest {
                base_branch: n.base_branch.clone().unwrap_or_default(),
                changed: changed.clone(),
            },
        };
        let mut runs = Vec::new();
        let mut skipped = Vec::new();
        for (path, text) in files {
            let (pipeline, diags) = kiln_pipeline::parse(&path, &text);
            let decision = match &pipeline {
                Some(p) => p.on.matches(&trigger),
                // Unreadable: start it anyway so the diagnostics show up as a failed run.
                None => TriggerMatch::Yes,
            };
            match decision {
                TriggerMatch::Yes => runs.push(NewRun {
                    id: uuid::Uuid::now_v7().to_string(),
                    trigger: event.provider.clone(),
                    pipeline: pipeline
                        .as_ref()
                        .map(|p| p.name.value.clone())
                        .unwrap_or_default(),
                    pipeline_path: Some(path.clone()),
                    pipeline_yaml: Some(text),
                    repo_url: Some(n.repo_url.clone()),
                    git_ref: Some(n.git_ref.clone()),
                    sha: Some(n.sha.clone()),
                    inputs: json!({}),
                    event: event.payload.clone(),
                    max_attempts: self.config.max_attempts,
                    event_id: Some(event.id.clone()),
                    ..NewRun::default()
                }),
                TriggerMatch::No(reason) => {
                    let _ = diags;
                    skipped.push(json!({ "pipeline": path, "reason": reason }));
                }
            }
        }
        if runs.is_empty() && skipped.is_empty() {
            skipped.push(json!({ "reason": format!("`{}` has no `.kiln/*.yaml` at `{}`", n.repo_url, n.sha) }));
        }
        Ok((runs, Value::Array(skipped)))
    }
}

struct Remove(std::path::PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The `.kiln/*.yaml` (and `*.yml`) files at `sha`, sorted, and the changed files the path
/// filters look at (`None` when unknown: a new branch, a tag).
#[allow(clippy::type_complexity)]
fn read_pipelines(
    git: &kiln_git::Git,
    dir: &std::path::Path,
    sha: &str,
    n: &Normalized,
) -> Result<(Vec<(String, String)>, Option<Vec<String>>), (String, bool)> {
    let files = git
        .list_files(dir, sha)
        .map_err(|e| (e.to_string(), e.retryable()))?;
    let mut out = Vec::new();
    for f in files {
        let Some(name) = f.strip_prefix(".kiln/") else {
            continue;
        };
        if name.contains('/') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let bytes = git
            .read_file(dir, sha, &f)
            .map_err(|e| (e.to_string(), e.retryable()))?
            .unwrap_or_default();
        out.push((f.clone(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    let base = match n.kind {
        "push" if !n.git_ref.starts_with("refs/tags/") => n.before.clone(),
        "pull_request" => n.base_sha.clone().or_else(|| {
            n.base_branch
                .as_ref()
                .map(|b| format!("refs/remotes/origin/{b}"))
        }),
        _ => None,
    };
    let changed = match base {
        Some(base) => {
            let cancel = kiln_git::Cancel::default();
            let progress = |_: &str| {};
            let access = kiln_git::Access {
                remote: None,
                authorize: &|_| Ok(()),
                progress: &progress,
                cancel: &cancel,
            };
            match git.changed_files(dir, &base, sha, &access) {
                Ok(changes) => Some(
                    changes
                        .into_iter()
                        .flat_map(|c| std::iter::once(c.path).chain(c.old_path))
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(
                        "cannot list the files changed since `{base}`: {e}; path filters are not applied"
                    );
                    None
                }
            }
        }
        None => None,
    };
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_github_push_names_the_commit_ref_and_repository() {
        let p = json!({
            "ref": "refs/heads/main",
            "before": "0000000000000000000000000000000000000000",
            "after": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "deleted": false,
            "repository": { "clone_url": "https://github.com/o/r.git" }
        });
        let n = normalize("github", "push", &p).expect("push");
        assert_eq!(n.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(n.before, None, "all zeros: a new branch");
        assert!(!n.deleted);
    }

    #[test]
    fn a_github_pull_request_builds_its_head_against_its_base_branch() {
        let p = json!({
            "number": 2,
            "pull_request": { "number": 2, "head": { "sha": "abc" }, "base": { "ref": "main", "sha": "def" } },
            "repository": { "clone_url": "https://github.com/o/r.git" }
        });
        let n = normalize("github", "pull_request", &p).expect("pr");
        assert_eq!(n.git_ref, "refs/pull/2/head");
        assert_eq!(n.base_branch.as_deref(), Some("main"));
        assert_eq!(n.base_sha.as_deref(), Some("def"));
    }

    #[test]
    fn a_payload_without_its_commit_is_refused_with_what_is_missing() {
        let err =
            normalize("github", "push", &json!({ "ref": "refs/heads/x" })).expect_err("no after");
        assert!(err.contains("`after`"), "{err}");
    }

    #[test]
    fn a_gitlab_merge_request_targets_its_branch() {
        let p = json!({
            "object_attributes": {
                "iid": 5, "target_branch": "main", "last_commit": { "id": "abc" },
                "target": { "git_http_url": "https://gitlab.example.com/g/p.git" }
            }
        });
        let n = normalize("gitlab", "merge_request", &p).expect("mr");
        assert_eq!(n.kind, "pull_request");
        assert_eq!(n.git_ref, "refs/merge-requests/5/head");
    }
}
