//! The scheduler's logic against a fake executor (no wasmtime): ordering, skipping, fail-fast,
//! retries, fan-out, cancellation, masking. The real plugin host is tested end to end in tests/.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_host::{Invocation, LogStream, PluginInfo, StepFailure, StepOutcome};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Executor, RunOptions, execute};
use crate::plan::{Plan, PlanPlugin};
use crate::run::{Event, Run, RunState, StepState};

/// Behaves as its `with:` says: `sleep_ms`, `fail` (`retryable`, `config`), `fail_times` (fail the
/// first N attempts), `outputs` (object), `log` (a line). Records start/end times per step.
#[derive(Default)]
struct Fake {
    timeline: Mutex<Vec<(String, &'static str, Instant)>>,
    running: Mutex<(usize, usize)>,
}

impl Executor for Fake {
    async fn run(&self, _plugin: usize, inv: Invocation) -> StepOutcome {
        let c = &inv.config;
        {
            let mut r = self.running.lock().unwrap();
            r.0 += 1;
            r.1 = r.1.max(r.0);
        }
        self.timeline
            .lock()
            .unwrap()
            .push((inv.step_id.clone(), "start", Instant::now()));
        if let Some(line) = c.get("log").and_then(Value::as_str) {
            inv.log.line(LogStream::Info, line);
        }
        if let Some(ms) = c.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        self.running.lock().unwrap().0 -= 1;
        self.timeline
            .lock()
            .unwrap()
            .push((inv.step_id.clone(), "end", Instant::now()));
        let outputs: BTreeMap<String, Value> = c
            .get("outputs")
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let fail_times = c.get("fail_times").and_then(Value::as_u64).unwrap_or(0);
        let result = match c.get("fail").and_then(Value::as_str) {
            Some("config") => Err(StepFailure::InvalidConfig("bad".into())),
            Some(msg) => Err(StepFailure::Failed(msg.to_owned())),
            None if u64::from(inv.attempt) <= fail_times => {
                Err(StepFailure::Failed(format!("attempt {}", inv.attempt)))
            }
            None => Ok(()),
        };
        StepOutcome { outputs, result }
    }
}

fn plan(yaml: &str) -> Arc<Plan> {
    let (pipeline, diags) = kiln_pipeline::parse("test.yaml", yaml);
    assert!(
        !kiln_pipeline::diag::has_errors(&diags),
        "{}",
        kiln_pipeline::diag::render(&diags)
    );
    let pipeline = pipeline.expect("pipeline");
    let info = PluginInfo {
        name: "fake".into(),
        version: "0".into(),
        description: String::new(),
        config_schema: json!({}),
        outputs: vec![],
        capabilities: vec![],
        caching: kiln_host::Caching::Auto,
    };
    let plugins = vec![PlanPlugin {
        origin: "fake".into(),
        digest: "sha256:0".into(),
        info,
    }];
    let slots = vec![0; pipeline.steps.len()];
    Arc::new(Plan::new(Arc::new(pipeline), plugins, &slots))
}

fn options(jobs: usize) -> RunOptions {
    RunOptions {
        run_id: "run-1".into(),
        jobs,
        fail_fast: true,
        workspace: std::env::temp_dir(),
        event: json!({}),
        git: json!({}),
        secrets: BTreeMap::new(),
        memory_limit: None,
        previous: None,
        cache: None,
        vars: BTreeMap::new(),
    }
}

async fn run_with(yaml: &str, opts: RunOptions, fake: Arc<Fake>) -> (Run, Vec<Event>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = execute(plan(yaml), fake, opts, tx, CancellationToken::new()).await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (run, events)
}

fn state(run: &Run, id: &str) -> StepState {
    run.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id} in {run:#?}"))
        .state
}

fn time_of(fake: &Fake, id: &str, what: &str) -> Instant {
    fake.timeline
        .lock()
        .unwrap()
        .iter()
        .find(|(i, w, _)| i == id && *w == what)
        .map(|x| x.2)
        .expect("event")
}

#[tokio::test]
async fn a_step_starts_when_its_own_needs_finish_not_when_its_level_does() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: slow, uses: fake, with: { sleep_ms: 300 } }
  - { id: fast, uses: fake }
  - { id: after-fast, uses: fake, needs: [fast] }
  - { id: after-both, uses: fake, needs: [slow, after-fast] }
"#;
    let (run, _) = run_with(yaml, options(4), fake.clone()).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert!(time_of(&fake, "after-fast", "start") < time_of(&fake, "slow", "end"));
    assert!(time_of(&fake, "after-both", "start") >= time_of(&fake, "slow", "end"));
}

