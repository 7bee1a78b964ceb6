//! Nothing accepted is lost: `kill -9` in the middle of runs and of a burst of requests, then
//! a restart; two servers on one store never run one run twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{NOTIFY_SECRET, Receiver, Server, TOKEN, http, slow_step, tool};

fn slow_pipeline(ms: u64) -> String {
    format!(
        "name: slow\nsteps:\n{}  - id: after\n    uses: echo\n    needs: [wait]\n    with: {{ message: done }}\n",
        slow_step("wait", ms)
    )
}

#[test]
fn killing_the_server_in_the_middle_of_runs_and_requests_loses_nothing_it_accepted() {
    let home = tempfile::tempdir().expect("tmp");
    let mut server = Server::start(home.path(), "a", &[("KILN_MAX_RUNS", "2".into())]);
    let slow: Vec<String> = (0..4)
        .map(|_| server.create_run(&json!({ "pipeline_yaml": slow_pipeline(1500) })))
        .collect();
    // Wait until two of them are running.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = server.get("/v1/runs?state=running").json()["runs"]
            .as_array()
            .map_or(0, Vec::len);
        if running == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runs did not start:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A burst of requests from another thread while the server dies.
    let addr = server.addr.clone();
    let burst = std::thread::spawn(move || {
        let mut accepted = Vec::new();
        for _ in 0..200 {
            let body = json!({ "pipeline_yaml": "name: quick\nsteps:\n  - id: a\n    uses: echo\n    with: { message: hi }\n" }).to_string();
            let r = std::panic::catch_unwind(|| {
                http(
                    &addr,
                    "POST",
                    "/v1/runs",
                    &[("authorization", &format!("Bearer {TOKEN}"))],
                    body.as_bytes(),
                )
            });
            match r {
                Ok(r) if r.status == 202 => {
                    accepted.push(r.json()["id"].as_str().unwrap_or_default().to_owned())
                }
                _ => break,
            }
        }
        accepted
    });
    std::thread::sleep(Duration::from_millis(150));
    server.kill9();
    let accepted = burst.join().expect("burst thread");
    assert!(
        !accepted.is_empty(),
        "some requests were accepted before the kill"
    );

    let server = Server::start(home.path(), "a", &[("KILN_MAX_RUNS", "4".into())]);
    let mut interrupted = 0;
    for id in &slow {
        let run = server.wait_finished(id, Duration::from_secs(120));
        assert_eq!(run["state"], "succeeded", "{run:#}\n{}", server.log());
        if run["attempt"] == 2 {
            interrupted += 1;
            let logs = server.get(&format!("/v1/runs/{id}/logs")).body;
            assert!(logs.contains("attempt 1 was interrupted"), "{logs}");
        }
    }
    assert_eq!(interrupted, 2, "the two running runs were resumed");
    for id in &accepted {
        let run = server.wait_finished(id, Duration::from_secs(120));
        assert_eq!(
            run["state"], "succeeded",
            "accepted run {id} was lost: {run:#}"
        );
    }
}

#[test]
fn two_servers_on_one_store_never_run_the_same_run_twice() {
    let home = tempfile::tempdir().expect("tmp");
    let receiver = Receiver::start();
    let store = home.path().join("shared.db").display().to_string();
    let env = [
        ("KILN_STORE_PATH", store.clone()),
        ("KILN_MAX_RUNS", "2".to_owned()),
        ("KILN_NOTIFY_ON_SUCCESS", receiver.url.clone()),
    ];
    let a = Server::start(home.path(), "a", &env);
    let b = Server::start(home.path(), "b", &env);
    let runs: Vec<String> = (0..16)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            server.create_run(&json!({ "pipeline_yaml": slow_pipeline(200) }))
        })
        .collect();
    let mut workers = BTreeSet::new();
    for id in &runs {
        let run = a.wait_finished(id, Duration::from_secs(180));
        assert_eq!(run["state"], "succeeded", "{run:#}");
        assert_eq!(run["attempt"], 1, "{run:#}");
        workers.insert(run["worker"].as_str().unwrap_or_default().to_owned());
        let logs = b.get(&format!("/v1/runs/{id}/logs")).body;
        assert_eq!(logs.matches("attempt 1 of").count(), 1, "{logs}");
    }
    assert_eq!(workers.len(), 2, "both servers took runs: {workers:?}");
    // Every run told the receiver exactly once, with a valid signature.
    let got = receiver.wait_for(runs.len(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let got_after = receiver.received();
    assert_eq!(got_after.len(), got.len(), "more notifications kept coming");
    let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
    for (headers, body) in &got_after {
        let v: Value = serde_json::from_str(body).expect("JSON");
        *per_run
            .entry(v["run"]["id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
        let sig = headers.get("x-kiln-signature-256").expect("signed");
        assert!(tool(&["verify", NOTIFY_SECRET, sig], body).0);
    }
    let expected: BTreeMap<String, usize> = runs.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(per_run, expected);
}
