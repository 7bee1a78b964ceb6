//! The JSON API under `/v1`: runs (create, list, show, logs, cancel, retry), seed 004's build
//! requests, the fail queue, webhook events; `/healthz`, `/metrics`, the OpenAPI document.
//!
//! Errors are `{"error": {"code", "message", "hint"}}` with a fitting status; messages are
//! lowercase with the offending value in backticks.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use crate::store::{self, CancelOutcome, NewRun, Notify, RunFilter, RunRow, now_ms, rfc3339};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
    /// Extra fields (e.g. `diagnostics`).
    pub details: Option<Box<Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            hint: None,
            details: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} `{id}`"),
        )
    }

    pub fn store(e: store::StoreError) -> ApiError {
        tracing::error!("store: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
        .hint("the request was not stored; try again")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(h) = self.hint {
            error["hint"] = Value::String(h);
        }
        if let Some(Value::Object(extra)) = self.details.map(|d| *d) {
            for (k, v) in extra {
                error[k] = v;
            }
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kiln\""),
            );
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

/// `Authorization: Bearer <token>`, checked against the configured hashes.
pub async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs a bearer token",
        )
        .hint("send `Authorization: Bearer <token>`")
        .into_response(),
        Some(token) => match app.config.tokens.check(token) {
            Some(_) => next.run(request).await,
            None => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
            .hint("use a token listed in `KILN_API_TOKENS` or `api.tokens`")
            .into_response(),
        },
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        .hint("see `/v1/openapi.json` for the endpoints")
}

/// Parse a JSON body into `T`, with the path of what is wrong.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ApiError::bad_request(format!("the request body is not valid{at}: {inner}"))
            .hint("send a JSON object as described in /v1/openapi.json")
    })
}

fn accepted(id: &str, body: Value) -> Response {
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/runs/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// A run as the API shows it.
pub fn run_json(run: &RunRow, steps: Option<Vec<crate::run::StepRun>>) -> Value {
    let duration_ms = match (run.started_at, run.finished_at) {
        (Some(s), Some(f)) => Some(f - s),
        (Some(s), None) if run.state == "running" => Some(now_ms() - s),
        _ => None,
    };
    let mut v = json!({
        "id": run.id,
        "state": run.state,
        "pipeline": run.pipeline,
        "pipeline_path": run.pipeline_path,
        "repo_url": run.repo_url,
        "ref": run.git_ref,
        "sha": run.sha,
        "trigger": run.trigger,
        "inputs": run.inputs,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "created_at": rfc3339(run.created_at),
        "started_at": run.started_at.map(rfc3339),
        "finished_at": run.finished_at.map(rfc3339),
        "duration_ms": duration_ms,
        "error": run.error,
        "retry_of": run.retry_of,
        "failed_queue": run.failed_queue,
        "concurrency_group": run.concurrency_group,
        "cancel_requested": run.cancel_requested,
        "event_id": run.event_id,
        "worker": run.claimed_by,
    });
    if run.trigger == "schedule" {
        // Which schedule and slot started it (`name`, `cron`, `slot`).
        v["schedule"] = run.event.get("schedule").cloned().unwrap_or(Value::Null);
    }
    if run.state == "queued" && run.not_before > now_ms() {
        v["next_attempt_at"] = Value::String(rfc3339(run.not_before));
    }
    if let Some(steps) = steps {
        v["steps"] = serde_json::to_value(steps).unwrap_or(Value::Null);
    }
    v
}

// ---- POST /v1/runs -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    pub repo_url: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    /// Path of the pipeline file in the repository, e.g. `.kiln/build.yaml`.
    pub pipeline: Option<String>,
    /// The pipeline itself.
    pub pipeline_yaml: Option<String>,
    #[serde(default)]
    pub inputs: serde_json::Map<String, Value>,
    #[serde(default)]
    pub notify: Notify,
    pub concurrency: Option<Concurrency>,
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    pub group: String,
    #[serde(default)]
    pub cancel_in_progress: bool,
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn check_repo(app: &AppState, url: &str) -> Result<(), ApiError> {
    let parsed = kiln_git::RemoteUrl::parse(url).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_repo_url",
            e.to_string(),
        )
    })?;
    if parsed.is_local() && !app.config.allow_local_repos {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_repo_url",
            format!("`{url}` is a local repository, which this server does not clone"),
        )
        .hint("use a network URL, or set `runs.allow_local_repos: true` on a trusted server"));
    }
    Ok(())
}

