//! Embeds the built-in plugins (WASI components built from `plugins/` by
//! `scripts/build-plugins.sh`) into the `kiln` binary.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Built-in plugins shipped in the binary: `uses:` name and crate name.
const BUILTINS: &[&str] = &[
    "echo",
    "write-file",
    "clone",
    "nx-affected",
    "build",
    "push",
    "detect",
    "git-push",
    "notify",
    "cache",
    "prune-images",
];

fn main() {
    println!("cargo::rerun-if-env-changed=KILN_PLUGIN_DIR");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = env::var_os("KILN_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../plugins/target/wasm32-wasip2/release"));

    let mut src = String::from(
        "/// Built-in plugins: `uses:` name and component bytes.\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    let mut missing = Vec::new();
    for name in BUILTINS {
        let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
        println!("cargo::rerun-if-changed={}", file.display());
        if file.is_file() {
            let _ = writeln!(
                src,
                "    ({name:?}, include_bytes!({:?})),",
                file.display().to_string()
            );
        } else {
            missing.push(file.display().to_string());
        }
    }
    src.push_str("];\n");
    if !missing.is_empty() {
        eprintln!(
            "error: built-in plugins are not built: {}\nhint: run `scripts/build-plugins.sh` first (or set KILN_PLUGIN_DIR)",
            missing.join(", ")
        );
        std::process::exit(1);
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("builtins.rs");
    if let Err(e) = std::fs::write(&out, src) {
        eprintln!("error: cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
