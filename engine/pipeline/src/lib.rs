//! Kiln pipeline YAML -> [`Pipeline`].
//!
//! Parsing never stops at the first problem: it returns whatever could be read together with
//! every [`Diagnostic`] found (unknown keys, wrong types, duplicate ids, unknown `needs`, cycles,
//! bad expressions, ...), each with a code, a `file:line:col` span, a message and a hint.
//! Nothing here knows about plugins; checks that need them run when the engine plans.
//!
//! ```
//! let (pipeline, diags) = kiln_pipeline::parse(
//!     "hello.yaml",
//!     "name: hello\nsteps:\n  - id: greet\n    uses: echo\n    with: { message: hi }\n",
//! );
//! assert!(diags.is_empty());
//! assert_eq!(pipeline.map(|p| p.steps.len()), Some(1));
//! ```
//!
//! YAML details: YAML 1.2 core schema (`on`, `yes`, `no` are strings); one document per file;
//! anchors and aliases are resolved (an alias is a copy of the anchored value); merge keys
//! (`<<`) and custom tags are rejected; duplicate keys are reported and the first one is kept.
//! The codes of all diagnostics are listed in [`diag`].

mod check;
pub mod cron;
mod data;
pub mod diag;
mod keys;
pub mod model;
mod parse;
pub mod schema;
mod trigger;
mod yaml;

pub use data::{Data, parse_data};
pub use diag::{Diagnostic, Severity, SourceFile, Span, has_errors, render, to_json};
pub use keys::{check_host_port, suggest};
pub use model::*;
pub use parse::{DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, parse};
pub use trigger::{TriggerEvent, TriggerMatch, compile_glob, select};
