//! The OpenAPI 3.0 document of the API (`GET /v1/openapi.json`). Written by hand; a test
//! checks it against the router (every route documented, nothing documented that is not
//! routed) and the end-to-end tests validate it with an independent OpenAPI validator.

use serde_json::{Value, json};

fn err(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn ok_json(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn id_param() -> Value {
    json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The run id." })
}

/// The `(method, path)` pairs the document describes, for the router check.
pub fn operations() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys().filter(|k| *k != "parameters") {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Kiln",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs of Kiln pipelines over HTTP: trigger runs, follow their logs, cancel and retry them, receive GitHub and GitLab webhooks.",
            "license": { "name": "Apache-2.0" }
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths(),
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        }
    })
}

fn paths() -> Value {
    let unauthorized = err("Missing or invalid bearer token.");
    let webhook_unauthorized = err("The signature (GitHub) or token (GitLab) is missing or wrong.");
    let mut paths = serde_json::Map::new();
    paths.insert("/healthz".to_owned(), json!({
                "get": {
                    "operationId": "healthz", "summary": "Liveness and store reachability.", "security": [],
                    "responses": {
                        "200": { "description": "The server and its store answer.", "content": { "application/json": { "schema": { "type": "object", "properties": { "status": { "type": "string" }, "worker": { "type": "string" } } } } } },
                        "503": { "description": "The store does not answer." }
                    }
                }
            }));
    paths.insert("/metrics".to_owned(), json!({
                "get": {
                    "operationId": "metrics", "summary": "Prometheus metrics (text exposition format 0.0.4).", "security": [],
                    "responses": { "200": { "description": "Runs by state, queue depth, fail queue, step durations, cache hits, webhook and notification counters.", "content": { "text/plain": { "schema": { "type": "string" } } } } }
                }
            }));
    paths.insert("/v1/openapi.json".to_owned(), json!({
                "get": {
                    "operationId": "openapi", "summary": "This document.", "security": [],
                    "responses": { "200": { "description": "The OpenAPI document.", "content": { "application/json": { "schema": { "type": "object" } } } } }
                }
            }));
    paths.insert("/v1/runs".to_owned(), json!({
                "post": {
                    "operationId": "createRun", "summary": "Queue a run of a pipeline (a path in a repository, or inline YAML).",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CreateRun" } } } },
                    "responses": {
                        "202": { "description": "Stored and queued.", "headers": { "Location": { "schema": { "type": "string" } } }, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } },
                        "400": err("The body is not valid JSON of this shape."),
                        "401": unauthorized.clone(),
                        "422": err("The request is well-formed but cannot run (bad URL, pipeline errors with `diagnostics`)."),
                        "503": err("The store is unavailable; nothing was stored.")
                    }
                },
                "get": {
                    "operationId": "listRuns", "summary": "Runs, newest first.",
                    "parameters": [
                        { "name": "state", "in": "query", "schema": { "$ref": "#/components/schemas/RunState" } },
                        { "name": "repo", "in": "query", "schema": { "type": "string" }, "description": "Exact repository URL." },
                        { "name": "pipeline", "in": "query", "schema": { "type": "string" }, "description": "Pipeline name or path." },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500, "default": 50 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" }, "description": "`next_cursor` of the previous page." }
                    ],
                    "responses": { "200": ok_json("A page of runs.", "RunPage"), "400": err("A bad filter."), "401": unauthorized.clone() }
                }
            }));
    paths.insert("/v1/runs/{id}".to_owned(), json!({
                "get": {
                    "operationId": "getRun", "summary": "A run with its steps (states, durations, outputs, errors) and notifications.",
                    "parameters": [id_param()],
                    "responses": { "200": ok_json("The run.", "RunDetail"), "401": unauthorized.clone(), "404": err("No such run.") }
                }
            }));
    paths.insert("/v1/runs/{id}/logs".to_owned(), json!({
                "get": {
                    "operationId": "getRunLogs",
                    "summary": "The run's log: server-sent events (`Accept: text/event-stream`) that replay the stored lines and follow new ones until an `end` event, or the lines so far as plain text.",
                    "parameters": [
                        id_param(),
                        { "name": "after", "in": "query", "schema": { "type": "integer" }, "description": "Only lines after this sequence number (SSE clients may send `Last-Event-ID` instead)." },
                        { "name": "Last-Event-ID", "in": "header", "schema": { "type": "string" } }
                    ],
                    "responses": {
                        "200": { "description": "`log` events (id = sequence number, data = a LogLine) and a final `end` event with the run's state; or text.", "content": { "text/event-stream": { "schema": { "type": "string" } }, "text/plain": { "schema": { "type": "string" } } } },
                        "401": unauthorized.clone(), "404": err("No such run.")
                    }
                }
            }));
    paths.insert("/v1/runs/{id}/cancel".to_owned(), json!({
                "post": {
                    "operationId": "cancelRun", "summary": "Cancel a queued run now, or ask a running one to stop.",
                    "parameters": [id_param()],
                    "responses": {
                        "202": { "description": "Cancelled, or asked to stop.", "content": { "application/json": { "schema": { "type": "object", "properties": { "id": { "type": "string" }, "state": { "type": "string" }, "cancel_requested": { "type": "boolean" } } } } } },
                        "401": unauthorized.clone(), "404": err("No such run."), "409": err("The run has already finished.")
                    }
                }
            }));
    paths.insert("/v1/runs/{id}/retry".to_owned(), json!({
                "post": {
                    "operationId": "retryRun", "summary": "Queue a new run that re-runs only the failed steps and what depends on them, reusing the rest.",
                    "parameters": [id_param()],
                    "responses": {
                        "202": { "description": "The new run is queued.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } },
                        "401": unauthorized.clone(), "404": err("No such run."), "409": err("The run succeeded or has not finished.")
                    }
                }
            }));
    paths.insert("/v1/builds".to_owned(), json!({
                "post": {
                    "operationId": "createBuild", "summary": "A docker-builder-service build request: clone, build with BuildKit, push.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/BuildRequest" } } } },
                    "responses": {
                        "202": { "description": "Stored and queued.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Accepted" } } } },
                        "400": err("The body is not valid JSON of this shape."), "401": unauthorized.clone(), "422": err("The request cannot run.")
                    }
                }
            }));
    paths.insert("/v1/fail-queue".to_owned(), json!({
                "get": {
                    "operationId": "listFailQueue", "summary": "Runs that failed after their last attempt, newest first.",
                    "parameters": [
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500 } },
                        { "name": "cursor", "in": "query", "schema": { "type": "string" } }
                    ],
                    "responses": { "200": ok_json("A page of runs.", "RunPage"), "401": unauthorized.clone() }
                }
            }));
    paths.insert("/v1/events/{id}".to_owned(), json!({
                "get": {
                    "operationId": "getEvent", "summary": "A webhook event: its state, the runs it started, the pipelines it did not start and why.",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "200": ok_json("The event.", "Event"), "401": unauthorized.clone(), "404": err("No such event.") }
                }
            }));
    paths.insert("/v1/webhooks/github".to_owned(), json!({
                "post": {
                    "operationId": "githubWebhook", "summary": "GitHub `push`, `pull_request` and `ping` deliveries, signed with `X-Hub-Signature-256`.", "security": [],
                    "parameters": [
                        { "name": "X-GitHub-Event", "in": "header", "required": true, "schema": { "type": "string" } },
                        { "name": "X-GitHub-Delivery", "in": "header", "schema": { "type": "string" } },
                        { "name": "X-Hub-Signature-256", "in": "header", "required": true, "schema": { "type": "string" } }
                    ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                    "responses": {
                        "200": { "description": "A ping, an ignored event, or a delivery seen before (`duplicate: true`).", "content": { "application/json": { "schema": { "type": "object" } } } },
                        "202": ok_json("The event is stored; its runs are queued shortly.", "EventAccepted"),
                        "400": err("A header is missing or the body is not JSON."),
                        "401": webhook_unauthorized.clone(),
                        "404": err("GitHub webhooks are not configured."),
                        "422": err("The payload lacks what a run needs.")
                    }
                }
            }));
    paths.insert("/v1/webhooks/gitlab".to_owned(), json!({
                "post": {
                    "operationId": "gitlabWebhook", "summary": "GitLab push, tag push and merge request hooks, authenticated by `X-Gitlab-Token`.", "security": [],
                    "parameters": [
                        { "name": "X-Gitlab-Event", "in": "header", "required": true, "schema": { "type": "string" } },
                        { "name": "X-Gitlab-Token", "in": "header", "required": true, "schema": { "type": "string" } },
                        { "name": "Idempotency-Key", "in": "header", "schema": { "type": "string" } }
                    ],
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                    "responses": {
                        "200": { "description": "An ignored event, or a delivery seen before.", "content": { "application/json": { "schema": { "type": "object" } } } },
                        "202": ok_json("The event is stored.", "EventAccepted"),
                        "400": err("A header is missing or the body is not JSON."),
                        "401": webhook_unauthorized,
                        "404": err("GitLab webhooks are not configured."),
                        "422": err("The payload lacks what a run needs.")
                    }
                }
            }));
    Value::Object(paths)
}

