//! The generated bindings of the `kiln:plugin/step` world: the only `bindgen!` of the host.
//!
//! Imports (`log`, `outputs`, `git`, `image`, `http`, `cache`) and exports (`describe`, `validate`, `run`) are async so that a
//! step never blocks a tokio worker: wasm runs on a fiber and yields at every epoch tick.
//! The host side of each import lives in its own module ([`crate::log`], [`crate::outputs`],
//! [`crate::git`], [`crate::image`], [`crate::http`], [`crate::cache_store`]).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "step",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) use kiln::plugin::types::{Caching, Capability};
pub(crate) use kiln::plugin::{cache, git, http, image, log, outputs, types};
