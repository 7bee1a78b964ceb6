//! Test fixture: declares the `http` capability and not `network`. With `with: { socket: ADDR }`
//! it tries a raw TCP connection (which the host must refuse even when `allow.net` lists the
//! address); with `with: { get: URL }` it asks the host to send the request (which reaches a
//! granted host).

#[path = "../../common/net.rs"]
mod net;

use kiln_plugin_sdk::http::{self, Method, Request, RequestAuth};
use kiln_plugin_sdk::{Capability, Context, Info, Plugin, StepError, json, set_output};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    socket: Option<String>,
    get: Option<String>,
}

struct HttpProbe;

impl Plugin for HttpProbe {
    fn info() -> Info {
        Info::new(
            "http-probe",
            env!("CARGO_PKG_VERSION"),
            "tries a raw socket and a host request (test fixture)",
        )
        .schema(json!({ "type": "object" }))
        .outputs(&["socket", "status"])
        .capability(Capability::Http)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        if let Some(addr) = config.socket {
            let result = match net::tcp_connect(&addr) {
                Ok(()) => "connected".to_string(),
                Err(e) => format!("refused: {e}"),
            };
            set_output("socket", &result)?;
        }
        if let Some(url) = config.get {
            let response = http::send(&Request {
                method: Method::Get,
                url,
                headers: Vec::new(),
                body: Vec::new(),
                auth: RequestAuth::None,
                sign: None,
                timeout_ms: Some(10_000),
                max_redirects: None,
                max_response_bytes: None,
            })?;
            set_output("status", &response.status)?;
        }
        Ok(())
    }
}

kiln_plugin_sdk::export_plugin!(HttpProbe);