/// Check a request to run and turn it into the run to store.
pub fn new_run(app: &AppState, req: CreateRun, trigger: &str) -> Result<NewRun, ApiError> {
    let unprocessable =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_run", m);
    if let Some(url) = &req.repo_url {
        check_repo(app, url)?;
    }
    if let Some(sha) = &req.sha
        && !is_sha(sha)
    {
        return Err(
            unprocessable(format!("`sha` is `{sha}`, not a full commit SHA"))
                .hint("give 40 hex digits, or use `ref` for a branch or tag"),
        );
    }
    let mut name = String::new();
    match (&req.pipeline, &req.pipeline_yaml) {
        (Some(_), Some(_)) => {
            return Err(unprocessable(
                "give `pipeline` or `pipeline_yaml`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(unprocessable("the request names no pipeline".into()).hint(
                "give `pipeline` (a path in the repository, with `repo_url`) or `pipeline_yaml`",
            ));
        }
        (Some(path), None) => {
            if req.repo_url.is_none() {
                return Err(unprocessable(format!(
                    "`pipeline` is `{path}`, a path in a repository, but no `repo_url` is given"
                )));
            }
            if path.is_empty() || path.split('/').any(|c| c == "..") || path.starts_with('/') {
                return Err(unprocessable(format!(
                    "`pipeline` is `{path}`; it must be a relative path in the repository"
                ))
                .hint("e.g. `.kiln/build.yaml`"));
            }
        }
        (None, Some(text)) => {
            let (pipeline, diags) = kiln_pipeline::parse("pipeline_yaml", text);
            if kiln_pipeline::has_errors(&diags) || pipeline.is_none() {
                let mut e = unprocessable("`pipeline_yaml` has errors".into())
                    .hint("fix the problems listed in `diagnostics`");
                e.details = Some(Box::new(json!({
                    "diagnostics": kiln_pipeline::to_json(&diags),
                    "rendered": kiln_pipeline::render(&diags),
                })));
                return Err(e);
            }
            name = pipeline.map(|p| p.name.value).unwrap_or_default();
        }
    }
    for url in req.notify.on_success.iter().chain(&req.notify.on_failure) {
        super::config::check_url(url).map_err(unprocessable)?;
    }
    let max_attempts = req.max_attempts.unwrap_or(app.config.max_attempts);
    if !(1..=100).contains(&max_attempts) {
        return Err(unprocessable(format!(
            "`max_attempts` is {max_attempts}; it must be 1 to 100"
        )));
    }
    if let Some(c) = &req.concurrency
        && c.group.trim().is_empty()
    {
        return Err(unprocessable("`concurrency.group` is empty".into()));
    }
    let inputs = Value::Object(req.inputs);
    Ok(NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        trigger: trigger.to_owned(),
        pipeline: name,
        pipeline_path: req.pipeline,
        pipeline_yaml: req.pipeline_yaml,
        repo_url: req.repo_url,
        git_ref: req.git_ref.clone(),
        sha: req.sha,
        event: json!({ "kind": trigger, "ref": req.git_ref, "inputs": inputs }),
        inputs,
        notify: req.notify,
        concurrency_group: req.concurrency.as_ref().map(|c| c.group.clone()),
        cancel_older: req
            .concurrency
            .as_ref()
            .is_some_and(|c| c.cancel_in_progress),
        max_attempts,
        retry_of: None,
        reuse_from: None,
        event_id: None,
    })
}

