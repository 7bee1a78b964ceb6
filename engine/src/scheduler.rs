//! The scheduler: runs a Plan on tokio. A step starts the moment its own needs have finished
//! (not level by level); when several are ready, the one written first starts first.
//!
//! Lifecycle of a node: waiting (needs unfinished) -> ready -> either skipped (a need did not
//! succeed, `if:` is false, the run already failed or was cancelled) or expanded into units (one,
//! or one per combination of a dynamic matrix) -> each unit queued for a job slot -> running
//! (attempts with backoff) -> finished. A node finishes when all its units have; its dependents
//! then count down.
//!
//! Fail-fast (the default): the first failure that is not `continue-on-error` cancels running
//! units and nothing new starts, except steps whose `if:` calls a status function such as
//! `failure()` or `always()`. Cancellation (Ctrl-C) cancels running units and starts nothing.
//! Cancelling a unit drops its plugin call, which stops the guest at its next epoch tick.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_expr::{Scope, Status, eval_json, to_display_string, truthy};
use kiln_host::{
    GUEST_WORKSPACE, Grants, Invocation, LogSink, LogStream, Plugin, StepFailure, StepOutcome,
};
use kiln_pipeline::{Axis, Step};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::mask::Masker;
use crate::plan::{Instance, Plan, cartesian, instance_id};
use crate::run::{Event, Run, RunState, StepRun, StepState, now_rfc3339};

mod reuse;
pub use reuse::PreviousResults;

/// Timeout of a step that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Most units a dynamic matrix may expand to.
pub const MAX_DYNAMIC_INSTANCES: usize = 256;

/// Runs one step invocation on plugin `plugin` (an index into `Plan::plugins`).
pub trait Executor: Send + Sync + 'static {
    fn run(
        &self,
        plugin: usize,
        invocation: Invocation,
    ) -> impl Future<Output = StepOutcome> + Send;
}

/// The real executor: the loaded wasmtime plugins.
pub struct HostExecutor {
    pub plugins: Vec<Arc<Plugin>>,
}

