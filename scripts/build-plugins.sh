#!/usr/bin/env bash
# Build every plugin in plugins/ as a WASI 0.2 component (wasm32-wasip2, release).
# Output: plugins/target/wasm32-wasip2/release/<crate>.wasm (the kiln binary embeds the built-ins).
#
# Two routes:
#  - rustup with the wasm32-wasip2 target installed: plain `cargo build`.
#  - Debian's rustc-web (Rust with its std source) + wasi-libc + lld: build the std from source
#    with `-Z build-std`. scripts/install-deps.sh installs these packages.
set -euo pipefail
cd "$(dirname "$0")/../plugins"

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  exec cargo build --release --locked "$@"
fi

if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/wasm32-wasi ]; then
  echo "error: no Rust toolchain for wasm32-wasip2 found" >&2
  echo "hint: run \`rustup target add wasm32-wasip2\`, or on Debian \`scripts/install-deps.sh\`" >&2
  exit 1
fi
llvm_major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
wasm_ld=/usr/bin/wasm-ld-$llvm_major
if [ ! -x "$wasm_ld" ]; then
  echo "error: no $wasm_ld (LLVM $llvm_major, as rustc-web); hint: run \`scripts/install-deps.sh\`" >&2
  exit 1
fi
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-L native=/usr/lib/wasm32-wasi -C link-arg=--wasm-ld-path=$wasm_ld"
exec /usr/bin/cargo build --release --locked -Z build-std=std,panic_abort "$@"