async fn store_run(app: &AppState, run: NewRun) -> ApiResult {
    let id = run.id.clone();
    app.store
        .write(move |c| store::insert_run(c, &run, now_ms()))
        .await
        .map_err(ApiError::store)?;
    app.worker.wake_runs.notify_one();
    Ok(accepted(
        &id,
        json!({ "id": id, "state": "queued", "url": format!("/v1/runs/{id}") }),
    ))
}

pub async fn create_run(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let req: CreateRun = parse_body(&body)?;
    let run = new_run(&app, req, "api")?;
    store_run(&app, run).await
}

// ---- POST /v1/builds (seed 004) -----------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    pub repo_url: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// The image repository, e.g. `registry.example.com/team/app`.
    pub registry: Option<String>,
    pub dockerfile_path: Option<String>,
    #[serde(default = "yes")]
    pub push: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub notify: Notify,
}

fn yes() -> bool {
    true
}

/// `host:port` of an image reference's registry (`docker.io` when it names none).
pub fn registry_endpoint(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let is_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let host = if is_host {
        first
    } else {
        "registry-1.docker.io"
    };
    if host.starts_with('[') {
        if host.contains("]:") {
            host.to_owned()
        } else {
            format!("{host}:443")
        }
    } else if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:443")
    }
}

/// Seed 004's pipeline: `pipelines/seed-004-build-api.yaml`, embedded so that what runs is the
/// reviewed file. Its values come from `event.inputs`; [`build_pipeline`] writes only the name
/// and the two `allow.net` grants into it (grants are never expressions).
pub const BUILD_PIPELINE: &str = include_str!("../../../pipelines/seed-004-build-api.yaml");
const NAME_LINE: &str = "name: build-image\n";
const REPO_GRANT: &str = ", net: [\"git.example.com:443\"]";
const REGISTRY_GRANT: &str = "net: [\"registry.example.com:443\"]";

/// `template` with its one `placeholder` replaced by `value`.
fn fill(template: &str, placeholder: &str, value: &str) -> Result<String, ApiError> {
    if template.matches(placeholder).count() != 1 {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the embedded build pipeline does not hold `{placeholder}` exactly once"),
        )
        .hint("this is a bug in kiln: pipelines/seed-004-build-api.yaml was changed"));
    }
    Ok(template.replacen(placeholder, value, 1))
}

