//! Test fixture: connect to each address in `with: { addrs: [...] }` and report which answered

//! (`connected`) and which were refused (`refused`). Declares the `network` capability, so a step
//! must grant it with `allow: { net: [...] }`.

#[path = "../../common/net.rs"]
mod net;

use kiln_plugin_sdk::{Capability, Context, Info, Plugin, StepError, json, set_output};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    addrs: Vec<String>,
}

struct NetProbe;

impl Plugin for NetProbe {
    fn info() -> Info {
        Info::new(
            "net-probe",
            env!("CARGO_PKG_VERSION"),
            "connects to addresses and reports (test fixture)",
        )
        .schema(json!({ "type": "object", "required": ["addrs"] }))
        .outputs(&["connected", "refused"])
        .capability(Capability::Network)
    }

    fn run(ctx: Context) -> Result<(), StepError> {
        let config: Config = ctx.config()?;
        let mut connected = Vec::new();
        let mut refused = Vec::new();
        for addr in config.addrs {
            match net::tcp_connect(&addr) {
                Ok(()) => connected.push(addr),
                Err(e) => refused.push(e),
            }
        }
        set_output("connected", &connected)?;
        set_output("refused", &refused)
    }
}

kiln_plugin_sdk::export_plugin!(NetProbe);
