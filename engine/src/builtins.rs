//! Built-in plugins: WASI components built from `plugins/` and embedded in the binary at build
//! time (see `build.rs`). A built-in has exactly the power of a user's own plugin.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The component bytes of built-in `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of the built-ins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
