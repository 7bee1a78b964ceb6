//! The step cache: skip a step whose result is already known by replaying it.
//!
//! The scheduler calls [`StepCache::lookup`] when a unit is about to run (its needs finished,
//! its `with:` resolved) and [`StepCache::store`] after it succeeded. Nothing else of the
//! scheduler knows about caching.
//!
//! # Which steps are cached
//! 1. `cache: false`: never.
//! 2. A plugin that declares side effects (`push`, `build`, `cache`; the SDK's
//!    `Info::side_effects`): never; `cache: true` on it is a plan error (K209).
//! 3. `cache: true` or `cache: { inputs, outputs }`: always.
//! 4. Otherwise (automatic), only when replaying cannot be wrong: the plugin asks for no
//!    capability that reaches past the workspace (`network`, `git`, `buildkit`, `registry`,
//!    `cache`) and the step does not grant `workspace: write` (files it wrote would not come
//!    back on a hit: declare them in `cache.outputs`, which opts the step in).
//!
//! Like Bazel and Turborepo, only what the key covers is trusted; like Nx, a step that reaches
//! the network is not cached unless the user says so (a `clone` of a branch moves).
//!
//! # The key
//! sha256 over these parts, each hashed field by field (see [`kiln_cache::key`]):
//! `plugin` (the component's digest), `config` (the resolved `with:`, secret values masked),
//! `env` (names and values, secrets masked), `secrets` (the names the step lists), `upstream`
//! (the outputs of the steps its expressions read), `matrix` (the instance's values), `event`
//! (the triggering event: plugins may read it), `grants` (`workspace: write`, `allow.net`),
//! `outputs` (the `cache.outputs` globs) and `inputs` (path, type, executable bit and content
//! digest of every workspace file `cache.inputs` matches, every file of the workspace by
//! default, minus the step's own outputs and minus files matching the `cache.outputs` of steps
//! it does not need (directly or not) unless a step it needs declares them too: those are
//! another branch's results, and leaving them out keeps the key independent of which branch
//! happened to finish first). `kiln run --explain-cache` prints each part's digest.

mod key;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kiln_cache::files::{DigestMemo, Patterns, walk};
use kiln_cache::key::Key;
use kiln_cache::{Cache, CacheError, Saved, Source};
use kiln_host::{Caching, Capability};
use kiln_pipeline::{CacheMode, Step};
use serde::Serialize;
use serde_json::{Value, json};

use crate::mask::Masker;
use crate::plan::PlanPlugin;
use crate::run::{StepRun, StepState};

pub use key::step_key;

/// The step cache of one process: the store and the digests of workspace files seen so far.
#[derive(Debug)]
pub struct StepCache {
    cache: Arc<Cache>,
    memo: DigestMemo,
    /// Log every key and its parts (`kiln run --explain-cache`).
    pub explain: bool,
}

/// What the cache did for one step instance, as the run record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CacheRecord {
    pub status: CacheStatus,
    /// `sha256:…` of the step's key (absent when it is not cacheable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why it is not cacheable, or why a lookup or save did not work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A new entry was saved after the step ran.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub saved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Replayed from the cache; the plugin did not run.
    Hit,
    /// Cacheable, not found: the plugin ran.
    Miss,
    /// Not cacheable (see `reason`).
    Off,
}

/// Counts of a run, for the summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    /// New entries saved.
    pub saved: u64,
    /// Steps that are not cacheable.
    pub uncacheable: u64,
}

impl CacheCounts {
    /// Count the cache records of `steps`.
    pub fn of(steps: &[StepRun]) -> CacheCounts {
        let mut c = CacheCounts::default();
        for s in steps {
            let Some(r) = &s.cache else { continue };
            match r.status {
                CacheStatus::Hit => c.hits += 1,
                CacheStatus::Miss => c.misses += 1,
                CacheStatus::Off => c.uncacheable += 1,
            }
            c.saved += u64::from(r.saved);
        }
        c
    }
}

