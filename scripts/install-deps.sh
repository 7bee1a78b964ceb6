#!/usr/bin/env bash
# Install what building and testing Kiln needs on a Debian 12 machine (run as root or with sudo).
# Idempotent: does nothing when everything is present.
#
# - The wasm32-wasip2 toolchain for plugins. With rustup's target installed nothing is needed;
#   otherwise Debian's rustc-web (a Rust with its std source, so cargo can build the wasm32 std),
#   wasi-libc, and the lld whose major version matches rustc-web's LLVM.
# - The C libraries git2 links: OpenSSL and zlib headers, and pkg-config to find them.
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${KILN_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    export KILN_APT_UPDATED=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "wasm32-wasip2: rustup target present"
else
  if ! dpkg -s rustc-web cargo-web rust-web-llvm rust-web-src wasi-libc >/dev/null 2>&1; then
    echo "installing Debian's rustc-web toolchain for wasm32-wasip2 plugins"
    apt_install rustc-web cargo-web rust-web-llvm rust-web-src wasi-libc
  fi
  llvm_major=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
  if ! ls /usr/bin/wasm-ld-"$llvm_major" >/dev/null 2>&1; then
    echo "installing lld-$llvm_major (wasm-ld matching rustc-web's LLVM $llvm_major)"
    apt_install "lld-$llvm_major"
  fi
fi

# git2 (libgit2-sys, libssh2-sys, openssl-sys, libz-sys) builds against the system's OpenSSL and
# zlib, found with pkg-config.
if ! dpkg -s libssl-dev pkg-config zlib1g-dev >/dev/null 2>&1; then
  echo "installing libssl-dev, pkg-config and zlib1g-dev for git2"
  apt_install libssl-dev pkg-config zlib1g-dev
fi

# The `kiln serve` tests sign and check webhooks with GitHub's own npm packages and validate the
# OpenAPI document (scripts/webhook-fixtures.sh installs those into target/npm): they need node
# and npm. Machines of this project's kind ship Node 20; elsewhere Debian's packages do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm for the kiln serve tests"
  apt_install nodejs npm
fi

# The HTTP tests run a webhook receiver written with Python's standard library
# (tests/support/http_server.py) and make TLS certificates with the openssl CLI.
if ! command -v python3 >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  echo "installing python3 and openssl for the HTTP tests"
  apt_install python3 openssl
fi
