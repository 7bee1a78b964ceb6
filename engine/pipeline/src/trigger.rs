//! Does an event start a pipeline? Matching of `on:` (branches, tags, paths, paths-ignore)
//! against the facts of a push or a pull request, GitHub Actions' rules:
//!
//! - Globs: `*` matches within one path segment (not `/`), `**` across segments, `?` one
//!   character, `[abc]` a class. A pattern starting with `!` excludes what it matches; patterns
//!   are read in order and the last one that matches decides.
//! - Push: with `branches:` only, tag pushes do not match (and the other way round with `tags:`
//!   only); with neither, every push matches. Path filters are not evaluated for tag pushes.
//! - Pull request: `branches:` match the target (base) branch; `tags:` never match.
//! - `paths:`: some changed file must match. `paths-ignore:`: not every changed file may match.
//!   When the changed files are unknown the path filters do not hold the pipeline back.

use globset::{GlobBuilder, GlobMatcher};

use crate::model::{EventFilter, Spanned, Triggers};

/// What happened, as the `on:` filters look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerEvent {
    /// A push of a branch (`refs/heads/…`) or a tag (`refs/tags/…`).
    Push {
        branch: Option<String>,
        tag: Option<String>,
        /// Changed files (`base...head`); `None` when unknown.
        changed: Option<Vec<String>>,
    },
    /// A pull (merge) request opened or updated.
    PullRequest {
        /// The branch it would merge into.
        base_branch: String,
        changed: Option<Vec<String>>,
    },
    /// A run asked for by a person or an API client.
    Manual,
}

/// Why a pipeline does or does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerMatch {
    Yes,
    /// Lowercase reason, e.g. "`on.push.branches` does not match branch `dev`".
    No(String),
}

impl TriggerMatch {
    pub fn is_match(&self) -> bool {
        matches!(self, TriggerMatch::Yes)
    }
}

/// Compile one `on:` glob (without its leading `!`); the error says why it is invalid.
pub fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// Whether `value` is selected by `patterns` (in order; `!` excludes; the last match decides).
/// An invalid pattern matches nothing (the parser already reported it).
pub fn select(patterns: &[Spanned<String>], value: &str) -> bool {
    let mut selected = false;
    for p in patterns {
        let (negated, glob) = match p.value.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.value.as_str()),
        };
        if let Ok(m) = compile_glob(glob)
            && m.is_match(value)
        {
            selected = !negated;
        }
    }
    selected
}

impl Triggers {
    /// Whether `event` starts the pipeline, and if not, why.
    pub fn matches(&self, event: &TriggerEvent) -> TriggerMatch {
        match event {
            TriggerEvent::Manual => {
                // A manual run of a pipeline is always allowed: it is what a person asked for.
                TriggerMatch::Yes
            }
            TriggerEvent::Push {
                branch,
                tag,
                changed,
            } => {
                let Some(filter) = &self.push else {
                    return TriggerMatch::No("it has no `on.push`".to_owned());
                };
                if let Some(tag) = tag {
                    if filter.tags.is_empty() {
                        if !filter.branches.is_empty() {
                            return TriggerMatch::No(format!(
                                "`on.push` lists only `branches`, and tag `{tag}` was pushed"
                            ));
                        }
                    } else if !select(&filter.tags, tag) {
                        return TriggerMatch::No(format!(
                            "`on.push.tags` does not match tag `{tag}`"
                        ));
                    }
                    // Path filters are not evaluated for tags.
                    return TriggerMatch::Yes;
                }
                let branch = branch.as_deref().unwrap_or_default();
                if filter.branches.is_empty() {
                    if !filter.tags.is_empty() {
                        return TriggerMatch::No(format!(
                            "`on.push` lists only `tags`, and branch `{branch}` was pushed"
                        ));
                    }
                } else if !select(&filter.branches, branch) {
                    return TriggerMatch::No(format!(
                        "`on.push.branches` does not match branch `{branch}`"
                    ));
                }
                paths_match(filter, changed.as_deref(), "on.push")
            }
            TriggerEvent::PullRequest {
                base_branch,
                changed,
            } => {
                let Some(filter) = &self.pull_request else {
                    return TriggerMatch::No("it has no `on.pull_request`".to_owned());
                };
                if !filter.branches.is_empty() && !select(&filter.branches, base_branch) {
                    return TriggerMatch::No(format!(
                        "`on.pull_request.branches` does not match target branch `{base_branch}`"
                    ));
                }
                paths_match(filter, changed.as_deref(), "on.pull_request")
            }
        }
    }
}