/// A seed 004 build request checked and turned into (pipeline text, the run's inputs): the
/// embedded [`BUILD_PIPELINE`] with its grants filled in, and `{build, image, dockerfile}`.
pub fn build_pipeline(
    req: &BuildRequest,
) -> Result<(String, serde_json::Map<String, Value>), ApiError> {
    let unprocessable =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_build", m);
    let url =
        kiln_git::RemoteUrl::parse(&req.repo_url).map_err(|e| unprocessable(e.to_string()))?;
    let repo_name: String = req
        .repo_url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("image")
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let repo_name = if repo_name.is_empty() {
        "image".to_owned()
    } else {
        repo_name
    };
    let tag = req.tag.clone().unwrap_or_else(|| "latest".to_owned());
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(
            unprocessable(format!("`tag` is `{tag}`, not a valid image tag"))
                .hint("letters, digits, `.`, `_` and `-`, at most 128"),
        );
    }
    let image = match &req.registry {
        Some(r) if !r.trim().is_empty() => format!("{}:{tag}", r.trim().trim_end_matches('/')),
        _ if req.push && !req.dry_run => {
            return Err(
                unprocessable("`push` is true but no `registry` is given".into())
                    .hint("give the image repository, e.g. `registry.example.com/team/app`"),
            );
        }
        _ => format!("kiln.local/{repo_name}:{tag}"),
    };
    let dockerfile = req
        .dockerfile_path
        .clone()
        .unwrap_or_else(|| "Dockerfile".to_owned());
    if dockerfile.is_empty()
        || dockerfile.starts_with('/')
        || dockerfile.split('/').any(|c| c == "..")
    {
        return Err(unprocessable(format!(
            "`dockerfile_path` is `{dockerfile}`; it must be a path inside the repository"
        )));
    }
    let quoted = |s: &str| Value::String(s.to_owned()).to_string();
    let text = fill(
        BUILD_PIPELINE,
        NAME_LINE,
        &format!("name: {}\n", quoted(&format!("build-{repo_name}"))),
    )?;
    let repo_grant = match url.endpoint() {
        Some(endpoint) => format!(", net: [{}]", quoted(&endpoint)),
        None => String::new(),
    };
    let text = fill(&text, REPO_GRANT, &repo_grant)?;
    let text = fill(
        &text,
        REGISTRY_GRANT,
        &format!("net: [{}]", quoted(&registry_endpoint(&image))),
    )?;
    let inputs = serde_json::Map::from_iter([
        (
            "build".to_owned(),
            json!({
                "repo_url": req.repo_url, "branch": req.branch, "tag": req.tag,
                "registry": req.registry, "dockerfile_path": req.dockerfile_path,
                "push": req.push, "dry_run": req.dry_run,
            }),
        ),
        ("image".to_owned(), Value::String(image)),
        ("dockerfile".to_owned(), Value::String(dockerfile)),
    ]);
    Ok((text, inputs))
}

pub async fn create_build(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let req: BuildRequest = parse_body(&body)?;
    let (yaml, inputs) = build_pipeline(&req)?;
    let run = new_run(
        &app,
        CreateRun {
            repo_url: Some(req.repo_url.clone()),
            git_ref: req.branch.clone(),
            sha: None,
            pipeline: None,
            pipeline_yaml: Some(yaml),
            inputs,
            notify: req.notify,
            concurrency: None,
            max_attempts: None,
        },
        "build",
    )?;
    store_run(&app, run).await
}

// ---- GET /v1/runs, /v1/fail-queue ---------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub state: Option<String>,
    pub repo: Option<String>,
    pub pipeline: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

const STATES: &[&str] = &["queued", "running", "succeeded", "failed", "cancelled"];

async fn list(app: &AppState, q: ListQuery, failed_queue: bool) -> ApiResult {
    if let Some(s) = &q.state
        && !STATES.contains(&s.as_str())
    {
        return Err(
            ApiError::bad_request(format!("`state` is `{s}`, not a run state"))
                .hint(format!("use one of {}", STATES.join(", "))),
        );
    }
    let before = match &q.cursor {
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "`cursor` is `{c}`, not a cursor from `next_cursor`"
            ))
        })?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}; it must be 1 to 500"
        )));
    }
    let filter = RunFilter {
        state: q.state,
        repo: q.repo,
        pipeline: q.pipeline,
        failed_queue,
        before,
        limit,
    };
    let rows = app
        .store
        .read(move |c| store::list_runs(c, &filter))
        .await
        .map_err(ApiError::store)?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.seq.to_string()))
        .flatten();
    let runs: Vec<Value> = rows.iter().map(|r| run_json(r, None)).collect();
    Ok(axum::Json(json!({ "runs": runs, "next_cursor": next })).into_response())
}

pub async fn list_runs(
    State(app): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    list(&app, q, false).await
}

pub async fn fail_queue(
    State(app): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    list(&app, q, true).await
}

// ---- GET /v1/runs/{id} --------------------------------------------------------------------

async fn find_run(app: &AppState, id: &str) -> Result<RunRow, ApiError> {
    let key = id.to_owned();
    app.store
        .read(move |c| store::get_run(c, &key))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("run", id))
}