/// Whether a step may be cached, and if not, why.
pub fn decide(step: &Step, plugin: &PlanPlugin) -> Result<(), String> {
    let name = &plugin.info.name;
    if step.cache.mode == CacheMode::Off {
        return Err("`cache: false`".to_owned());
    }
    if plugin.info.caching == Caching::Never {
        return Err(format!("plugin `{name}` has side effects"));
    }
    if step.cache.mode == CacheMode::On {
        return Ok(());
    }
    let reaching = [
        Capability::Network,
        Capability::Git,
        Capability::Buildkit,
        Capability::Registry,
        Capability::Cache,
    ];
    if let Some(c) = reaching
        .iter()
        .find(|c| plugin.info.capabilities.contains(c))
    {
        return Err(format!(
            "plugin `{name}` uses `{}`, which reaches past the workspace; add `cache: true` if its result depends only on the key",
            c.as_str()
        ));
    }
    if step.allow.workspace_write.is_some() {
        return Err(
            "it may write to the workspace; list the files it writes in `cache.outputs` to cache it"
                .to_owned(),
        );
    }
    Ok(())
}

/// Everything that decides one unit's key, owned so it can move to a blocking thread.
pub struct UnitFacts {
    pub step: Step,
    pub plugin: PlanPlugin,
    pub config: Value,
    pub env: Vec<(String, String)>,
    pub upstream: Value,
    pub matrix: Option<Vec<(String, Value)>>,
    pub event: Value,
    pub workspace: PathBuf,
    pub masker: Arc<Masker>,
    /// `cache.outputs` of the steps this one needs, directly or not.
    pub ancestor_outputs: Vec<String>,
    /// `cache.outputs` of the other steps (another branch's results: left out of default inputs).
    pub foreign_outputs: Vec<String>,
}

/// The cache's view of a unit about to run.
pub struct Unit {
    /// The key, when the unit is cacheable and its key could be computed.
    key: Option<Key>,
    outputs: Vec<String>,
    workspace: PathBuf,
    pub record: CacheRecord,
    /// Outputs to replay on a hit.
    pub hit: Option<BTreeMap<String, Value>>,
    /// Lines for the step's log.
    pub log: Vec<String>,
}

fn store_key(key: &Key) -> String {
    format!("step/{}", key.digest.hex())
}

impl StepCache {
    pub fn new(cache: Arc<Cache>) -> StepCache {
        StepCache {
            cache,
            memo: DigestMemo::new(),
            explain: false,
        }
    }