fn schemas() -> Value {
    let mut schemas = serde_json::Map::new();
    schemas.insert("Error".to_owned(), json!({
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "hint": { "type": "string" },
                        "diagnostics": { "type": "array", "items": { "type": "object" } }, "rendered": { "type": "string" }
                    } } }
                }));
    schemas.insert("RunState".to_owned(), json!({ "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"] }));
    schemas.insert("StepState".to_owned(), json!({ "type": "string", "enum": ["pending", "running", "succeeded", "failed", "skipped", "cancelled", "cached"] }));
    schemas.insert(
        "Notify".to_owned(),
        json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "on_success": { "type": "array", "items": { "type": "string", "format": "uri" } },
                "on_failure": { "type": "array", "items": { "type": "string", "format": "uri" } }
            }
        }),
    );
    schemas.insert("CreateRun".to_owned(), json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "repo_url": { "type": "string" },
                        "ref": { "type": "string", "description": "Branch or tag." },
                        "sha": { "type": "string", "pattern": "^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$" },
                        "pipeline": { "type": "string", "description": "Path of the pipeline file in the repository." },
                        "pipeline_yaml": { "type": "string", "description": "The pipeline itself." },
                        "inputs": { "type": "object", "description": "Read by expressions as `event.inputs`." },
                        "notify": { "$ref": "#/components/schemas/Notify" },
                        "concurrency": { "type": "object", "required": ["group"], "additionalProperties": false, "properties": {
                            "group": { "type": "string" }, "cancel_in_progress": { "type": "boolean" } } },
                        "max_attempts": { "type": "integer", "minimum": 1, "maximum": 100 }
                    }
                }));
    schemas.insert("BuildRequest".to_owned(), json!({
                    "type": "object", "required": ["repo_url"], "additionalProperties": false,
                    "properties": {
                        "repo_url": { "type": "string" }, "branch": { "type": "string" }, "tag": { "type": "string" },
                        "registry": { "type": "string", "description": "Image repository, e.g. `registry.example.com/team/app`." },
                        "dockerfile_path": { "type": "string" }, "push": { "type": "boolean", "default": true },
                        "dry_run": { "type": "boolean", "default": false }, "notify": { "$ref": "#/components/schemas/Notify" }
                    }
                }));
    schemas.insert("Accepted".to_owned(), json!({
                    "type": "object", "required": ["id", "state"],
                    "properties": { "id": { "type": "string" }, "state": { "type": "string" }, "url": { "type": "string" }, "retry_of": { "type": "string" } }
                }));
    schemas.insert("EventAccepted".to_owned(), json!({
                    "type": "object", "required": ["event_id"],
                    "properties": { "event_id": { "type": "string" }, "url": { "type": "string" }, "duplicate": { "type": "boolean" } }
                }));
    schemas.insert("Run".to_owned(), json!({
                    "type": "object", "required": ["id", "state", "trigger", "attempt", "max_attempts", "created_at"],
                    "properties": {
                        "id": { "type": "string" }, "state": { "$ref": "#/components/schemas/RunState" },
                        "pipeline": { "type": "string" }, "pipeline_path": { "type": "string", "nullable": true },
                        "repo_url": { "type": "string", "nullable": true }, "ref": { "type": "string", "nullable": true },
                        "sha": { "type": "string", "nullable": true }, "trigger": { "type": "string" },
                        "inputs": { "type": "object" }, "attempt": { "type": "integer" }, "max_attempts": { "type": "integer" },
                        "created_at": { "type": "string", "format": "date-time" },
                        "started_at": { "type": "string", "format": "date-time", "nullable": true },
                        "finished_at": { "type": "string", "format": "date-time", "nullable": true },
                        "duration_ms": { "type": "integer", "nullable": true }, "error": { "type": "string", "nullable": true },
                        "retry_of": { "type": "string", "nullable": true }, "failed_queue": { "type": "boolean" },
                        "concurrency_group": { "type": "string", "nullable": true }, "cancel_requested": { "type": "boolean" },
                        "event_id": { "type": "string", "nullable": true }, "worker": { "type": "string", "nullable": true },
                        "next_attempt_at": { "type": "string", "format": "date-time" },
                        "schedule": {
                            "type": "object", "description": "Runs started by a schedule: its name, the cron expression and the slot (RFC 3339).",
                            "properties": { "name": { "type": "string" }, "cron": { "type": "string" }, "slot": { "type": "string", "format": "date-time" } }
                        }
                    }
                }));
    schemas.insert("Step".to_owned(), json!({
                    "type": "object", "required": ["id", "step", "state", "attempts", "outputs"],
                    "properties": {
                        "id": { "type": "string" }, "step": { "type": "string" }, "matrix": { "type": "object" },
                        "state": { "$ref": "#/components/schemas/StepState" }, "attempts": { "type": "integer" },
                        "started_at": { "type": "string" }, "duration_ms": { "type": "integer" }, "outputs": { "type": "object" },
                        "error": { "type": "string" }, "reason": { "type": "string" }, "continue_on_error": { "type": "boolean" }
                    }
                }));
    schemas.insert(
        "RunDetail".to_owned(),
        json!({
            "allOf": [
                { "$ref": "#/components/schemas/Run" },
                { "type": "object", "properties": {
                    "steps": { "type": "array", "items": { "$ref": "#/components/schemas/Step" } },
                    "notifications": { "type": "array", "items": { "type": "object" } } } }
            ]
        }),
    );
    schemas.insert("RunPage".to_owned(), json!({
                    "type": "object", "required": ["runs"],
                    "properties": { "runs": { "type": "array", "items": { "$ref": "#/components/schemas/Run" } }, "next_cursor": { "type": "string", "nullable": true } }
                }));
    schemas.insert("LogLine".to_owned(), json!({
                    "type": "object", "required": ["seq", "at", "stream", "line"],
                    "properties": { "seq": { "type": "integer" }, "at": { "type": "integer", "description": "Unix milliseconds." }, "step": { "type": "string" }, "stream": { "type": "string" }, "line": { "type": "string" } }
                }));
    schemas.insert("Event".to_owned(), json!({
                    "type": "object", "required": ["id", "provider", "kind", "state"],
                    "properties": {
                        "id": { "type": "string" }, "provider": { "type": "string" }, "delivery": { "type": "string" }, "kind": { "type": "string" },
                        "state": { "type": "string", "enum": ["pending", "done", "failed"] }, "attempts": { "type": "integer" },
                        "created_at": { "type": "string" }, "finished_at": { "type": "string" }, "error": { "type": "string" },
                        "runs": { "type": "array", "items": { "type": "string" } }, "skipped": { "type": "array", "items": { "type": "object" } }
                    }
                }));
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes of `server::router`, as written there.
    const ROUTED: &[(&str, &str)] = &[
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/{id}"),
        ("GET", "/v1/runs/{id}/logs"),
        ("POST", "/v1/runs/{id}/cancel"),
        ("POST", "/v1/runs/{id}/retry"),
        ("POST", "/v1/builds"),
        ("GET", "/v1/fail-queue"),
        ("GET", "/v1/events/{id}"),
        ("POST", "/v1/webhooks/github"),
        ("POST", "/v1/webhooks/gitlab"),
    ];

    #[test]
    fn the_document_describes_exactly_the_routed_endpoints() {
        let mut routed: Vec<(String, String)> = ROUTED
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routed.sort();
        assert_eq!(operations(), routed);
        // The router's source names each of them.
        let source = include_str!("mod.rs");
        for (_, path) in ROUTED {
            assert!(
                source.contains(&format!("\"{path}\"")),
                "{path} is not routed"
            );
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
    }
}
