//! Kiln's integration and end-to-end tests: one test binary, one module per area.
//! They run the real `kiln` CLI with the real plugins built from `plugins/`.

mod cache;
mod cli;
mod detect;
mod git;
mod git_push;
mod image;
mod notify;
mod nx;
mod sandbox;
mod seed_000;
mod seed_001;
mod seed_002;
mod seed_003;
mod seed_004;
mod serve;
mod support;
mod ui;