    pub fn store_handle(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// Decide, compute the key, look it up, and on a hit restore the outputs' files.
    pub async fn lookup(self: &Arc<Self>, facts: UnitFacts) -> Unit {
        let this = self.clone();
        let workspace = facts.workspace.clone();
        let outputs: Vec<String> = facts
            .step
            .cache
            .outputs
            .iter()
            .map(|o| o.value.clone())
            .collect();
        let fallback = Unit {
            key: None,
            outputs: outputs.clone(),
            workspace,
            record: CacheRecord {
                status: CacheStatus::Off,
                key: None,
                reason: Some("the cache lookup did not finish".to_owned()),
                saved: false,
            },
            hit: None,
            log: Vec::new(),
        };
        tokio::task::spawn_blocking(move || this.lookup_blocking(facts))
            .await
            .unwrap_or(fallback)
    }

    fn lookup_blocking(&self, facts: UnitFacts) -> Unit {
        let outputs: Vec<String> = facts
            .step
            .cache
            .outputs
            .iter()
            .map(|o| o.value.clone())
            .collect();
        let mut unit = Unit {
            key: None,
            outputs,
            workspace: facts.workspace.clone(),
            record: CacheRecord {
                status: CacheStatus::Off,
                key: None,
                reason: None,
                saved: false,
            },
            hit: None,
            log: Vec::new(),
        };
        if let Err(why) = decide(&facts.step, &facts.plugin) {
            if self.explain {
                unit.log.push(format!("cache: not cacheable: {why}"));
            }
            unit.record.reason = Some(why);
            return unit;
        }
        let key = match step_key(&facts, &self.memo) {
            Ok(k) => k,
            Err(why) => {
                unit.log
                    .push(format!("cache: cannot compute the key: {why}"));
                unit.record.reason = Some(why);
                return unit;
            }
        };
        if self.explain {
            let parts: Vec<String> = key
                .parts
                .iter()
                .map(|(n, d)| format!("{n}={}", &d.hex()[..12]))
                .collect();
            unit.log
                .push(format!("cache: key {} ({})", key.digest, parts.join(" ")));
        }
        unit.record.key = Some(key.digest.to_string());
        unit.record.status = CacheStatus::Miss;
        let found = self.cache.find(&store_key(&key), &[]);
        unit.log
            .extend(found.notes.iter().map(|n| format!("cache: {n}")));
        if let Some((entry, source, _)) = found.hit {
            match self.cache.restore(&entry, &facts.workspace) {
                Ok(unpacked) => {
                    let outputs: BTreeMap<String, Value> = entry
                        .manifest
                        .meta
                        .get("outputs")
                        .and_then(Value::as_object)
                        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default();
                    let from = match source {
                        Source::Local => String::new(),
                        Source::Registry => " (from the cache registry)".to_owned(),
                    };
                    let files = match unpacked.entries {
                        0 => String::new(),
                        1 => " and 1 file".to_owned(),
                        n => format!(" and {n} files"),
                    };
                    unit.log.push(format!(
                        "cache hit {}{from}: restored {} outputs{files}",
                        short(&key),
                        outputs.len()
                    ));
                    unit.record.status = CacheStatus::Hit;
                    unit.hit = Some(outputs);
                }
                Err(CacheError::Corrupt(why)) => unit.log.push(format!(
                    "cache: the entry was corrupt and is removed ({why}); running the step"
                )),
                Err(e) => unit
                    .log
                    .push(format!("cache: cannot restore ({e}); running the step")),
            }
        } else if self.explain {
            unit.log.push(format!("cache miss {}", short(&key)));
        }
        unit.key = Some(key);
        unit
    }

    /// Save a succeeded unit's outputs and declared output files. Problems are log lines.
    pub async fn store(self: &Arc<Self>, unit: &mut Unit, outputs: &BTreeMap<String, Value>) {
        let Some(key) = unit.key.clone() else {
            return;
        };
        if unit.record.status != CacheStatus::Miss {
            return;
        }
        let this = self.clone();
        let patterns = unit.outputs.clone();
        let workspace = unit.workspace.clone();
        let meta = json!({ "outputs": outputs });
        let result = tokio::task::spawn_blocking(move || {
            let files = if patterns.is_empty() {
                Vec::new()
            } else {
                let p = Patterns::new(&patterns).map_err(|e| e.to_string())?;
                walk(&workspace, Some(&p))
                    .map_err(|e| format!("cannot list the outputs: {e}"))?
                    .into_iter()
                    .map(|f| f.rel)
                    .collect()
            };
            let source = if files.is_empty() {
                None
            } else {
                Some((workspace.as_path(), files.as_slice()))
            };
            this.cache
                .save(&store_key(&key), meta, source)
                .map_err(|e| e.to_string())
        })
        .await;
        match result {
            Ok(Ok((Saved::New(_), notes))) => {
                unit.record.saved = true;
                unit.log.extend(notes.into_iter().map(|n| format!("cache: {n}")));
            }
            Ok(Ok((Saved::Exists(_), _))) => {}
            Ok(Ok((Saved::TooLarge { size, max }, _))) => unit.log.push(format!(
                "cache: not saved: the entry would take {size} bytes, more than the limit of {max} (`KILN_CACHE_MAX_MB`)"
            )),
            Ok(Err(e)) => unit.log.push(format!("cache: not saved: {e}")),
            Err(e) => unit.log.push(format!("cache: not saved: {e}")),
        }
    }
}

fn short(key: &Key) -> String {
    format!("sha256:{}…", &key.digest.hex()[..12])
}

/// Mark `record` as replayed from the cache.
pub fn replay(record: &mut StepRun, outputs: BTreeMap<String, Value>) {
    record.state = StepState::Cached;
    record.outputs = outputs;
    record.error = None;
}