fn paths_match(filter: &EventFilter, changed: Option<&[String]>, what: &str) -> TriggerMatch {
    let Some(changed) = changed else {
        return TriggerMatch::Yes;
    };
    if !filter.paths.is_empty() && !changed.iter().any(|f| select(&filter.paths, f)) {
        return TriggerMatch::No(format!(
            "no changed file matches `{what}.paths` ({} changed)",
            changed.len()
        ));
    }
    if !filter.paths_ignore.is_empty()
        && !changed.is_empty()
        && changed.iter().all(|f| select(&filter.paths_ignore, f))
    {
        return TriggerMatch::No(format!("every changed file matches `{what}.paths-ignore`"));
    }
    TriggerMatch::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(yaml: &str) -> Triggers {
        let text = format!("name: t\non:\n{yaml}\nsteps:\n  - id: a\n    uses: echo\n");
        let (p, d) = crate::parse("t.yaml", &text);
        assert!(d.is_empty(), "{}", crate::render(&d));
        p.expect("pipeline").on
    }

    fn push(branch: &str, changed: &[&str]) -> TriggerEvent {
        TriggerEvent::Push {
            branch: Some(branch.to_owned()),
            tag: None,
            changed: Some(changed.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn tag(tag: &str) -> TriggerEvent {
        TriggerEvent::Push {
            branch: None,
            tag: Some(tag.to_owned()),
            changed: None,
        }
    }

    #[test]
    fn branch_globs_match_within_a_segment_and_double_star_across() {
        let t = on("  push: { branches: [main, 'release/*', 'feature/**'] }");
        assert!(t.matches(&push("main", &[])).is_match());
        assert!(t.matches(&push("release/1.2", &[])).is_match());
        assert!(!t.matches(&push("release/1.2/hotfix", &[])).is_match());
        assert!(t.matches(&push("feature/a/b", &[])).is_match());
        assert_eq!(
            t.matches(&push("dev", &[])),
            TriggerMatch::No("`on.push.branches` does not match branch `dev`".into())
        );
    }

    #[test]
    fn a_later_negated_pattern_excludes_and_the_last_match_wins() {
        let t = on("  push: { branches: ['release/**', '!release/**-alpha', 'release/x-alpha'] }");
        assert!(t.matches(&push("release/1", &[])).is_match());
        assert!(!t.matches(&push("release/2-alpha", &[])).is_match());
        assert!(t.matches(&push("release/x-alpha", &[])).is_match());
    }

    #[test]
    fn branches_only_filters_skip_tag_pushes_and_tags_only_skip_branches() {
        let t = on("  push: { branches: [main] }");
        assert!(!t.matches(&tag("v1")).is_match());
        let t = on("  push: { tags: ['v*'] }");
        assert!(t.matches(&tag("v1.0")).is_match());
        assert!(!t.matches(&tag("x1")).is_match());
        assert!(!t.matches(&push("main", &[])).is_match());
        let t = on("  push: {}");
        assert!(t.matches(&tag("anything")).is_match());
        assert!(t.matches(&push("any", &[])).is_match());
    }

    #[test]
    fn paths_need_one_changed_file_and_paths_ignore_needs_one_outside() {
        let t = on("  push: { paths: ['apps/**', '*.md'] }");
        assert!(
            t.matches(&push("main", &["apps/web/src/main.ts"]))
                .is_match()
        );
        assert!(t.matches(&push("main", &["README.md"])).is_match());
        assert!(
            !t.matches(&push("main", &["docs/x.md", "libs/a.ts"]))
                .is_match()
        );
        let t = on("  push: { paths-ignore: ['docs/**'] }");
        assert!(
            !t.matches(&push("main", &["docs/a.md", "docs/b/c.md"]))
                .is_match()
        );
        assert!(
            t.matches(&push("main", &["docs/a.md", "src/x.rs"]))
                .is_match()
        );
        // Unknown changes do not hold the pipeline back.
        let unknown = TriggerEvent::Push {
            branch: Some("main".into()),
            tag: None,
            changed: None,
        };
        assert!(t.matches(&unknown).is_match());
        // Tags ignore path filters.
        let t = on("  push: { tags: ['v*'], paths: ['apps/**'] }");
        assert!(t.matches(&tag("v2")).is_match());
    }

    #[test]
    fn pull_request_branches_match_the_target_branch() {
        let t = on("  pull_request: { branches: [main], paths: ['src/**'] }");
        let pr = |base: &str, files: &[&str]| TriggerEvent::PullRequest {
            base_branch: base.to_owned(),
            changed: Some(files.iter().map(|s| s.to_string()).collect()),
        };
        assert!(t.matches(&pr("main", &["src/a.rs"])).is_match());
        assert!(!t.matches(&pr("dev", &["src/a.rs"])).is_match());
        assert!(!t.matches(&pr("main", &["README.md"])).is_match());
        assert!(!t.matches(&push("main", &["src/a.rs"])).is_match());
    }

    #[test]
    fn a_pipeline_without_on_push_does_not_start_on_a_push() {
        let t = on("  manual: {}");
        assert_eq!(
            t.matches(&push("main", &[])),
            TriggerMatch::No("it has no `on.push`".into())
        );
        assert!(t.matches(&TriggerEvent::Manual).is_match());
    }

    #[test]
    fn concurrency_names_a_group_template_and_may_cancel_older_runs() {
        let parse = |c: &str| {
            crate::parse(
                "t.yaml",
                &format!("name: t\nconcurrency: {c}\nsteps:\n  - id: a\n    uses: echo\n"),
            )
        };
        let (p, d) = parse("\"deploy-${{ git.branch }}\"");
        assert!(d.is_empty(), "{}", crate::render(&d));
        let c = p.and_then(|p| p.concurrency).expect("concurrency");
        assert!(!c.cancel_in_progress);
        let (p, d) = parse("{ group: deploy, cancel-in-progress: true }");
        assert!(d.is_empty(), "{}", crate::render(&d));
        assert!(p.and_then(|p| p.concurrency).expect("c").cancel_in_progress);
        let (_, d) = parse("{ cancel-in-progress: true }");
        assert_eq!(d[0].code, "K004");
        let (_, d) = parse("{ group: x, cancel: true }");
        assert_eq!(d[0].code, "K003");
        let (_, d) = parse("\"${{ steps.a.outputs.x }}\"");
        assert_eq!(d[0].code, "K105", "{}", crate::render(&d));
    }
}
