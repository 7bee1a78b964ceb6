//! `kiln_http::Client` against a real HTTP server on 127.0.0.1: `tests/support/http_server.py`
//! (Python's http.server), which records every request it gets and checks signatures with
//! Python's own hmac. It runs two servers, "main" and "other", so that a test can tell whether
//! a host it did not allow was contacted.

// Fixture setup panics on failure.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_http::{Client, HttpError, Method, Request, Signing, Url};

const KEY: &str = "webhook-key-3f9a";

struct Server {
    child: Child,
    main: u16,
    other: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Server {
    fn start(tls: Option<(&Path, &Path)>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("requests.jsonl");
        let key = dir.path().join("key");
        std::fs::write(&key, KEY).unwrap();
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
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 2, "the server printed `{line}`");
        Server {
            child,
            main: ports[0],
            other: ports[1],
            record,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.main)
    }

    /// The requests the servers received, oldest first.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn client() -> Client {
    Client::new("kiln-test/1").unwrap()
}

fn request(method: Method, url: &str) -> Request {
    Request {
        method,
        url: url.to_string(),
        headers: Vec::new(),
        secret_headers: Vec::new(),
        body: Vec::new(),
        signature: None,
        timeout: Duration::from_secs(10),
        max_redirects: 5,
        max_response_bytes: 1 << 20,
    }
}

fn signed(mut r: Request, body: &str) -> Request {
    r.body = body.as_bytes().to_vec();
    r.signature = Some(Signing {
        key: KEY.as_bytes().to_vec(),
        header: kiln_http::DEFAULT_SIGNATURE_HEADER.into(),
    });
    r
}

/// Allows exactly these `host:port`s.
fn only(allowed: Vec<String>) -> impl Fn(&str, &Url) -> Result<(), String> + Sync {
    move |endpoint: &str, _: &Url| {
        if allowed.iter().any(|a| a == endpoint) {
            Ok(())
        } else {
            Err(format!("`{endpoint}` is not allowed"))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_signed_post_arrives_with_a_signature_python_verifies_and_the_answer_is_read() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let mut r = signed(
        request(Method::POST, &s.url("/hook")),
        r#"{"image":"app@sha256:1"}"#,
    );
    r.headers
        .push(("Content-Type".into(), "application/json".into()));
    r.secret_headers
        .push(("Authorization".into(), "Bearer tok-123".into()));
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.status, 200);
    assert!(!resp.truncated);
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["url"], "https://notebooks.example.com/ready");
    let got = s.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["method"], "POST");
    assert_eq!(got[0]["signature"], "valid");
    assert_eq!(got[0]["body"], r#"{"image":"app@sha256:1"}"#);
    assert_eq!(got[0]["headers"]["content-type"], "application/json");
    assert_eq!(got[0]["headers"]["authorization"], "Bearer tok-123");
    assert_eq!(got[0]["headers"]["user-agent"], "kiln-test/1");
}

#[test]
fn a_signature_with_another_key_does_not_verify() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let mut r = signed(request(Method::POST, &s.url("/hook")), "payload");
    r.signature = Some(Signing {
        key: b"not-the-key".to_vec(),
        header: kiln_http::DEFAULT_SIGNATURE_HEADER.into(),
    });
    runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(s.requests()[0]["signature"], "invalid");
}

