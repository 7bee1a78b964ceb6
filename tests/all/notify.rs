//! The `notify` built-in and the host's `http` interface through `kiln run`, against a webhook
//! receiver this test starts on 127.0.0.1 (`tests/support/http_server.py`, Python's http.server)
//! that records every request and checks the HMAC-SHA256 signature with Python's own hmac.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{kiln_run, kiln_run_env, plugin, repo, step, text};

const KEY: &str = "hook-signing-key-5be1";
const TOKEN: &str = "bearer-token-c07a";

/// The receiver: two servers ("main" and "other") and the file they record requests in.
pub(crate) struct Receiver {
    child: Child,
    main: u16,
    other: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(tls: Option<(&Path, &Path)>) -> Receiver {
        Receiver::start_with_key(KEY, tls)
    }

    /// A receiver that checks signatures made with `signing_key`.
    pub(crate) fn start_with_key(signing_key: &str, tls: Option<(&Path, &Path)>) -> Receiver {
        let dir = tempfile::tempdir().expect("tmp");
        let record = dir.path().join("requests.jsonl");
        let key = dir.path().join("key");
        std::fs::write(&key, signing_key).expect("key");
        let mut cmd = Command::new("python3");
        cmd.arg(repo().join("tests/support/http_server.py"))
            .arg("--record")
            .arg(&record)
            .arg("--key-file")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 runs (scripts/install-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ports");
        let ports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(ports.len(), 2, "the receiver printed `{line}`");
        Receiver {
            child,
            main: ports[0],
            other: ports[1],
            record,
            _dir: dir,
        }
    }

    pub(crate) fn net(&self) -> String {
        format!("127.0.0.1:{}", self.main)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.main)
    }

    pub(crate) fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn no_secrets_in(out: &std::process::Output) {
    for t in [text(&out.stdout), text(&out.stderr)] {
        assert!(!t.contains(KEY), "the signing key leaked:\n{t}");
        assert!(!t.contains(TOKEN), "the token leaked:\n{t}");
    }
}

#[test]
fn a_signed_notification_reaches_the_receiver_which_verifies_it_and_its_answer_flows_on() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: notify
steps:
  - id: image
    uses: echo
    with: {{ message: "registry.example.com/team/app@sha256:abc" }}
  - id: tell
    uses: notify
    needs: [image]
    allow: {{ net: ["{net}"] }}
    secrets: [HOOK_KEY, DEPLOY_TOKEN]
    with:
      url: {url}
      headers: {{ X-Team: ml, X-Build: 42 }}
      json: {{ image: "${{{{ steps.image.outputs.message }}}}", ready: true }}
      sign-with: HOOK_KEY
      auth: {{ bearer: DEPLOY_TOKEN }}
  - id: show
    uses: echo
    needs: [tell]
    with: {{ message: "notebook at ${{{{ steps.tell.outputs.json.url }}}} (${{{{ steps.tell.outputs.status }}}})" }}
"#,
        net = r.net(),
        url = r.url("/hook"),
    );
    let (out, run) = kiln_run(
        home.path(),
        &pipeline,
        &[("HOOK_KEY", KEY), ("DEPLOY_TOKEN", TOKEN)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tell = step(&run, "tell");
    assert_eq!(tell["outputs"]["status"], 200);
    assert_eq!(
        tell["outputs"]["json"]["url"],
        "https://notebooks.example.com/ready"
    );
    assert!(
        step(&run, "show")["outputs"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("notebook at https://notebooks.example.com/ready"),
        "{run:#}"
    );
    let got = r.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    let req = &got[0];
    assert_eq!(req["method"], "POST");
    assert_eq!(req["path"], "/hook");
    assert_eq!(req["signature"], "valid", "Python's hmac disagrees: {req}");
    let body: serde_json::Value =
        serde_json::from_str(req["body"].as_str().unwrap_or_default()).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "image": "registry.example.com/team/app@sha256:abc", "ready": true })
    );
    let headers = &req["headers"];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(headers["x-team"], "ml");
    assert_eq!(headers["x-build"], "42");
    assert_eq!(headers["x-kiln-attempt"], "1");
    assert_eq!(
        headers["x-kiln-delivery"],
        format!("{}/tell", run["id"].as_str().unwrap_or_default())
    );
    assert!(
        headers["user-agent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("kiln/"),
        "{headers}"
    );
    no_secrets_in(&out);
}

