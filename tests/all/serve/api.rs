//! The runs API: tokens, runs of inline pipelines, logs, listing, cancel, retry, the fail
//! queue and notifications, the OpenAPI document, metrics.

use std::time::Duration;

use serde_json::json;

use super::{NOTIFY_SECRET, Receiver, Server, TOKEN, http, slow_step, tool};

fn echo_pipeline() -> String {
    "name: hello\nsteps:\n  - id: greet\n    uses: echo\n    with: { message: \"hello ${{ event.inputs.who }}\" }\n  - id: after\n    uses: echo\n    needs: [greet]\n    with: { message: \"then ${{ steps.greet.outputs.message }}\" }\n".to_owned()
}

#[test]
fn requests_without_a_valid_bearer_token_are_refused_and_health_needs_none() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let missing = http(&server.addr, "GET", "/v1/runs", &[], b"");
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert_eq!(missing.json()["error"]["code"], "unauthorized");
    assert!(missing.header("www-authenticate").is_some());
    let wrong = http(
        &server.addr,
        "POST",
        "/v1/runs",
        &[("authorization", "Bearer kiln_not_the_token_at_all")],
        br#"{"pipeline_yaml": "name: x"}"#,
    );
    assert_eq!(wrong.status, 401);
    let prefix = http(
        &server.addr,
        "GET",
        "/v1/runs",
        &[(
            "authorization",
            &format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        )],
        b"",
    );
    assert_eq!(prefix.status, 401, "a prefix of the token is not the token");
    assert_eq!(server.get("/v1/runs").status, 200);
    let health = http(&server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn the_server_will_not_start_without_api_tokens() {
    let home = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-under-test"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(home.path())
        .env_remove("KILN_API_TOKENS")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KILN_API_TOKENS"), "{err}");
}

#[test]
fn an_inline_pipeline_runs_and_its_steps_logs_and_listing_are_served() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let posted = server.post(
        "/v1/runs",
        &json!({ "pipeline_yaml": echo_pipeline(), "inputs": { "who": "kiln" } }),
    );
    assert_eq!(posted.status, 202, "{}", posted.body);
    let id = posted.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(
        posted.header("location"),
        Some(format!("/v1/runs/{id}").as_str())
    );
    let run = server.wait_finished(&id, Duration::from_secs(60));
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["pipeline"], "hello");
    assert_eq!(run["attempt"], 1);
    let steps = run["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["id"], "greet");
    assert_eq!(steps[0]["state"], "succeeded");
    assert_eq!(steps[0]["outputs"]["message"], "hello kiln");
    assert_eq!(steps[1]["outputs"]["message"], "then hello kiln");
    assert!(steps[1]["duration_ms"].is_u64());

    let plain = server.get(&format!("/v1/runs/{id}/logs"));
    assert_eq!(plain.status, 200);
    assert!(
        plain
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert!(
        plain.body.contains("[greet] hello kiln\n"),
        "{}",
        plain.body
    );

    // Server-sent events replay the stored lines, then end with the run's state.
    let sse = http(
        &server.addr,
        "GET",
        &format!("/v1/runs/{id}/logs"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("accept", "text/event-stream"),
        ],
        b"",
    );
    assert_eq!(sse.status, 200);
    assert!(sse.body.contains("event: log"), "{}", sse.body);
    assert!(sse.body.contains("\"line\":\"hello kiln\""), "{}", sse.body);
    let end = sse.body.rfind("event: end").expect("an end event");
    assert!(sse.body[end..].contains("\"state\":\"succeeded\""));
    // Resuming after the last id sent gives only the end.
    let last_id = sse
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .next_back()
        .expect("ids")
        .to_owned();
    let resumed = http(
        &server.addr,
        "GET",
        &format!("/v1/runs/{id}/logs"),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("accept", "text/event-stream"),
            ("last-event-id", &last_id),
        ],
        b"",
    );
    assert!(!resumed.body.contains("event: log"), "{}", resumed.body);
    assert!(resumed.body.contains("event: end"));

    // A second run, then listing with filters and pagination.
    let second = server.create_run(&json!({ "pipeline_yaml": echo_pipeline() }));
    server.wait_finished(&second, Duration::from_secs(60));
    let page = server.get("/v1/runs?state=succeeded&limit=1").json();
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["runs"][0]["id"], second.as_str(), "newest first");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let next = server
        .get(&format!("/v1/runs?state=succeeded&limit=1&cursor={cursor}"))
        .json();
    assert_eq!(next["runs"][0]["id"], id.as_str());
    assert_eq!(
        server.get("/v1/runs?pipeline=hello").json()["runs"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        server.get("/v1/runs?pipeline=other").json()["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(
        server.get("/v1/runs?state=queued").json()["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    assert_eq!(server.get("/v1/runs?state=bogus").status, 400);
    assert_eq!(server.get("/v1/runs/not-a-run").status, 404);
}

#[test]
fn a_pipeline_with_errors_is_refused_with_its_diagnostics_before_it_is_stored() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let r = server.post(
        "/v1/runs",
        &json!({ "pipeline_yaml": "name: bad\nsteps:\n  - id: a\n    uses: echo\n    neds: [b]\n" }),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["diagnostics"][0]["code"], "K003");
    assert!(
        e["error"]["rendered"]
            .as_str()
            .unwrap_or_default()
            .contains("pipeline_yaml:5:5")
    );
    let r = server.post("/v1/runs", &json!({ "pipeline": ".kiln/x.yaml" }));
    assert_eq!(r.status, 422, "a path needs a repository");
    let r = server.post(
        "/v1/runs",
        &json!({ "pipeline_yaml": echo_pipeline(), "colour": 1 }),
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("colour"), "{}", r.body);
    let r = server.post(
        "/v1/runs",
        &json!({ "pipeline_yaml": echo_pipeline(), "repo_url": "/etc" }),
    );
    assert_eq!(r.status, 422, "local repositories are refused: {}", r.body);
    assert_eq!(
        server.get("/v1/runs").json()["runs"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[test]
fn a_running_run_is_cancelled_on_request() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let yaml = format!("name: slow\nsteps:\n{}", slow_step("wait", 60_000));
    let id = server.create_run(&json!({ "pipeline_yaml": yaml }));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.get(&format!("/v1/runs/{id}")).json()["steps"][0]["state"] != "running" {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = server.post(&format!("/v1/runs/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let run = server.wait_finished(&id, Duration::from_secs(20));
    assert_eq!(run["state"], "cancelled", "{run:#}");
    assert_eq!(run["steps"][0]["state"], "cancelled");
    assert_eq!(
        server
            .post(&format!("/v1/runs/{id}/cancel"), &json!({}))
            .status,
        409
    );
}

#[test]
fn a_run_that_keeps_failing_is_retried_with_backoff_then_lands_in_the_fail_queue_and_on_failure_hears_of_it()
 {
    let home = tempfile::tempdir().expect("tmp");
    let receiver = Receiver::start();
    let server = Server::start(home.path(), "a", &[("KILN_RUN_ATTEMPTS", "2".into())]);
    let yaml = format!(
        "name: broken\nsteps:\n  - id: write\n    uses: {}\n    with: {{ behaviour: panic }}\n",
        crate::support::plugin("hostile").display()
    );
    let id = server.create_run(&json!({
        "pipeline_yaml": yaml,
        "notify": { "on_failure": [receiver.url], "on_success": [receiver.url] }
    }));
    let run = server.wait_finished(&id, Duration::from_secs(60));
    assert_eq!(run["state"], "failed", "{run:#}");
    assert_eq!(run["attempt"], 2, "one retry after the first failure");
    assert_eq!(run["failed_queue"], true);
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("step `write` failed")
    );
    let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
    assert!(
        logs.contains("attempt 1 failed; the run is queued again"),
        "{logs}"
    );
    assert!(logs.contains("attempt 2 of 2"), "{logs}");

    let queue = server.get("/v1/fail-queue").json();
    assert_eq!(queue["runs"][0]["id"], id.as_str());

    let got = receiver.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "exactly one notification: {got:?}");
    let (headers, body) = &got[0];
    assert_eq!(
        headers.get("x-kiln-event").map(String::as_str),
        Some("run.failed")
    );
    let notice: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(notice["run"]["id"], id.as_str());
    let sig = headers.get("x-kiln-signature-256").expect("signed");
    // GitHub's own verifier accepts Kiln's signature.
    let (ok, _, err) = tool(&["verify", NOTIFY_SECRET, sig], body);
    assert!(ok, "signature rejected: {err}");
    let (ok, _, _) = tool(&["verify", "another secret", sig], body);
    assert!(!ok);
    let run = server.get(&format!("/v1/runs/{id}")).json();
    assert_eq!(run["notifications"][0]["state"], "delivered");
}

#[test]
fn a_retry_reruns_only_the_failed_step_and_what_needs_it_and_reuses_the_rest() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let hostile = crate::support::plugin("hostile");
    let yaml = format!(
        "name: partly\nsteps:\n  - id: first\n    uses: write-file\n    allow: {{ workspace: write }}\n    with: {{ path: first.txt, content: one }}\n  - id: flaky\n    uses: {}\n    needs: [first]\n    with: {{ behaviour: spin }}\n    timeout: 300ms\n  - id: last\n    uses: echo\n    needs: [flaky]\n    with: {{ message: last }}\n  - id: aside\n    uses: echo\n    with: {{ message: aside }}\n",
        hostile.display()
    );
    let id = server.create_run(&json!({ "pipeline_yaml": yaml, "max_attempts": 1 }));
    let run = server.wait_finished(&id, Duration::from_secs(60));
    assert_eq!(run["state"], "failed", "{run:#}");
    assert_eq!(run["failed_queue"], true);

    let r = server.post(&format!("/v1/runs/{id}/retry"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let retry = r.json()["id"].as_str().expect("id").to_owned();
    let again = server.wait_finished(&retry, Duration::from_secs(60));
    assert_eq!(again["retry_of"], id.as_str());
    let step = |id: &str| {
        again["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no step {id} in {again:#}"))
    };
    let reused = format!("reused from run `{id}`");
    assert_eq!(step("first")["reason"], reused.as_str());
    assert_eq!(
        step("first")["outputs"]["sha256"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(step("aside")["reason"], reused.as_str());
    assert_eq!(step("flaky")["state"], "failed", "it ran again");
    assert!(step("flaky").get("reason").is_none());
    assert_eq!(step("last")["state"], "skipped");
    // The retry stands for the old run in the fail queue.
    let queue = server.get("/v1/fail-queue").json();
    let ids: Vec<&str> = queue["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![retry.as_str()]);
    // A run that succeeded has nothing to retry.
    let ok = server.create_run(&json!({ "pipeline_yaml": echo_pipeline() }));
    server.wait_finished(&ok, Duration::from_secs(60));
    assert_eq!(
        server
            .post(&format!("/v1/runs/{ok}/retry"), &json!({}))
            .status,
        409
    );
}

#[test]
fn the_openapi_document_is_valid_openapi_3_and_metrics_are_prometheus_text() {
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), "a", &[]);
    let doc = http(&server.addr, "GET", "/v1/openapi.json", &[], b"");
    assert_eq!(doc.status, 200);
    let file = home.path().join("openapi.json");
    std::fs::write(&file, &doc.body).expect("write");
    let (ok, out, err) = tool(&["openapi", file.to_str().expect("utf-8")], "");
    assert!(ok, "{out}{err}");
    assert_eq!(doc.json()["openapi"], "3.0.3");

    let id = server.create_run(&json!({ "pipeline_yaml": echo_pipeline() }));
    server.wait_finished(&id, Duration::from_secs(60));
    let m = http(&server.addr, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap_or_default()
            .contains("version=0.0.4")
    );
    assert!(
        m.body.contains("kiln_runs{state=\"succeeded\"} 1\n"),
        "{}",
        m.body
    );
    assert!(m.body.contains("kiln_queue_depth 0\n"));
    assert!(m.body.contains("kiln_step_cache_hits_total 0\n"));
    assert!(
        m.body
            .contains("kiln_step_duration_seconds_count{state=\"succeeded\"} 2\n"),
        "{}",
        m.body
    );
    for line in m.body.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not a sample line: {line}");
    }
}
