//! Test fixture: a plugin that misbehaves on purpose. `with: { behaviour: ... }` picks how.

//! The host must fail only this step, within its limits, with a clear error.

#[path = "../../common/net.rs"]
mod net;

use kiln_plugin_sdk::{Context, Info, Plugin, StepError, json, log, set_output};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    behaviour: String,
    #[serde(default)]
    addr: Option<String>,
}

struct Hostile;

impl Plugin for Hostile {
    fn info() -> Info {
        Info::new(
            "hostile",
            env!("CARGO_PKG_VERSION"),
            "misbehaves on purpose (test fixture)",
        )
        .schema(json!({ "type": "object", "required": ["behaviour"] }))
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        match config.behaviour.as_str() {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => core::arch::wasm32::unreachable(),
            "panic" => panic!("the plugin panicked on purpose"),
            "read-outside" => {
                let mut errors = Vec::new();
                for path in [
                    "/etc/passwd",
                    "/workspace/../etc/passwd",
                    "../etc/passwd",
                    "/proc/self/environ",
                ] {
                    match std::fs::read_to_string(path) {
                        Ok(text) => {
                            set_output("leaked", &text)?;
                            return Ok(());
                        }
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                }
                Err(StepError::Failed(format!(
                    "could not read outside the workspace: {}",
                    errors.join("; ")
                )))
            }
            "write-workspace" => {
                let target = ctx.workspace_path("written-by-hostile.txt")?;
                std::fs::write(&target, b"hostile")?;
                set_output("wrote", &true)
            }
            "socket" => {
                let addr = config.addr.unwrap_or_else(|| "127.0.0.1:9".to_owned());
                match net::tcp_connect(&addr) {
                    Ok(()) => set_output("connected", &addr),
                    Err(e) => Err(StepError::Failed(format!("could not connect: {e}"))),
                }
            }
            "env" => {
                let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
                set_output("env", &vars)
            }
            "garbage" => {
                use kiln_plugin_sdk::bindings::kiln::plugin::outputs;
                let a = outputs::set("broken", "{not json");
                let b = outputs::set("bad name!", "1");
                log::info(&format!("host answered {a:?} and {b:?}"));
                Ok(())
            }
            "http-undeclared" => {
                // Asks the host for a request without declaring the `http` capability.
                use kiln_plugin_sdk::http::{self, Method, Request, RequestAuth};
                let url = config
                    .addr
                    .map(|a| format!("http://{a}/"))
                    .unwrap_or_else(|| "http://127.0.0.1:9/".to_owned());
                let response = http::send(&Request {
                    method: Method::Get,
                    url,
                    headers: Vec::new(),
                    body: Vec::new(),
                    auth: RequestAuth::None,
                    sign: None,
                    timeout_ms: None,
                    max_redirects: None,
                    max_response_bytes: None,
                })?;
                set_output("status", &response.status)
            }
            "stdout" => {
                println!("to stdout");
                eprintln!("to stderr");
                Ok(())
            }
            other => Err(StepError::InvalidConfig(format!(
                "unknown behaviour `{other}`"
            ))),
        }
    }
}

kiln_plugin_sdk::export_plugin!(Hostile);