#[test]
fn a_url_missing_from_allow_net_is_denied_never_contacted_and_not_retried() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: notify-denied
steps:
  - id: tell
    uses: notify
    allow: {{ net: ["127.0.0.1:{other}"] }}
    retry: {{ attempts: 3, backoff: 100ms }}
    with: {{ url: "{url}", body: hello }}
"#,
        other = r.other,
        url = r.url("/hook"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(!out.status.success());
    let tell = step(&run, "tell");
    let error = tell["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("add `allow: {{ net: [\"{}\"] }}`", r.net())),
        "{error}"
    );
    assert_eq!(tell["attempts"], 1, "a denial is not retried");
    assert!(r.requests().is_empty(), "{:?}", r.requests());
}

#[test]
fn a_redirect_to_another_host_is_not_followed_and_that_host_is_never_contacted() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: notify-redirect
steps:
  - id: tell
    uses: notify
    allow: {{ net: ["{net}"] }}
    secrets: [HOOK_KEY]
    with: {{ url: "{url}", json: {{ a: 1 }}, sign-with: HOOK_KEY }}
"#,
        net = r.net(),
        url = r.url("/redirect/other"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[("HOOK_KEY", KEY)]);
    assert!(!out.status.success());
    let error = step(&run, "tell")["error"].as_str().unwrap_or_default();
    assert!(error.contains("which was not followed"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{}", r.other)), "{error}");
    let got = r.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["server"], "main");
    no_secrets_in(&out);
}

#[test]
fn a_500_fails_the_step_with_the_status_and_body_and_is_retried_with_the_same_delivery_id() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: notify-500
steps:
  - id: tell
    uses: notify
    allow: {{ net: ["{net}"] }}
    retry: {{ attempts: 2, backoff: 100ms }}
    with: {{ url: "{url}", body: "build failed" }}
"#,
        net = r.net(),
        url = r.url("/status/500"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(!out.status.success());
    let tell = step(&run, "tell");
    let error = tell["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("answered 500 Internal Server Error, expected 2xx"),
        "{error}"
    );
    assert!(error.contains("status 500 from the test server"), "{error}");
    assert_eq!(tell["attempts"], 2, "a 500 is retried");
    let got = r.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0]["headers"]["x-kiln-delivery"],
        got[1]["headers"]["x-kiln-delivery"]
    );
    assert_eq!(got[0]["headers"]["x-kiln-attempt"], "1");
    assert_eq!(got[1]["headers"]["x-kiln-attempt"], "2");
    assert_eq!(
        got[0]["headers"]["content-type"],
        "text/plain; charset=utf-8"
    );
}

#[test]
fn a_flaky_receiver_succeeds_on_a_retry_and_expected_statuses_can_be_set() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: notify-flaky
steps:
  - id: tell
    uses: notify
    allow: {{ net: ["{net}"] }}
    retry: {{ attempts: 3, backoff: 100ms }}
    with: {{ url: "{flaky}" }}
  - id: gone
    uses: notify
    allow: {{ net: ["{net}"] }}
    with: {{ url: "{gone}", method: DELETE, expect-status: [204, 404] }}
  - id: refused
    uses: notify
    allow: {{ net: ["{net}"] }}
    retry: {{ attempts: 3, backoff: 100ms }}
    continue-on-error: true
    with: {{ url: "{refused}" }}
