//! `POST /v1/webhooks/github` and `POST /v1/webhooks/gitlab`.
//!
//! A delivery is authenticated (GitHub: `X-Hub-Signature-256`, HMAC-SHA256 of the raw body;
//! GitLab: `X-Gitlab-Token`; both compared in constant time), then stored as an event with its
//! delivery id (`X-GitHub-Delivery`; GitLab's `Idempotency-Key` or `X-Gitlab-Event-UUID`) before
//! the answer: a delivery seen before is answered `200` with the first event's id and stored
//! no second time. The worker turns events into runs (it fetches the repository, which is too
//! slow to do before answering: GitHub wants an answer within 10 s).

use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::api::ApiError;
use super::auth::{github_signature_ok, gitlab_token_ok};
use crate::store::{self, Inserted, now_ms};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(app: &AppState, message: &str, hint: &str) -> Response {
    app.metrics
        .webhooks_rejected
        .fetch_add(1, Ordering::Relaxed);
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
        .hint(hint)
        .into_response()
}

fn ignored(app: &AppState, why: String) -> Response {
    app.metrics.webhooks_ignored.fetch_add(1, Ordering::Relaxed);
    (StatusCode::OK, axum::Json(json!({ "ignored": why }))).into_response()
}

async fn store_event(
    app: &AppState,
    provider: &'static str,
    delivery: Option<String>,
    kind: &'static str,
    body: Bytes,
) -> Response {
    // The payload must be JSON the worker can read later.
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return ApiError::bad_request("the webhook body is not a JSON object")
                .hint("configure the webhook with content type `application/json`")
                .into_response();
        }
    };
    if let Err(e) = crate::queue::normalize(provider, kind, &payload) {
        return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload", e)
            .into_response();
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let result = app
        .store
        .write(move |c| {
            store::insert_event(c, provider, delivery.as_deref(), kind, &text, now_ms())
        })
        .await;
    match result {
        Ok(Inserted::New(id)) => {
            app.metrics
                .webhooks_accepted
                .fetch_add(1, Ordering::Relaxed);
            app.worker.wake_events.notify_one();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "event_id": id, "url": format!("/v1/events/{id}") })),
            )
                .into_response()
        }
        Ok(Inserted::Duplicate(id)) => {
            app.metrics
                .webhooks_duplicate
                .fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                axum::Json(
                    json!({ "event_id": id, "duplicate": true, "url": format!("/v1/events/{id}") }),
                ),
            )
                .into_response()
        }
        Err(e) => ApiError::store(e).into_response(),
    }
}

pub async fn github(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = app.config.github_secret.as_deref() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "github webhooks are not configured on this server",
        )
        .hint("set `KILN_GITHUB_SECRET` (or `github.secret_env` in the configuration)")
        .into_response();
    };
    if !github_signature_ok(secret, &body, header(&headers, "x-hub-signature-256")) {
        let hint = if header(&headers, "x-hub-signature-256").is_none() {
            "the delivery has no `X-Hub-Signature-256`: set the webhook's secret in GitHub"
        } else {
            "the webhook's secret in GitHub must equal `KILN_GITHUB_SECRET`"
        };
        return unauthorized(&app, "the webhook signature does not match the body", hint);
    }
    let Some(event) = header(&headers, "x-github-event") else {
        return ApiError::bad_request("the delivery has no `X-GitHub-Event` header")
            .into_response();
    };
    let delivery = header(&headers, "x-github-delivery").map(str::to_owned);
    match event {
        "ping" => {
            let zen = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("zen").cloned())
                .unwrap_or(Value::Null);
            (
                StatusCode::OK,
                axum::Json(json!({ "pong": true, "zen": zen })),
            )
                .into_response()
        }
        "push" => {
            if delivery.is_none() {
                return ApiError::bad_request("the delivery has no `X-GitHub-Delivery` header")
                    .into_response();
            }
            store_event(&app, "github", delivery, "push", body).await
        }
        "pull_request" => {
            let action = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            if !matches!(action.as_str(), "opened" | "synchronize" | "reopened") {
                return ignored(
                    &app,
                    format!("pull_request action `{action}` starts no run"),
                );
            }
            if delivery.is_none() {
                return ApiError::bad_request("the delivery has no `X-GitHub-Delivery` header")
                    .into_response();
            }
            store_event(&app, "github", delivery, "pull_request", body).await
        }
        other => ignored(&app, format!("github event `{other}` starts no run")),
    }
}

pub async fn gitlab(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = app.config.gitlab_token.as_deref() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "gitlab webhooks are not configured on this server",
        )
        .hint("set `KILN_GITLAB_TOKEN` (or `gitlab.secret_env` in the configuration)")
        .into_response();
    };
    if !gitlab_token_ok(secret, header(&headers, "x-gitlab-token")) {
        return unauthorized(
            &app,
            "the `X-Gitlab-Token` is missing or wrong",
            "the webhook's secret token in GitLab must equal `KILN_GITLAB_TOKEN`",
        );
    }
    let delivery = header(&headers, "idempotency-key")
        .or_else(|| header(&headers, "x-gitlab-event-uuid"))
        .map(str::to_owned);
    let kind = match header(&headers, "x-gitlab-event") {
        Some("Push Hook") => "push",
        Some("Tag Push Hook") => "tag_push",
        Some("Merge Request Hook") => {
            let action = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.pointer("/object_attributes/action")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            if !matches!(action.as_str(), "open" | "reopen" | "update") {
                return ignored(
                    &app,
                    format!("merge request action `{action}` starts no run"),
                );
            }
            "merge_request"
        }
        Some(other) => return ignored(&app, format!("gitlab event `{other}` starts no run")),
        None => {
            return ApiError::bad_request("the delivery has no `X-Gitlab-Event` header")
                .into_response();
        }
    };
    store_event(&app, "gitlab", delivery, kind, body).await
}