#[tokio::test]
async fn ready_steps_start_in_the_order_they_are_written() {
    let fake = Arc::new(Fake::default());
    let yaml = "name: t\nsteps:\n  - { id: c, uses: fake }\n  - { id: a, uses: fake }\n  - { id: b, uses: fake }\n";
    run_with(yaml, options(1), fake.clone()).await;
    let starts: Vec<String> = fake
        .timeline
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.1 == "start")
        .map(|e| e.0.clone())
        .collect();
    assert_eq!(starts, ["c", "a", "b"]);
}

#[tokio::test]
async fn no_more_steps_run_at_once_than_jobs_allows() {
    let fake = Arc::new(Fake::default());
    let mut yaml = String::from("name: t\nsteps:\n");
    for i in 0..8 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, uses: fake, with: {{ sleep_ms: 20 }} }}\n"
        ));
    }
    let (run, _) = run_with(&yaml, options(3), fake.clone()).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(fake.running.lock().unwrap().1, 3);
}

#[tokio::test]
async fn a_failure_cancels_running_steps_and_skips_the_rest_by_default() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: long, uses: fake, with: { sleep_ms: 5000 } }
  - { id: broken, uses: fake, with: { fail: boom } }
  - { id: after, uses: fake, needs: [broken] }
  - { id: independent, uses: fake, needs: [long] }
"#;
    let started = Instant::now();
    let (run, _) = run_with(yaml, options(4), fake).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the long step was not cancelled"
    );
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state(&run, "broken"), StepState::Failed);
    assert_eq!(state(&run, "long"), StepState::Cancelled);
    assert_eq!(state(&run, "after"), StepState::Skipped);
    assert_eq!(state(&run, "independent"), StepState::Skipped);
    let broken = run.steps.iter().find(|s| s.id == "broken").unwrap();
    assert_eq!(broken.error.as_deref(), Some("boom"));
}

#[tokio::test]
async fn without_fail_fast_independent_branches_finish() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: slow, uses: fake, with: { sleep_ms: 100 } }
  - { id: broken, uses: fake, with: { fail: boom } }
  - { id: after-slow, uses: fake, needs: [slow] }
  - { id: after-broken, uses: fake, needs: [broken] }
"#;
    let mut opts = options(4);
    opts.fail_fast = false;
    let (run, _) = run_with(yaml, opts, fake).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state(&run, "after-slow"), StepState::Succeeded);
    assert_eq!(state(&run, "after-broken"), StepState::Skipped);
}

#[tokio::test]
async fn continue_on_error_lets_dependents_run_and_the_run_succeed() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: flaky, uses: fake, with: { fail: boom }, continue-on-error: true }
  - { id: next, uses: fake, needs: [flaky] }
"#;
    let (run, _) = run_with(yaml, options(2), fake).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(state(&run, "flaky"), StepState::Failed);
    assert!(run.steps[0].continue_on_error);
    assert_eq!(state(&run, "next"), StepState::Succeeded);
}

#[tokio::test]
async fn a_false_condition_skips_the_step_and_its_dependents() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
env: { DEPLOY: "no" }
steps:
  - { id: deploy, uses: fake, if: "env.DEPLOY == 'yes'" }
  - { id: after, uses: fake, needs: [deploy] }
  - { id: other, uses: fake, if: "env.DEPLOY == 'no'" }
"#;
    let (run, _) = run_with(yaml, options(2), fake).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(state(&run, "deploy"), StepState::Skipped);
    assert_eq!(state(&run, "after"), StepState::Skipped);
    assert_eq!(state(&run, "other"), StepState::Succeeded);
}

#[tokio::test]
async fn a_failure_condition_runs_after_a_failure() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: build, uses: fake, with: { fail: boom } }
  - { id: notify, uses: fake, needs: [build], if: "${{ failure() }}" }
  - { id: publish, uses: fake, needs: [build] }
"#;
    let (run, _) = run_with(yaml, options(2), fake).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state(&run, "notify"), StepState::Succeeded);
    assert_eq!(state(&run, "publish"), StepState::Skipped);
}

#[tokio::test]
async fn retries_back_off_and_stop_at_the_first_success() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: flaky, uses: fake, with: { fail_times: 2 }, retry: { attempts: 3, backoff: 50ms } }
"#;
    let started = Instant::now();
    let (run, events) = run_with(yaml, options(1), fake).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.steps[0].attempts, 3);
    // 50 ms, then 100 ms.
    assert!(started.elapsed() >= Duration::from_millis(150));
    let delays: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepRetrying { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [50, 100]);
}