impl Executor for HostExecutor {
    async fn run(&self, plugin: usize, invocation: Invocation) -> StepOutcome {
        match self.plugins.get(plugin) {
            Some(p) => p.run(invocation).await,
            None => StepOutcome {
                outputs: BTreeMap::new(),
                result: Err(StepFailure::Host(format!(
                    "plan names plugin #{plugin}, which is not loaded"
                ))),
            },
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_id: String,
    /// Units running at once (at least 1).
    pub jobs: usize,
    pub fail_fast: bool,
    /// Host directory shared by the steps, preopened as `/workspace`.
    pub workspace: PathBuf,
    /// The triggering event (`event` in expressions).
    pub event: Value,
    /// Commit facts (`git` in expressions).
    pub git: Value,
    /// Secret values by name; a step sees only the ones its `secrets:` lists.
    pub secrets: BTreeMap<String, String>,
    /// Memory cap of one step; `None` for the host default.
    pub memory_limit: Option<u64>,
    /// Results of an earlier run of the same plan to take over where nothing upstream changed
    /// (`kiln serve`'s retry of a failed run); see [`reuse`].
    pub previous: Option<Arc<PreviousResults>>,
    /// The step cache; `None` runs every step.
    pub cache: Option<Arc<crate::cache::StepCache>>,
    /// Configuration variables (`vars` in expressions): deployment settings that are not
    /// secret, such as a registry's `host:port` (`kiln serve`'s `vars:`, `kiln run --var`).
    pub vars: BTreeMap<String, String>,
}

/// Run `plan` to the end (or until `cancel`), sending events as things happen. Returns the
/// finished run record.
pub async fn execute<E: Executor>(
    plan: Arc<Plan>,
    executor: Arc<E>,
    options: RunOptions,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Run {
    Scheduler::new(plan, executor, options, events)
        .run(cancel)
        .await
}

/// Outputs of one unit.
type Outputs = BTreeMap<String, Value>;

/// Outcome of a finished node, as its dependents see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Skipped,
}

struct NodeState {
    waiting_on: usize,
    units_total: usize,
    units_left: usize,
    units_skipped: usize,
    failed: bool,
    outcome: Option<Outcome>,
}

/// One runnable instance of a node.
struct Unit {
    node: NodeIndex,
    record: usize,
    matrix: Option<Vec<(String, Value)>>,
}

struct UnitResult {
    unit: usize,
    record: StepRun,
}

struct Scheduler<E> {
    plan: Arc<Plan>,
    executor: Arc<E>,
    options: RunOptions,
    events: UnboundedSender<Event>,
    masker: Arc<Masker>,
    /// Pipeline `env:` resolved once.
    env: Map<String, Value>,
    nodes: Vec<NodeState>,
    units: Vec<Unit>,
    /// Record index -> sort key (node index, unit number).
    records: Vec<((usize, usize), StepRun)>,
    ready: BTreeSet<NodeIndex>,
    /// Units waiting for a job slot: (node index, unit number, unit id), in pipeline order.
    queued: BTreeSet<(usize, usize, usize)>,
    /// Outputs by step index: one entry per finished unit, in unit order.
    outputs: BTreeMap<usize, Vec<(usize, Outputs)>>,
    failed_step: Option<String>,
    cancelled: bool,
    reuse: reuse::Reuse,
}

impl<E: Executor> Scheduler<E> {
    fn new(
        plan: Arc<Plan>,
        executor: Arc<E>,
        options: RunOptions,
        events: UnboundedSender<Event>,
    ) -> Self {
        let masker = Arc::new(Masker::new(options.secrets.values().map(String::as_str)));
        let nodes = plan
            .graph
            .node_indices()
            .map(|i| NodeState {
                waiting_on: plan
                    .graph
                    .neighbors_directed(i, Direction::Incoming)
                    .count(),
                units_total: 0,
                units_left: 0,
                units_skipped: 0,
                failed: false,
                outcome: None,
            })
            .collect();
        let reuse = reuse::Reuse::new(options.previous.clone(), plan.graph.node_count());
        let mut s = Scheduler {
            reuse,
            plan,
            executor,
            options,
            events,
            masker,
            env: Map::new(),
            nodes,
            units: Vec::new(),
            records: Vec::new(),
            ready: BTreeSet::new(),
            queued: BTreeSet::new(),
            outputs: BTreeMap::new(),
            failed_step: None,
            cancelled: false,
        };
        s.env = s.resolve_pipeline_env();
        s
    }

    async fn run(mut self, cancel: CancellationToken) -> Run {
        let started_at = now_rfc3339();
        let clock = Instant::now();
        for i in self.plan.graph.node_indices() {
            if self.nodes[i.index()].waiting_on == 0 {
                self.ready.insert(i);
            }
        }
        let mut running: JoinSet<UnitResult> = JoinSet::new();
        let mut task_unit: HashMap<tokio::task::Id, usize> = HashMap::new();
        let jobs = self.options.jobs.max(1);
        loop {
            self.process_ready();
            self.drop_queued_after_failure_or_cancel();
            while running.len() < jobs && !self.cancelled {
                let Some((_, _, unit)) = self.queued.pop_first() else {
                    break;
                };
                let id = self.records[self.units[unit].record].1.id.clone();
                let _ = self.events.send(Event::StepStarted { id, attempt: 1 });
                let fut = self.start_unit(unit);
                let handle = running.spawn(fut);
                task_unit.insert(handle.id(), unit);
            }
            if running.is_empty() {
                if self.queued.is_empty() && self.ready.is_empty() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled(), if !self.cancelled => {
                    self.cancelled = true;
                    running.abort_all();
                }
                joined = running.join_next_with_id() => match joined {
                    Some(Ok((id, result))) => {
                        task_unit.remove(&id);
                        self.finish_unit(result.unit, result.record);
                        let failed_now = self.failed_step.is_some();
                        if failed_now && self.options.fail_fast {
                            running.abort_all();
                        }
                    }
                    Some(Err(e)) => {
                        let Some(unit) = task_unit.remove(&e.id()) else { continue };
                        let reason = if self.cancelled {
                            "the run was cancelled".to_owned()
                        } else if let Some(f) = &self.failed_step {
                            format!("step `{f}` failed (fail-fast)")
                        } else {
                            format!("the step's task ended abnormally: {e}")
                        };
                        let mut record = self.records[self.units[unit].record].1.clone();
                        record.state = if e.is_cancelled() { StepState::Cancelled } else { StepState::Failed };
                        if e.is_cancelled() {
                            record.reason = Some(reason);
                        } else {
                            record.error = Some(reason);
                        }
                        self.finish_unit(unit, record);
                    }
                    None => {}
                }
            }
        }
        // Anything still queued never started.
        let state = if self.cancelled {
            RunState::Cancelled
        } else if self.failed_step.is_some() {
            RunState::Failed
        } else {
            RunState::Succeeded
        };
        self.records.sort_by_key(|(key, _)| *key);
        let pipeline = &self.plan.pipeline;
        let steps: Vec<StepRun> = self.records.into_iter().map(|(_, r)| r).collect();
        let run = Run {
            id: self.options.run_id.clone(),
            pipeline: pipeline.name.value.clone(),
            file: pipeline.file.path.clone(),
            state,
            started_at,
            duration_ms: millis(clock.elapsed()),
            workspace: self.options.workspace.display().to_string(),
            cache: crate::cache::CacheCounts::of(&steps),
            steps,
        };
        let _ = self.events.send(Event::RunFinished(Box::new(run.clone())));
        run
    }

    /// After a cancel nothing queued starts; after a fail-fast failure only units whose `if:`
    /// calls a status function still do. The others end skipped, with the reason.
    fn drop_queued_after_failure_or_cancel(&mut self) {
        let reason = if self.cancelled {
            "the run was cancelled".to_owned()
        } else if let (true, Some(failed)) = (self.options.fail_fast, &self.failed_step) {
            format!("step `{failed}` failed (fail-fast)")
        } else {
            return;
        };
        let dropped: Vec<(usize, usize, usize)> = self
            .queued
            .iter()
            .filter(|(_, _, unit)| {
                let status_aware = self
                    .step(self.units[*unit].node)
                    .condition
                    .as_ref()
                    .is_some_and(|c| c.value.uses_status_function());
                self.cancelled || !status_aware
            })
            .copied()
            .collect();
        for key in dropped {
            self.queued.remove(&key);
            let unit = key.2;
            let mut record = self.records[self.units[unit].record].1.clone();
            record.state = StepState::Skipped;
            record.reason = Some(reason.clone());
            self.finish_unit(unit, record);
        }
    }

    fn step(&self, node: NodeIndex) -> &Step {
        &self.plan.pipeline.steps[self.plan.graph[node].step]
    }

    /// Decide every ready node: skip it, or expand it into queued units.
    fn process_ready(&mut self) {
        while let Some(node) = self.ready.pop_first() {
            let step = self.step(node).clone();
            let needs_ok = self
                .plan
                .graph
                .neighbors_directed(node, Direction::Incoming)
                .all(|n| self.nodes[n.index()].outcome == Some(Outcome::Success));
            let status_aware = step
                .condition
                .as_ref()
                .is_some_and(|c| c.value.uses_status_function());
            let skip_reason = if self.cancelled {
                Some("the run was cancelled".to_owned())
            } else if !status_aware && !needs_ok {
                Some("a step it needs did not succeed".to_owned())
            } else if !status_aware && self.options.fail_fast && self.failed_step.is_some() {
                Some(format!(
                    "step `{}` failed (fail-fast)",
                    self.failed_step.as_deref().unwrap_or_default()
                ))
            } else {
                None
            };
            if let Some(reason) = skip_reason {
                self.skip_node(node, reason);
                continue;
            }
            let combos = match self.plan.graph[node].instance.clone() {
                Instance::Single => vec![None],
                Instance::Static(values) => vec![Some(values)],
                Instance::Dynamic => match self.expand_dynamic(node, &step) {
                    Ok(c) if c.is_empty() => {
                        self.skip_node(node, "its matrix is empty".to_owned());
                        continue;
                    }
                    Ok(c) => c.into_iter().map(Some).collect(),
                    Err(message) => {
                        self.reuse.ran(node);
                        let mut record =
                            StepRun::new(step.id.value.clone(), step.id.value.clone(), None);
                        record.state = StepState::Failed;
                        record.error = Some(self.masker.mask(&message));
                        self.add_finished_node(
                            node,
                            record,
                            Outcome::Failure,
                            step.continue_on_error,
                        );
                        continue;
                    }
                },
            };
            let status = Status {
                failed: !needs_ok || self.failed_step.is_some(),
                cancelled: self.cancelled,
            };
            let count = combos.len();
            self.nodes[node.index()].units_left = count;
            self.nodes[node.index()].units_total = count;
            for (n, combo) in combos.into_iter().enumerate() {
                let id = match (&combo, &self.plan.graph[node].instance) {
                    (Some(values), Instance::Dynamic) => instance_id(&step.id.value, values),
                    _ => self.plan.graph[node].id.clone(),
                };
                let matrix_map = combo
                    .as_ref()
                    .map(|v| v.iter().cloned().collect::<BTreeMap<_, _>>());
                let record = StepRun::new(id, step.id.value.clone(), matrix_map);
                self.records.push(((node.index(), n), record));
                let unit = self.units.len();
                self.units.push(Unit {
                    node,
                    record: self.records.len() - 1,
                    matrix: combo,
                });
                let instance = &self.records[self.units[unit].record].1.id;
                if let Some(previous) = self.reuse.take(&self.plan.graph, node, instance) {
                    self.finish_unit(unit, previous);
                    continue;
                }
                // `if:` is decided per unit: it may read `matrix`.
                match self.condition_holds(unit, &step, status) {
                    Ok(true) => {
                        self.reuse.ran(node);
                        self.queued.insert((node.index(), n, unit));
                    }
                    Ok(false) => {
                        let mut record = self.records[self.units[unit].record].1.clone();
                        record.state = StepState::Skipped;
                        record.reason = Some("its `if:` condition is false".to_owned());
                        self.finish_unit(unit, record);
                    }
                    Err(message) => {
                        self.reuse.ran(node);
                        let mut record = self.records[self.units[unit].record].1.clone();
                        record.state = StepState::Failed;
                        record.error = Some(
                            self.masker
                                .mask(&format!("cannot evaluate `if:`: {message}")),
                        );
                        self.finish_unit(unit, record);
                    }
                }
            }
        }
    }

    fn skip_node(&mut self, node: NodeIndex, reason: String) {
        let step = self.step(node);
        let id = match self.plan.graph[node].instance {
            Instance::Dynamic => step.id.value.clone(),
            _ => self.plan.graph[node].id.clone(),
        };
        let matrix = match &self.plan.graph[node].instance {
            Instance::Static(values) => Some(values.iter().cloned().collect()),
            _ => None,
        };
        let mut record = StepRun::new(id, step.id.value.clone(), matrix);
        record.state = StepState::Skipped;
        record.reason = Some(reason);
        self.add_finished_node(node, record, Outcome::Skipped, false);
    }

    /// Record a node that finished without running units.
    fn add_finished_node(
        &mut self,
        node: NodeIndex,
        mut record: StepRun,
        outcome: Outcome,
        continue_on_error: bool,
    ) {
        let outcome = if outcome == Outcome::Failure && continue_on_error {
            record.continue_on_error = true;
            Outcome::Success
        } else {
            outcome
        };
        if outcome == Outcome::Failure && self.failed_step.is_none() {
            self.failed_step = Some(record.id.clone());
        }
        let _ = self
            .events
            .send(Event::StepFinished(Box::new(record.clone())));
        self.records.push(((node.index(), 0), record));
        self.complete_node(node, outcome);
    }

    fn complete_node(&mut self, node: NodeIndex, outcome: Outcome) {
        self.nodes[node.index()].outcome = Some(outcome);
        let dependents: Vec<NodeIndex> = self
            .plan
            .graph
            .neighbors_directed(node, Direction::Outgoing)
            .collect();
        for d in dependents {
            let state = &mut self.nodes[d.index()];
            state.waiting_on = state.waiting_on.saturating_sub(1);
            if state.waiting_on == 0 && state.outcome.is_none() {
                self.ready.insert(d);
            }
        }
    }

    fn finish_unit(&mut self, unit: usize, mut record: StepRun) {
        let node = self.units[unit].node;
        let step_index = self.plan.graph[node].step;
        let continue_on_error = self.plan.pipeline.steps[step_index].continue_on_error;
        let failed = matches!(record.state, StepState::Failed | StepState::Cancelled);
        if record.state == StepState::Failed && continue_on_error {
            record.continue_on_error = true;
        }
        if record.state.is_success() {
            let n = self.records[self.units[unit].record].0.1;
            self.outputs
                .entry(step_index)
                .or_default()
                .push((n, record.outputs.clone()));
        }
        let _ = self
            .events
            .send(Event::StepFinished(Box::new(record.clone())));
        let slot = self.units[unit].record;
        self.records[slot].1 = record;
        let state = &mut self.nodes[node.index()];
        if failed && (self.cancelled || !continue_on_error) {
            state.failed = true;
        }
        if self.records[slot].1.state == StepState::Skipped {
            state.units_skipped += 1;
        }
        state.units_left = state.units_left.saturating_sub(1);
        if state.units_left == 0 {
            let outcome = if state.failed {
                Outcome::Failure
            } else if state.units_skipped == state.units_total {
                Outcome::Skipped
            } else {
                Outcome::Success
            };
            if outcome == Outcome::Failure && self.failed_step.is_none() && !self.cancelled {
                self.failed_step = Some(self.records[slot].1.id.clone());
            }
            self.complete_node(node, outcome);
        } else if failed && !continue_on_error && self.failed_step.is_none() && !self.cancelled {
            self.failed_step = Some(self.records[slot].1.id.clone());
        }
    }

    /// The scope expressions of `unit` see.
    fn scope(&self, node: NodeIndex, matrix: Option<&[(String, Value)]>, status: Status) -> Scope {
        let step = self.step(node);
        let mut roots = Map::new();
        roots.insert("env".into(), Value::Object(self.env.clone()));
        roots.insert("event".into(), self.options.event.clone());
        roots.insert("git".into(), self.options.git.clone());
        roots.insert("vars".into(), json!(self.options.vars));
        roots.insert(
            "run".into(),
            json!({ "id": self.options.run_id, "workspace": GUEST_WORKSPACE }),
        );
        if let Some(values) = matrix {
            roots.insert(
                "matrix".into(),
                Value::Object(values.iter().cloned().collect()),
            );
        }
        let mut steps = Map::new();
        for &read in &self.plan.graph[node].reads {
            let upstream = &self.plan.pipeline.steps[read];
            let mut outputs = Map::new();
            if let Some(results) = self.outputs.get(&read) {
                if upstream.matrix.is_some() {
                    // A matrix step's outputs are lists, one value per instance in order.
                    let mut sorted: Vec<&(usize, Outputs)> = results.iter().collect();
                    sorted.sort_by_key(|(n, _)| *n);
                    let mut names: BTreeSet<&String> = BTreeSet::new();
                    for (_, o) in &sorted {
                        names.extend(o.keys());
                    }
                    for name in names {
                        let list = sorted
                            .iter()
                            .map(|(_, o)| o.get(name).cloned().unwrap_or(Value::Null))
                            .collect();
                        outputs.insert(name.clone(), Value::Array(list));
                    }
                } else if let Some((_, o)) = results.first() {
                    outputs = o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                }
            }
            steps.insert(upstream.id.value.clone(), json!({ "outputs": outputs }));
        }
        roots.insert("steps".into(), Value::Object(steps));
        let secrets: Map<String, Value> = step_secrets(step, &self.options.secrets)
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        roots.insert("secrets".into(), Value::Object(secrets));
        Scope { roots, status }
    }

    fn resolve_pipeline_env(&self) -> Map<String, Value> {
        let mut roots = Map::new();
        roots.insert("event".into(), self.options.event.clone());
        roots.insert("git".into(), self.options.git.clone());
        roots.insert("vars".into(), json!(self.options.vars));
        roots.insert(
            "run".into(),
            json!({ "id": self.options.run_id, "workspace": GUEST_WORKSPACE }),
        );
        let mut scope = Scope {
            roots,
            status: Status::default(),
        };
        let mut env = Map::new();
        for (name, value) in &self.plan.pipeline.env {
            let v = value
                .value
                .eval(&scope)
                .map(|v| to_display_string(&v))
                .unwrap_or_default();
            env.insert(name.value.clone(), Value::String(v));
            scope.roots.insert("env".into(), Value::Object(env.clone()));
        }
        env
    }

    fn expand_dynamic(
        &self,
        node: NodeIndex,
        step: &Step,
    ) -> Result<Vec<Vec<(String, Value)>>, String> {
        let Some(matrix) = &step.matrix else {
            return Ok(vec![Vec::new()]);
        };
        let scope = self.scope(node, None, Status::default());
        let mut axes = Vec::new();
        for (name, axis) in &matrix.axes {
            let values = match &axis.value {
                Axis::Values(v) => v.clone(),
                Axis::Dynamic(t) => match t
                    .eval(&scope)
                    .map_err(|e| format!("matrix axis `{}`: {e}", name.value))?
                {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    other => {
                        return Err(format!(
                            "matrix axis `{}` must be a list, but its expression gave `{}`",
                            name.value,
                            truncate(&other.to_string(), 80)
                        ));
                    }
                },
            };
            axes.push((name.value.clone(), values));
        }
        let combos = cartesian(&axes);
        if combos.len() > MAX_DYNAMIC_INSTANCES {
            return Err(format!(
                "the matrix expands to {} instances, more than {MAX_DYNAMIC_INSTANCES}",
                combos.len()
            ));
        }
        Ok(combos)
    }

    fn condition_holds(&self, unit: usize, step: &Step, status: Status) -> Result<bool, String> {
        let Some(cond) = &step.condition else {
            return Ok(true);
        };
        let u = &self.units[unit];
        let scope = self.scope(u.node, u.matrix.as_deref(), status);
        cond.value
            .eval(&scope)
            .map(|v| truthy(&v))
            .map_err(|e| e.to_string())
    }

    /// Everything one unit needs, moved into its task.
    fn start_unit(&mut self, unit: usize) -> impl Future<Output = UnitResult> + Send + 'static {
        let u = &self.units[unit];
        let node = u.node;
        let step = self.step(node).clone();
        let plugin = self.plan.graph[node].plugin;
        let plan_plugin = self.plan.plugins.get(plugin).cloned();
        let output_patterns = if self.options.cache.is_some() {
            self.output_patterns(node)
        } else {
            Default::default()
        };
        let matrix = u.matrix.clone();
        let record = self.records[u.record].1.clone();
        let scope = self.scope(node, u.matrix.as_deref(), Status::default());
        let executor = self.executor.clone();
        let events = self.events.clone();
        let masker = self.masker.clone();
        let options = self.options.clone();
        let pipeline_env = self.env.clone();
        run_unit(UnitJob {
            unit,
            step,
            plugin,
            record,
            scope,
            executor,
            events,
            masker,
            options,
            pipeline_env,
            plan_plugin,
            matrix,
            output_patterns,
        })
    }

    /// The `cache.outputs` globs of the steps `node` needs (directly or not), and of the others.
    fn output_patterns(&self, node: NodeIndex) -> (Vec<String>, Vec<String>) {
        let own = self.plan.graph[node].step;
        let mut ancestors = BTreeSet::new();
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for up in self.plan.graph.neighbors_directed(n, Direction::Incoming) {
                if ancestors.insert(self.plan.graph[up].step) {
                    stack.push(up);
                }
            }
        }
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        for (i, step) in self.plan.pipeline.steps.iter().enumerate() {
            let globs = step.cache.outputs.iter().map(|o| o.value.clone());
            if ancestors.contains(&i) {
                mine.extend(globs);
            } else if i != own {
                others.extend(globs);
            }
        }
        (mine, others)
    }
}

