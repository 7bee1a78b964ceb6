//! Kiln: a build engine. YAML pipelines run as a DAG of sandboxed WASI component steps.
