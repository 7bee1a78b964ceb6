#!/usr/bin/env bash
# The whole test suite: install what is missing, build the plugins once, check formatting and
# lints, and run every test (host crates in release: wasmtime compiles plugins much faster).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
step "npm fixtures of the kiln serve tests (webhook payloads, signing, OpenAPI validator)"
scripts/webhook-fixtures.sh >/dev/null
step "plugins (wasm32-wasip2)"
scripts/build-plugins.sh
step "format"
cargo fmt --all -- --check
step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests"
cargo test --workspace --release --locked
step "kiln-nx against real Nx (the corpus answers are re-checked with nx from npm)"
if command -v node >/dev/null 2>&1; then
  node engine/nx/tests/corpus/record.mjs --check
else
  echo "SKIP: node is not installed, so real Nx cannot run"
fi