struct UnitJob<E> {
    unit: usize,
    step: Step,
    plugin: usize,
    record: StepRun,
    scope: Scope,
    executor: Arc<E>,
    events: UnboundedSender<Event>,
    masker: Arc<Masker>,
    options: RunOptions,
    pipeline_env: Map<String, Value>,
    plan_plugin: Option<crate::plan::PlanPlugin>,
    matrix: Option<Vec<(String, Value)>>,
    output_patterns: (Vec<String>, Vec<String>),
}

/// The secrets a step lists, with their values: all a step (its expressions, and host
/// interfaces acting for its plugin) may see.
fn step_secrets(step: &Step, all: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    step.secrets
        .iter()
        .filter_map(|n| all.get(&n.value).map(|v| (n.value.clone(), v.clone())))
        .collect()
}

async fn run_unit<E: Executor>(job: UnitJob<E>) -> UnitResult {
    let UnitJob {
        unit,
        step,
        plugin,
        mut record,
        mut scope,
        executor,
        events,
        masker,
        options,
        pipeline_env,
        plan_plugin,
        matrix,
        output_patterns,
    } = job;
    let clock = Instant::now();
    record.started_at = Some(now_rfc3339());
    record.state = StepState::Running;

    let (env, config) = match resolve_inputs(&step, pipeline_env, &mut scope) {
        Ok(inputs) => inputs,
        Err(message) => return failed(unit, record, &masker, clock, message),
    };
    // The step cache: a hit replays the step without running its plugin.
    let mut cached = match (&options.cache, plan_plugin) {
        (Some(cache), Some(plugin)) => Some(
            cache
                .lookup(crate::cache::UnitFacts {
                    step: step.clone(),
                    plugin,
                    config: config.clone(),
                    env: env.clone(),
                    upstream: scope.roots.get("steps").cloned().unwrap_or(Value::Null),
                    matrix,
                    event: options.event.clone(),
                    workspace: options.workspace.clone(),
                    masker: masker.clone(),
                    ancestor_outputs: output_patterns.0,
                    foreign_outputs: output_patterns.1,
                })
                .await,
        ),
        _ => None,
    };
    if let Some(c) = &mut cached {
        for line in c.log.drain(..) {
            let _ = events.send(Event::StepLog {
                id: record.id.clone(),
                stream: LogStream::Info,
                line: masker.mask(&line),
            });
        }
        record.cache = Some(c.record.clone());
        if let Some(outputs) = c.hit.take() {
            crate::cache::replay(&mut record, outputs);
            record.duration_ms = Some(millis(clock.elapsed()));
            return UnitResult { unit, record };
        }
    }
    let retry = step.retry.as_ref().map(|r| r.value);
    let attempts = retry.map_or(1, |r| r.attempts.max(1));
    let mut backoff = retry.map_or(Duration::ZERO, |r| r.backoff);
    let net = match resolve_net(&step, &scope) {
        Ok(net) => net,
        Err(message) => return failed(unit, record, &masker, clock, message),
    };
    let grants = Grants {
        workspace_write: step.allow.workspace_write.is_some(),
        net,
    };
    // The step's own secrets, for host interfaces that read them by name (git credentials).
    let secrets = step_secrets(&step, &options.secrets);
    let log: Arc<dyn LogSink> = Arc::new(UnitLog {
        id: record.id.clone(),
        events: events.clone(),
        masker: masker.clone(),
    });

    for attempt in 1..=attempts {
        record.attempts = attempt;
        if attempt > 1 {
            // The first start is announced by the scheduler, in start order.
            let _ = events.send(Event::StepStarted {
                id: record.id.clone(),
                attempt,
            });
        }
        let invocation = Invocation {
            run_id: options.run_id.clone(),
            step_id: record.id.clone(),
            attempt,
            config: config.clone(),
            event: options.event.clone(),
            workspace: options.workspace.clone(),
            grants: grants.clone(),
            env: env.clone(),
            secrets: secrets.clone(),
            timeout: Some(step.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| t.value)),
            memory_limit: options.memory_limit,
            log: log.clone(),
        };
        let outcome = executor.run(plugin, invocation).await;
        record.outputs = outcome
            .outputs
            .iter()
            .map(|(k, v)| (masker.mask(k), masker.mask_json(v)))
            .collect();
        match outcome.result {
            Ok(()) => {
                record.state = StepState::Succeeded;
                record.error = None;
                break;
            }
            Err(failure) => {
                let message = masker.mask(&failure.to_string());
                if failure.retryable() && attempt < attempts {
                    let delay = backoff;
                    let _ = events.send(Event::StepRetrying {
                        id: record.id.clone(),
                        attempt,
                        delay_ms: millis(delay),
                        error: message,
                    });
                    tokio::time::sleep(delay).await;
                    let max = retry.map_or(Duration::ZERO, |r| r.max_backoff);
                    backoff = (backoff * 2).min(max.max(backoff));
                    continue;
                }
                record.state = StepState::Failed;
                record.error = Some(message);
                break;
            }
        }
    }
    if let (Some(cache), Some(c)) = (&options.cache, &mut cached)
        && record.state == StepState::Succeeded
    {
        cache.store(c, &record.outputs).await;
        for line in c.log.drain(..) {
            let _ = events.send(Event::StepLog {
                id: record.id.clone(),
                stream: LogStream::Warn,
                line: masker.mask(&line),
            });
        }
        record.cache = Some(c.record.clone());
    }
    record.duration_ms = Some(millis(clock.elapsed()));
    UnitResult { unit, record }
}

