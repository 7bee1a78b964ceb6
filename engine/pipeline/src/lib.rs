//! Kiln pipeline YAML -> [`Pipeline`].
//!
//! Parsing never stops at the first problem: it returns whatever could be read together with
//! every [`Diagnostic`] found (unknown keys, wrong types, duplicate ids, unknown `needs`, cycles,
//! bad expressions, ...), each with a code, a `file:line:col` span, a message and a hint.
//! Nothing here knows about plugins; checks that need them run when the engine plans.

pub mod diag;
pub mod model;
mod parse;
pub mod schema;

pub use diag::{Diagnostic, Severity, SourceFile, Span};
pub use model::*;
pub use parse::parse;