"#,
        net = r.net(),
        flaky = r.url("/flaky?fail=1"),
        gone = r.url("/status/404"),
        refused = r.url("/status/422"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "tell")["attempts"], 2);
    assert_eq!(step(&run, "tell")["outputs"]["body"], "ok after 2\n");
    assert_eq!(step(&run, "gone")["outputs"]["status"], 404);
    let refused = step(&run, "refused");
    assert_eq!(refused["attempts"], 1, "a 422 is not retried");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("answered 422"),
        "{refused}"
    );
    assert!(
        r.requests()
            .iter()
            .any(|q| q["method"] == "DELETE" && q["path"] == "/status/404")
    );
}

/// A CA and a certificate for 127.0.0.1 it signed, made with the openssl CLI:
/// (ca.pem, leaf.pem, leaf.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=kiln test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn tls_is_verified_against_the_trusted_roots_and_a_downgrade_redirect_is_refused() {
    let home = tempfile::tempdir().expect("tmp");
    let (ca, cert, key) = certificates(home.path());
    let r = Receiver::start(Some((&cert, &key)));
    let pipeline = |path: &str| {
        format!(
            r#"
name: notify-tls
steps:
  - id: tell
    uses: notify
    allow: {{ net: ["{net}"] }}
    secrets: [HOOK_KEY]
    retry: {{ attempts: 2, backoff: 100ms }}
    with: {{ url: "https://127.0.0.1:{port}{path}", json: {{ tls: true }}, sign-with: HOOK_KEY }}
"#,
            net = r.net(),
            port = r.main,
        )
    };
    // The test CA is not in the system's store: refused, nothing sent, not retried.
    let (out, run) = kiln_run(home.path(), &pipeline("/hook"), &[("HOOK_KEY", KEY)]);
    assert!(!out.status.success());
    let tell = step(&run, "tell");
    let error = tell["error"].as_str().unwrap_or_default();
    assert!(error.contains("the TLS connection to"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(tell["attempts"], 1);
    assert!(r.requests().is_empty());

    // Trusting the CA (`SSL_CERT_FILE`, as OpenSSL tools read it), the request goes through.
    let ca = ca.to_str().expect("utf-8");
    let env = [("SSL_CERT_FILE", ca)];
    let (out, run) = kiln_run_env(home.path(), &pipeline("/hook"), &[("HOOK_KEY", KEY)], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(step(&run, "tell")["outputs"]["status"], 200);
    let got = r.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["signature"], "valid");

    // A redirect from https to plain http is not followed, even to the same host and port.
    let (out, run) = kiln_run_env(
        home.path(),
        &pipeline("/redirect/downgrade"),
        &[("HOOK_KEY", KEY)],
        &env,
    );
    assert!(!out.status.success());
    let error = step(&run, "tell")["error"].as_str().unwrap_or_default();
    assert!(error.contains("leaves https for plain http"), "{error}");
    assert_eq!(r.requests().len(), 2);
}

#[test]
fn a_plugin_without_the_http_capability_cannot_send_and_an_http_plugin_gets_no_raw_sockets() {
    let home = tempfile::tempdir().expect("tmp");
    let r = Receiver::start(None);
    let pipeline = format!(
        r#"
name: http-grants
steps:
  - id: undeclared
    uses: {hostile}
    continue-on-error: true
    with: {{ behaviour: http-undeclared, addr: "{net}" }}
  - id: probe
    uses: {probe}
    allow: {{ net: ["{net}"] }}
    with: {{ socket: "{net}", get: "{url}" }}
"#,
        hostile = plugin("hostile").display(),
        probe = plugin("http-probe").display(),
        net = r.net(),
        url = r.url("/hook"),
    );
    let (out, run) = kiln_run(home.path(), &pipeline, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let undeclared = step(&run, "undeclared");
    assert!(
        undeclared["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not declare the `http` capability"),
        "{undeclared}"
    );
    let probe = step(&run, "probe");
    assert!(
        probe["outputs"]["socket"]
            .as_str()
            .unwrap_or_default()
            .starts_with("refused"),
        "{probe}"
    );
    assert_eq!(probe["outputs"]["status"], 200);
    // Only the probe's request through the host arrived.
    assert_eq!(r.requests().len(), 1, "{:?}", r.requests());
}