/// The step's env (the pipeline's, then the step's, which may read it) and its resolved `with:`.
fn resolve_inputs(
    step: &Step,
    mut env: Map<String, Value>,
    scope: &mut Scope,
) -> Result<(Vec<(String, String)>, Value), String> {
    for (name, value) in &step.env {
        let v = value
            .value
            .eval(scope)
            .map_err(|e| format!("cannot evaluate env `{}`: {e}", name.value))?;
        env.insert(name.value.clone(), Value::String(to_display_string(&v)));
        scope.roots.insert("env".into(), Value::Object(env.clone()));
    }
    let config =
        eval_json(&step.with.value, scope).map_err(|e| format!("cannot evaluate `with:`: {e}"))?;
    let env = env
        .into_iter()
        .map(|(k, v)| (k, to_display_string(&v)))
        .collect();
    Ok((env, config))
}

/// `allow.net` with its expressions (`${{ vars.REGISTRY }}`) resolved; each must come out as
/// `host:port`.
fn resolve_net(step: &Step, scope: &Scope) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in &step.allow.net {
        if !entry.value.contains("${{") {
            out.push(entry.value.clone());
            continue;
        }
        let template = kiln_expr::Template::parse(&entry.value)
            .map_err(|e| format!("invalid expression in `allow.net`: {}", e.message))?;
        let value = template
            .eval(scope)
            .map_err(|e| format!("cannot evaluate `allow.net` entry `{}`: {e}", entry.value))?;
        let text = to_display_string(&value);
        kiln_pipeline::check_host_port(&text).map_err(|why| {
            format!(
                "`allow.net` entry `{}` is `{text}`, not a `host:port` ({why}); hint: set the variable it reads, e.g. `vars: {{ REGISTRY: registry.example.com:443 }}`",
                entry.value
            )
        })?;
        out.push(text);
    }
    Ok(out)
}

fn failed(
    unit: usize,
    mut record: StepRun,
    masker: &Masker,
    clock: Instant,
    message: String,
) -> UnitResult {
    record.state = StepState::Failed;
    record.error = Some(masker.mask(&message));
    record.duration_ms = Some(millis(clock.elapsed()));
    UnitResult { unit, record }
}

/// Forwards a unit's log lines as events, secrets masked.
struct UnitLog {
    id: String,
    events: UnboundedSender<Event>,
    masker: Arc<Masker>,
}

impl LogSink for UnitLog {
    fn line(&self, stream: LogStream, text: &str) {
        let _ = self.events.send(Event::StepLog {
            id: self.id.clone(),
            stream,
            line: self.masker.mask(text),
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests;