#[tokio::test]
async fn a_config_error_is_not_retried() {
    let fake = Arc::new(Fake::default());
    let yaml = "name: t\nsteps:\n  - { id: s, uses: fake, with: { fail: config }, retry: 3 }\n";
    let (run, _) = run_with(yaml, options(1), fake).await;
    assert_eq!(run.steps[0].attempts, 1);
    assert_eq!(run.state, RunState::Failed);
}

#[tokio::test]
async fn a_dynamic_matrix_fans_out_over_an_upstream_list() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: affected, uses: fake, with: { outputs: { projects: [web, api, docs] } } }
  - id: image
    uses: fake
    needs: [affected]
    matrix: { app: "${{ steps.affected.outputs.projects }}" }
    if: "matrix.app != 'docs'"
    with: { outputs: { tag: "reg/${{ matrix.app }}:1" } }
  - { id: report, uses: fake, needs: [image], with: { outputs: { tags: "${{ steps.image.outputs.tag }}" } } }
"#;
    let (run, _) = run_with(yaml, options(4), fake).await;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(state(&run, "image[app=web]"), StepState::Succeeded);
    assert_eq!(state(&run, "image[app=api]"), StepState::Succeeded);
    assert_eq!(state(&run, "image[app=docs]"), StepState::Skipped);
    let report = run.steps.iter().find(|s| s.id == "report").unwrap();
    // Instance order, skipped instances absent.
    assert_eq!(report.outputs["tags"], json!(["reg/web:1", "reg/api:1"]));
}

#[tokio::test]
async fn a_static_matrix_expands_into_instances() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: test, uses: fake, matrix: { os: [linux, mac], v: [1, 2] }, with: { outputs: { n: "${{ matrix.os }}-${{ matrix.v }}" } } }
"#;
    let (run, _) = run_with(yaml, options(4), fake).await;
    let ids: Vec<&str> = run.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "test[os=linux,v=1]",
            "test[os=linux,v=2]",
            "test[os=mac,v=1]",
            "test[os=mac,v=2]"
        ]
    );
    assert_eq!(run.steps[3].outputs["n"], json!("mac-2"));
}

#[tokio::test]
async fn a_dynamic_matrix_over_a_non_list_fails_the_step_with_a_clear_error() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: a, uses: fake, with: { outputs: { p: "web" } } }
  - { id: b, uses: fake, needs: [a], matrix: { app: "${{ steps.a.outputs.p }}" } }
"#;
    let (run, _) = run_with(yaml, options(2), fake).await;
    assert_eq!(run.state, RunState::Failed);
    let b = run.steps.iter().find(|s| s.id == "b").unwrap();
    assert!(
        b.error.as_deref().unwrap_or("").contains("must be a list"),
        "{b:?}"
    );
}

#[tokio::test]
async fn secrets_are_masked_in_logs_outputs_and_errors() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - id: s
    uses: fake
    secrets: [TOKEN]
    with: { log: "token is ${{ secrets.TOKEN }}", outputs: { leak: "${{ secrets.TOKEN }}" }, fail: "bad ${{ secrets.TOKEN }}" }
"#;
    let mut opts = options(1);
    opts.secrets.insert("TOKEN".into(), "hunter22".into());
    let (run, events) = run_with(yaml, opts, fake).await;
    let logs: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::StepLog { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(logs, ["token is ***"]);
    assert_eq!(run.steps[0].outputs["leak"], json!("***"));
    assert_eq!(run.steps[0].error.as_deref(), Some("bad ***"));
}

#[tokio::test]
async fn cancelling_stops_running_steps_and_starts_nothing_new() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: long, uses: fake, with: { sleep_ms: 10000 } }
  - { id: after, uses: fake, needs: [long] }
"#;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let run = execute(plan(yaml), fake, options(2), tx, cancel).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.state, RunState::Cancelled);
    assert_eq!(state(&run, "long"), StepState::Cancelled);
    assert_eq!(state(&run, "after"), StepState::Skipped);
}

#[tokio::test]
async fn env_and_matrix_values_reach_the_plugin_env_and_config() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
env: { REGISTRY: "reg.local" }
steps:
  - id: s
    uses: fake
    env: { IMAGE: "${{ env.REGISTRY }}/app" }
    with: { outputs: { image: "${{ env.IMAGE }}", n: "${{ 1 }}" } }
"#;
    let (run, _) = run_with(yaml, options(1), fake).await;
    assert_eq!(run.steps[0].outputs["image"], json!("reg.local/app"));
    assert_eq!(run.steps[0].outputs["n"], json!(1));
}