#[test]
fn a_url_the_grant_check_refuses_is_never_contacted() {
    let s = Server::start(None);
    let allow = only(vec!["example.com:443".into()]);
    let e = runtime()
        .block_on(client().send(&request(Method::POST, &s.url("/hook")), &allow))
        .unwrap_err();
    assert!(matches!(e, HttpError::Denied(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains(&format!("`127.0.0.1:{}` is not allowed", s.main)),
        "{e}"
    );
    assert!(s.requests().is_empty());
}

#[test]
fn a_redirect_to_an_unlisted_host_is_not_followed_and_that_host_never_contacted() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let r = signed(request(Method::POST, &s.url("/redirect/other")), "x");
    let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
    assert!(matches!(e, HttpError::Denied(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("redirected to"), "{msg}");
    assert!(msg.contains("which was not followed"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{}", s.other)), "{msg}");
    let got = s.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["server"], "main");
}

#[test]
fn a_307_to_the_same_host_is_followed_with_the_body_and_its_signature() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let r = signed(request(Method::POST, &s.url("/redirect/same")), "again");
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.redirects, 1);
    assert_eq!(resp.url, s.url("/hook"));
    let got = s.requests();
    assert_eq!(got[1]["path"], "/hook");
    assert_eq!(got[1]["method"], "POST");
    assert_eq!(got[1]["body"], "again");
    assert_eq!(got[1]["signature"], "valid");
}

#[test]
fn credentials_are_dropped_when_a_redirect_changes_host_even_to_an_allowed_one() {
    let s = Server::start(None);
    let allow = only(vec![
        format!("127.0.0.1:{}", s.main),
        format!("127.0.0.1:{}", s.other),
    ]);
    let mut r = request(Method::GET, &s.url("/redirect/other"));
    r.secret_headers
        .push(("X-Api-Key".into(), "key-for-main-only".into()));
    r.headers
        .push(("Authorization".into(), "Bearer for-main".into()));
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.status, 200);
    let got = s.requests();
    assert_eq!(got[0]["headers"]["x-api-key"], "key-for-main-only");
    assert_eq!(got[1]["server"], "other");
    assert!(got[1]["headers"].get("x-api-key").is_none(), "{got:?}");
    assert!(got[1]["headers"].get("authorization").is_none(), "{got:?}");
}

#[test]
fn redirects_are_bounded_and_can_be_turned_off() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let e = runtime()
        .block_on(client().send(&request(Method::GET, &s.url("/redirect/loop")), &allow))
        .unwrap_err();
    assert!(
        matches!(e, HttpError::TooManyRedirects { max: 5, .. }),
        "{e:?}"
    );
    assert_eq!(s.requests().len(), 6);
    let mut r = request(Method::GET, &s.url("/redirect/other"));
    r.max_redirects = 0;
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.status, 302);
    assert!(
        resp.headers
            .iter()
            .any(|(n, v)| n == "location" && v.contains(&s.other.to_string()))
    );
}

#[test]
fn a_long_body_is_cut_at_the_limit_and_marked_truncated() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let mut r = request(Method::GET, &s.url("/big?bytes=300000"));
    r.max_response_bytes = 1000;
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.body.len(), 1000);
    assert!(resp.truncated);
    r.max_response_bytes = 1 << 20;
    let resp = runtime().block_on(client().send(&r, &allow)).unwrap();
    assert_eq!(resp.body.len(), 300_000);
    assert!(!resp.truncated);
}

#[test]
fn a_slow_server_times_out_and_a_closed_port_is_unreachable_both_retryable() {
    let s = Server::start(None);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let allow = only(vec![
        format!("127.0.0.1:{}", s.main),
        format!("127.0.0.1:{closed}"),
    ]);
    let mut r = request(Method::GET, &s.url("/slow?ms=3000"));
    r.timeout = Duration::from_millis(300);
    let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    assert!(e.retryable());
    let r = request(Method::GET, &format!("http://127.0.0.1:{closed}/"));
    let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
    assert!(matches!(e, HttpError::Unreachable { .. }), "{e:?}");
    assert!(e.retryable());
}

#[test]
fn headers_the_client_owns_or_that_would_break_the_request_are_refused() {
    let s = Server::start(None);
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let cases = [
        (("Host", "evil.example.com"), "set by the HTTP client"),
        (("Content-Length", "1"), "set by the HTTP client"),
        (
            ("X-Kiln-Signature-256", "sha256=forged"),
            "where the signature goes",
        ),
        (("X-Bad", "line\r\nInjected: 1"), "not valid"),
        (("Bad Name", "x"), "not a valid header name"),
    ];
    for ((name, value), expected) in cases {
        let mut r = signed(request(Method::POST, &s.url("/hook")), "x");
        r.headers.push((name.into(), value.into()));
        let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
        assert!(e.to_string().contains(expected), "{name}: {e}");
    }
    let mut r = request(Method::POST, &s.url("/hook"));
    r.headers.push(("Authorization".into(), "Bearer a".into()));
    r.secret_headers
        .push(("authorization".into(), "Bearer b".into()));
    let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
    assert!(e.to_string().contains("set twice"), "{e}");
    assert!(!e.to_string().contains("Bearer b"), "{e}");
    assert!(s.requests().is_empty());
}

/// A self-signed certificate for 127.0.0.1, made with the openssl CLI.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[test]
fn a_certificate_the_system_does_not_trust_is_a_tls_error_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let s = Server::start(Some((&cert, &key)));
    let allow = only(vec![format!("127.0.0.1:{}", s.main)]);
    let r = signed(
        request(Method::POST, &format!("https://127.0.0.1:{}/hook", s.main)),
        "x",
    );
    let e = runtime().block_on(client().send(&r, &allow)).unwrap_err();
    assert!(matches!(e, HttpError::Tls { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(s.requests().is_empty());
}