pub async fn get_run(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let key = id.clone();
    let found = app
        .store
        .read(move |c| {
            let Some(run) = store::get_run(c, &key)? else {
                return Ok(None);
            };
            let steps = store::steps_of(c, &key)?;
            let notifications = store::notifications_of(c, &key)?;
            Ok(Some((run, steps, notifications)))
        })
        .await
        .map_err(ApiError::store)?;
    let Some((run, steps, notifications)) = found else {
        return Err(ApiError::not_found("run", &id));
    };
    let mut v = run_json(&run, Some(steps));
    v["notifications"] = Value::Array(notifications);
    Ok(axum::Json(v).into_response())
}

// ---- GET /v1/runs/{id}/logs ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only lines after this sequence number.
    pub after: Option<i64>,
}

fn plain_line(l: &store::LogLine) -> String {
    let who = l.step.as_deref().unwrap_or("run");
    match l.stream.as_str() {
        "stdout" | "info" | "system" => format!("[{who}] {}\n", l.line),
        other => format!("[{who}] {other}: {}\n", l.line),
    }
}

pub async fn logs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    find_run(&app, &id).await?;
    let last_event = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = last_event.or(q.after).unwrap_or(0);
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if !sse {
        let mut text = String::new();
        let mut cursor = after;
        loop {
            let key = id.clone();
            let lines = app
                .store
                .read(move |c| store::logs_after(c, &key, cursor, 5000))
                .await
                .map_err(ApiError::store)?;
            let Some(last) = lines.last() else { break };
            cursor = last.seq;
            for l in &lines {
                text.push_str(&plain_line(l));
            }
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    Ok(Sse::new(follow(app, id, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Follow {
    app: AppState,
    id: String,
    after: i64,
    done: bool,
    changed: tokio::sync::watch::Receiver<u64>,
}

/// Replay the stored lines after `after`, then follow new ones until the run has finished
/// and every line was sent; the last event is `end` with the run's state. Lines are read from
/// the store (so a follower sees runs of every worker on it), woken by this worker's commits
/// and at least once a second.
fn follow(
    app: AppState,
    id: String,
    after: i64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let changed = app.worker.changed.subscribe();
    let state = Follow {
        app,
        id,
        after,
        done: false,
        changed,
    };
    let pages = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut finished_seen = false;
        loop {
            let (key, after) = (st.id.clone(), st.after);
            let lines = match st
                .app
                .store
                .read(move |c| store::logs_after(c, &key, after, 500))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    st.done = true;
                    let ev = SseEvent::default()
                        .event("error")
                        .data(format!("cannot read the log: {e}"));
                    return Some((vec![ev], st));
                }
            };
            if let Some(last) = lines.last() {
                st.after = last.seq;
                let events = lines
                    .iter()
                    .map(|l| {
                        SseEvent::default()
                            .id(l.seq.to_string())
                            .event("log")
                            .json_data(l)
                            .unwrap_or_else(|_| SseEvent::default().event("log").data(&l.line))
                    })
                    .collect();
                return Some((events, st));
            }
            if finished_seen {
                let key = st.id.clone();
                let run = st.app.store.read(move |c| store::get_run(c, &key)).await;
                st.done = true;
                let data = match run {
                    Ok(Some(r)) => json!({ "state": r.state, "error": r.error }),
                    _ => json!({ "state": "unknown" }),
                };
                return Some((
                    vec![SseEvent::default().event("end").data(data.to_string())],
                    st,
                ));
            }
            let key = st.id.clone();
            match st.app.store.read(move |c| store::get_run(c, &key)).await {
                Ok(Some(r)) if r.is_finished() => {
                    // Lines are stored before the run ends: read once more, then end.
                    finished_seen = true;
                    continue;
                }
                Ok(_) => {}
                Err(_) => {}
            }
            let stopping = st.app.worker.shutdown().clone();
            tokio::select! {
                _ = st.changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopping.cancelled() => {
                    // The server stops: end the stream (the client may resume with
                    // `Last-Event-ID` from another server or after the restart).
                    st.done = true;
                    return Some((vec![SseEvent::default().event("stopping").data("{}")], st));
                }
            }
        }
    });
    futures_util::StreamExt::flat_map(pages, |events| {
        futures_util::stream::iter(events.into_iter().map(Ok))
    })
}

// ---- POST /v1/runs/{id}/cancel, /retry ----------------------------------------------------

pub async fn cancel(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let key = id.clone();
    let outcome = app
        .store
        .write(move |c| store::request_cancel(c, &key, now_ms()))
        .await
        .map_err(ApiError::store)?;
    match outcome {
        CancelOutcome::NotFound => Err(ApiError::not_found("run", &id)),
        CancelOutcome::AlreadyFinished(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_finished",
            format!("run `{id}` has already finished ({state})"),
        )),
        CancelOutcome::Cancelled => {
            app.worker.bump();
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "id": id, "state": "cancelled" })),
            )
                .into_response())
        }
        CancelOutcome::Requested => {
            app.worker.cancel_local(&id);
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "id": id, "state": "running", "cancel_requested": true })),
            )
                .into_response())
        }
    }
}