#[tokio::test]
async fn steps_waiting_for_a_job_slot_do_not_start_after_a_failure() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: broken, uses: fake, with: { fail: boom } }
  - { id: queued, uses: fake }
  - { id: cleanup, uses: fake, if: "${{ always() }}" }
"#;
    let (run, _) = run_with(yaml, options(1), fake.clone()).await;
    assert_eq!(run.state, RunState::Failed);
    assert_eq!(state(&run, "queued"), StepState::Skipped);
    let queued = run.steps.iter().find(|s| s.id == "queued").unwrap();
    assert_eq!(
        queued.reason.as_deref(),
        Some("step `broken` failed (fail-fast)")
    );
    assert_eq!(state(&run, "cleanup"), StepState::Succeeded);
    let started: Vec<String> = fake
        .timeline
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.1 == "start")
        .map(|e| e.0.clone())
        .collect();
    assert_eq!(started, ["broken", "cleanup"]);
}

#[tokio::test]
async fn cancelling_with_steps_waiting_for_a_slot_ends_the_run() {
    let fake = Arc::new(Fake::default());
    let yaml = r#"
name: t
steps:
  - { id: a, uses: fake, with: { sleep_ms: 10000 } }
  - { id: b, uses: fake, with: { sleep_ms: 10000 } }
  - { id: c, uses: fake, with: { sleep_ms: 10000 } }
"#;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let run = tokio::time::timeout(
        Duration::from_secs(5),
        execute(plan(yaml), fake, options(1), tx, cancel),
    )
    .await
    .expect("the run ends after a cancel");
    assert_eq!(run.state, RunState::Cancelled);
    assert_eq!(state(&run, "a"), StepState::Cancelled);
    assert_eq!(state(&run, "b"), StepState::Skipped);
    assert_eq!(state(&run, "c"), StepState::Skipped);
}

#[tokio::test]
async fn a_retry_reruns_the_failed_step_and_its_dependents_and_reuses_the_rest() {
    let steps = |fail_b: bool| {
        let b = if fail_b {
            "{ fail: boom }"
        } else {
            "{ outputs: { v: 2 } }"
        };
        format!(
            "name: t\nsteps:\n  - id: a\n    uses: fake\n    with: {{ outputs: {{ v: 1 }} }}\n  - id: b\n    uses: fake\n    needs: [a]\n    with: {b}\n  - id: c\n    uses: fake\n    needs: [b]\n    with: {{ outputs: {{ v: 3 }} }}\n  - id: d\n    uses: fake\n    with: {{ outputs: {{ v: 4 }} }}\n"
        )
    };
    let mut opts = options(4);
    opts.fail_fast = false;
    let (first, _) = run_with(&steps(true), opts.clone(), Arc::new(Fake::default())).await;
    assert_eq!(first.state, RunState::Failed);
    assert_eq!(state(&first, "c"), StepState::Skipped);

    opts.previous = Some(Arc::new(super::PreviousResults::new(
        "run-1",
        first.steps.clone(),
    )));
    let fake = Arc::new(Fake::default());
    let (second, _) = run_with(&steps(false), opts, fake.clone()).await;
    assert_eq!(second.state, RunState::Succeeded, "{second:#?}");
    let ran: Vec<String> = fake
        .timeline
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, w, _)| *w == "start")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(ran, vec!["b".to_owned(), "c".to_owned()]);
    let a = second.steps.iter().find(|s| s.id == "a").expect("a");
    assert_eq!(a.reason.as_deref(), Some("reused from run `run-1`"));
    assert_eq!(a.outputs.get("v"), Some(&json!(1)));
    assert_eq!(state(&second, "d"), StepState::Succeeded);
}

#[tokio::test]
async fn nothing_is_reused_downstream_of_a_step_that_ran_again() {
    let yaml =
        "name: t\nsteps:\n  - id: a\n    uses: fake\n  - id: b\n    uses: fake\n    needs: [a]\n";
    let (first, _) = run_with(yaml, options(2), Arc::new(Fake::default())).await;
    assert_eq!(first.state, RunState::Succeeded);
    // Only `b` is known from before: `a` runs, so `b` must run again too.
    let only_b: Vec<_> = first
        .steps
        .iter()
        .filter(|s| s.id == "b")
        .cloned()
        .collect();
    let mut opts = options(2);
    opts.previous = Some(Arc::new(super::PreviousResults::new("run-0", only_b)));
    let fake = Arc::new(Fake::default());
    let (second, _) = run_with(yaml, opts, fake.clone()).await;
    assert_eq!(second.state, RunState::Succeeded);
    assert_eq!(fake.timeline.lock().unwrap().len(), 4, "both steps ran");
    assert!(second.steps.iter().all(|s| s.reason.is_none()));
}
