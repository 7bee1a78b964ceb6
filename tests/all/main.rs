//! Kiln's integration and end-to-end tests: one test binary, one module per area.
//! They run the real `kiln` CLI with the real plugins built from `plugins/`.

mod cache;
mod cli;
mod git;
mod image;
mod nx;
mod sandbox;
mod support;
mod ui;