pub async fn retry(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let old = find_run(&app, &id).await?;
    match old.state.as_str() {
        "failed" | "cancelled" => {}
        "succeeded" => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "nothing_to_retry",
                format!("run `{id}` succeeded; nothing failed to run again"),
            )
            .hint("start a new run with POST /v1/runs"));
        }
        state => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_finished",
                format!("run `{id}` is still {state}"),
            )
            .hint("cancel it first, or wait for it to end"));
        }
    }
    let run = NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        trigger: "retry".to_owned(),
        pipeline: old.pipeline.clone(),
        pipeline_path: old.pipeline_path.clone(),
        pipeline_yaml: old.pipeline_yaml.clone(),
        repo_url: old.repo_url.clone(),
        git_ref: old.git_ref.clone(),
        sha: old.sha.clone(),
        inputs: old.inputs.clone(),
        event: old.event.clone(),
        notify: old.notify.clone(),
        concurrency_group: old.concurrency_group.clone(),
        cancel_older: old.cancel_older,
        max_attempts: old.max_attempts,
        retry_of: Some(old.id.clone()),
        reuse_from: Some(old.id.clone()),
        event_id: old.event_id.clone(),
    };
    let new_id = run.id.clone();
    app.store
        .write(move |c| {
            store::insert_run(c, &run, now_ms())?;
            // A retried run leaves the fail queue: its retry stands for it now.
            c.execute(
                "UPDATE runs SET failed_queue = 0 WHERE id = ?1",
                [&run.retry_of],
            )?;
            Ok(())
        })
        .await
        .map_err(ApiError::store)?;
    app.worker.wake_runs.notify_one();
    Ok(accepted(
        &new_id,
        json!({ "id": new_id, "state": "queued", "retry_of": id, "url": format!("/v1/runs/{new_id}") }),
    ))
}

// ---- GET /v1/events/{id} ------------------------------------------------------------------

pub async fn get_event(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let key = id.clone();
    let event = app
        .store
        .read(move |c| store::get_event(c, &key))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    let mut v = serde_json::to_value(&event).unwrap_or(Value::Null);
    v["created_at"] = Value::String(rfc3339(event.created_at));
    if let Some(f) = event.finished_at {
        v["finished_at"] = Value::String(rfc3339(f));
    }
    Ok(axum::Json(v).into_response())
}

// ---- /healthz, /metrics, /v1/openapi.json -------------------------------------------------

pub async fn healthz(State(app): State<AppState>) -> Response {
    let ok = app
        .store
        .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .await;
    match ok {
        Ok(_) => axum::Json(json!({ "status": "ok", "worker": app.worker.id })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(app): State<AppState>) -> ApiResult {
    let counts = app
        .store
        .read(|c| store::counts(c, now_ms()))
        .await
        .map_err(ApiError::store)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(&counts),
    )
        .into_response())
}

