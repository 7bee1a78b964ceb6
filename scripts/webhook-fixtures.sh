#!/usr/bin/env bash
# Installs the npm packages the `kiln serve` tests use, into target/npm (idempotent, ~1 s):
# - @octokit/webhooks-examples: real GitHub webhook payloads;
# - @octokit/webhooks-methods: GitHub's own signing/verification code (an independent HMAC);
# - @apidevtools/swagger-parser: an OpenAPI 3 validator for /v1/openapi.json.
# Prints the node_modules directory. Serialised with other processes by a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${KILN_NPM_DIR:-$PWD/target/npm}"
mkdir -p "$prefix"
exec 9>"$prefix/.lock"
flock 9
want="@octokit/webhooks-examples@7.6.1 @octokit/webhooks-methods@6.0.0 @apidevtools/swagger-parser@10.1.1"
stamp="$prefix/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm is not installed; scripts/install-deps.sh installs it" >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  npm install --silent --no-audit --no-fund --no-save --prefix "$prefix" $want >&2
  echo "$want" >"$stamp"
fi
echo "$prefix/node_modules"
