#!/usr/bin/env bash
# Run Kiln's example pipeline (pipelines/hello.yaml) on the embedded defaults: installs what is
# missing, builds the plugins and kiln, then `kiln run`. Extra arguments go to `kiln run`,
# e.g. `scripts/run-example.sh --json` or `scripts/run-example.sh pipelines/own-plugin.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >&2
scripts/build-plugins.sh >&2
cargo build --release --locked -p kiln >&2
file=pipelines/hello.yaml
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then file=$1; shift; fi
exec target/release/kiln run "$file" "$@"
