//! YAML text -> Pipeline, collecting every diagnostic.

use std::sync::Arc;

use crate::diag::{Diagnostic, SourceFile};
use crate::model::Pipeline;

/// Parse and check one pipeline file. Returns the pipeline when it could be read far enough to
/// be useful (even with errors) and every diagnostic, in file order.
pub fn parse(path: &str, text: &str) -> (Option<Pipeline>, Vec<Diagnostic>) {
    let _file = Arc::new(SourceFile {
        path: path.to_owned(),
        text: text.to_owned(),
    });
    (None, Vec::new())
}