pub async fn openapi() -> Response {
    axum::Json(super::openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_of_an_image_is_its_first_component_when_it_names_a_host() {
        assert_eq!(registry_endpoint("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(
            registry_endpoint("example.registry/repo/image:v1"),
            "example.registry:443"
        );
        assert_eq!(registry_endpoint("localhost/x:1"), "localhost:443");
        assert_eq!(
            registry_endpoint("library/busybox:1"),
            "registry-1.docker.io:443"
        );
        assert_eq!(registry_endpoint("busybox:1"), "registry-1.docker.io:443");
    }

    #[test]
    fn a_seed_004_request_becomes_a_clone_build_push_pipeline_that_parses() {
        let req = BuildRequest {
            repo_url: "https://github.com/example/repo.git".into(),
            branch: Some("main".into()),
            tag: Some("v1.0.0".into()),
            registry: Some("example.registry/repo/image".into()),
            dockerfile_path: Some("Dockerfile".into()),
            push: true,
            dry_run: true,
            notify: Notify::default(),
        };
        let (text, inputs) = build_pipeline(&req).expect("pipeline");
        let (p, diags) = kiln_pipeline::parse("build.yaml", &text);
        assert!(diags.is_empty(), "{}", kiln_pipeline::render(&diags));
        let p = p.expect("pipeline");
        assert_eq!(p.name.value, "build-repo");
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.value.as_str()).collect();
        assert_eq!(ids, ["clone", "build", "push"]);
        assert_eq!(
            p.steps[1].with.value["tags"][0],
            "${{ event.inputs.image }}"
        );
        assert_eq!(inputs["image"], "example.registry/repo/image:v1.0.0");
        assert_eq!(inputs["dockerfile"], "Dockerfile");
        assert_eq!(inputs["build"]["dry_run"], true);
        assert_eq!(p.steps[0].allow.net[0].value, "github.com:443");
        assert_eq!(p.steps[2].allow.net[0].value, "example.registry:443");
        // Everything else is the committed file, byte for byte.
        let back = text
            .replacen("name: \"build-repo\"", "name: build-image", 1)
            .replacen("\"github.com:443\"", "\"git.example.com:443\"", 1)
            .replacen(
                "\"example.registry:443\"",
                "\"registry.example.com:443\"",
                1,
            );
        assert_eq!(back, BUILD_PIPELINE);
    }

    #[test]
    fn a_build_of_a_local_repository_grants_its_clone_no_network() {
        let req = BuildRequest {
            repo_url: "/srv/git/app.git".into(),
            branch: None,
            tag: None,
            registry: None,
            dockerfile_path: None,
            push: false,
            dry_run: false,
            notify: Notify::default(),
        };
        let (text, inputs) = build_pipeline(&req).expect("pipeline");
        let (p, diags) = kiln_pipeline::parse("build.yaml", &text);
        assert!(diags.is_empty(), "{}", kiln_pipeline::render(&diags));
        let p = p.expect("pipeline");
        assert!(p.steps[0].allow.net.is_empty());
        assert_eq!(inputs["image"], "kiln.local/app:latest");
    }

    #[test]
    fn a_build_that_pushes_needs_a_registry_and_a_sane_tag() {
        let mut req = BuildRequest {
            repo_url: "https://github.com/example/repo.git".into(),
            branch: None,
            tag: None,
            registry: None,
            dockerfile_path: None,
            push: true,
            dry_run: false,
            notify: Notify::default(),
        };
        assert!(build_pipeline(&req).is_err());
        req.push = false;
        assert!(build_pipeline(&req).is_ok());
        req.tag = Some("bad tag".into());
        assert!(build_pipeline(&req).is_err());
    }
}
