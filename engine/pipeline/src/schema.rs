//! The JSON Schema of pipeline files, for editors.

/// The schema as JSON.
pub fn schema() -> serde_json::Value {
    serde_json::json!({})
}
