//! Integration tests of `kiln-pipeline`, in one binary.

mod golden;
mod model;
mod robustness;
