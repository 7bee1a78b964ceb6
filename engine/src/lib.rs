//! Kiln: a build engine. YAML pipelines run as a DAG of sandboxed WASI component steps.
//!
//! Data flows one way: [`kiln_pipeline::Pipeline`] (what the user wrote) -> [`plan::Plan`] (the
//! resolved DAG) -> [`run::Run`] / [`run::StepRun`] (what happened), built by the
//! [`scheduler`] from the events it emits. See ARCHITECTURE.md.

pub mod builtins;
pub mod cache;
pub mod cli;
pub mod dirs;
pub mod mask;
pub mod plan;
pub mod queue;
pub mod run;
pub mod scheduler;
pub mod server;
pub mod store;

pub use kiln_host as host;
pub use kiln_pipeline as pipeline;
