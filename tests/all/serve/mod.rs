//! `kiln serve` end to end: the real server process on a loopback port, real HTTP, the real
//! store file, real plugins, the project's git server, GitHub's own example payloads and
//! signing code (npm, through `tests/webhooks/tool.mjs`).

mod api;
mod builds;
mod durability;
pub mod webhooks;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{repo, text};

pub const TOKEN: &str = "kiln_test_token_0123456789";
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const GITLAB_TOKEN: &str = "gitlab-token-for-tests";
pub const NOTIFY_SECRET: &str = "notify-secret-for-tests";

/// A running `kiln serve`.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Start a server with its data in `home/<name>`, the test settings and `env`.
    pub fn start(home: &Path, name: &str, env: &[(&str, String)]) -> Server {
        Server::start_with(home, name, None, env)
    }

    /// [`Server::start`] with a configuration file (`--config`).
    pub fn start_with(
        home: &Path,
        name: &str,
        config: Option<&Path>,
        env: &[(&str, String)],
    ) -> Server {
        let data = home.join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln-under-test"));
        cmd.current_dir(repo())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.env("KILN_CACHE_DIR", home.join("cache"))
            .env("KILN_API_TOKENS", format!("ci:{TOKEN}"))
            .env("KILN_GITHUB_SECRET", GITHUB_SECRET)
            .env("KILN_GITLAB_TOKEN", GITLAB_TOKEN)
            .env("KILN_NOTIFY_SECRET", NOTIFY_SECRET)
            .env("KILN_LEASE", "3s")
            .env("KILN_RUN_BACKOFF", "200ms")
            .env("KILN_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KILN_DATA_DIR")
            .env_remove("KILN_STORE_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("kiln serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
                let mut l = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let out = log.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("kiln serve did not start:\n{out}");
            }
        };
        Server { child, addr, log }
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kill the process with SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }

    pub fn get(&self, path: &str) -> Resp {
        http(
            &self.addr,
            "GET",
            path,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            b"",
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        http(
            &self.addr,
            "POST",
            path,
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// POST /v1/runs; the run id.
    pub fn create_run(&self, body: &Value) -> String {
        let r = self.post("/v1/runs", body);
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["id"].as_str().expect("id").to_owned()
    }

    /// GET /v1/runs/{id} until the run has finished.
    pub fn wait_finished(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get(&format!("/v1/runs/{id}"));
            assert_eq!(r.status, 200, "{}", r.body);
            let run = r.json();
            if matches!(
                run["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} has not finished: {run:#}\nserver log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request over a new connection (`Connection: close`), read to the end.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A received request: its headers (lowercase names) and body.
pub type Received = (BTreeMap<String, String>, String);

/// Receives notifications: every POST is answered 200 and kept.
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
            }
        });
        Receiver { url, got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Wait until `n` notifications arrived (or `within` passed); all of them.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `node_modules` with the npm packages of `scripts/webhook-fixtures.sh` (installed once).
pub fn node_modules() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/webhook-fixtures.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/webhook-fixtures.sh runs");
        assert!(
            out.status.success(),
            "scripts/webhook-fixtures.sh failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    })
}

/// `node tests/webhooks/tool.mjs ARGS` with `stdin`; (exit ok, stdout, stderr).
pub fn tool(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new("node")
        .arg(repo().join("tests/webhooks/tool.mjs"))
        .args(args)
        .env("KILN_NODE_MODULES", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("node finishes");
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A pipeline step that takes about `ms` and then lets the run go on: the `hostile` test
/// plugin spins until its timeout, and `continue-on-error` keeps the run successful.
pub fn slow_step(id: &str, ms: u64) -> String {
    format!(
        "  - id: {id}\n    uses: {}\n    with: {{ behaviour: spin }}\n    timeout: {ms}ms\n    continue-on-error: true\n",
        crate::support::plugin("hostile").display()
    )
}
