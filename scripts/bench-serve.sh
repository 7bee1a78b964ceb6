#!/usr/bin/env bash
# Benchmark of `kiln serve` on loopback: signed GitHub push deliveries -> 202 (stored in SQLite,
# fsync'd, before the answer), measured with wrk (Debian's, installed if missing).
#
#   scripts/bench-serve.sh [SECONDS=20] [RATE=500]
#
# Prints, for one server process:
#   - idle RSS after start-up;
#   - GET /healthz unpaced (the floor: HTTP + one read, no write) as the baseline;
#   - webhooks paced at RATE req/s (wrk's Lua `delay`, 10 connections): p50/p99 and the rate;
#   - webhooks unpaced (50 connections): sustained throughput and p99;
#   - lost deliveries: 202 answers counted by wrk minus events in the store (must be 0);
#   - RSS after the load.
# Every delivery has its own X-GitHub-Delivery id (so none is deduplicated) and the same body,
# signed with Python's hmac (independent of Kiln's code). The payload's repository is a local
# path the server refuses, so each event is answered and then failed by the worker at once:
# the numbers are the acceptance path, not clones.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
rate="${2:-500}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk" >&2
  sudo=""; [ "$(id -u)" != 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
cargo build --release -p kiln -q
kiln="$PWD/target/release/kiln"

work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

token="kiln_bench_token_$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
secret="bench-secret"
KILN_API_TOKENS="bench:$token" KILN_GITHUB_SECRET="$secret" KILN_CACHE_DIR="$work/cache" \
  KILN_LOG=warn "$kiln" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/serve.log" 2>/dev/null && break
  sleep 0.1
done
addr=$(grep -o 'listening on http://[0-9.:]*' "$work/serve.log" | sed 's|listening on http://||')
[ -n "$addr" ] || { cat "$work/serve.log"; exit 1; }
sleep 1
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$pid/status"; }
echo "kiln serve on $addr (pid $pid), store synchronous=${KILN_STORE_SYNCHRONOUS:-full}"
echo "idle RSS: $(rss)"

body='{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","deleted":false,"repository":{"full_name":"bench/repo","clone_url":"/nonexistent/bench.git"},"head_commit":{"id":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","message":"bench"}}'
sig=$(python3 -c 'import hmac,hashlib,sys; print("sha256="+hmac.new(sys.argv[1].encode(),sys.argv[2].encode(),hashlib.sha256).hexdigest())' "$secret" "$body")

cat >"$work/webhook.lua" <<EOF
local counter = 0
accepted = 0
other = 0
local threads = {}
local pace = tonumber(os.getenv("PACE_MS") or "0")
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  wrk.method = "POST"
  wrk.body = [[$body]]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
  wrk.headers["X-Hub-Signature-256"] = "$sig"
end
function delay()
  return pace
end
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = string.format("bench-%s-%d-%d", os.getenv("RUN") or "r", id, counter)
  return wrk.format(nil, "/v1/webhooks/github")
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  io.write(string.format("RESULT requests=%d accepted=%d other=%d errors=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f rate=%.1f\n",
    summary.requests, a, o, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests / (summary.duration / 1e6)))
end
EOF
cat >"$work/health.lua" <<'EOF'
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d p50_ms=%.2f p99_ms=%.2f rate=%.1f\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
EOF

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

base=$(wrk -t2 -c10 -d"${secs}s" -s "$work/health.lua" "http://$addr/healthz" | grep RESULT)
echo "baseline GET /healthz, 10 connections, unpaced: p50 $(field p50_ms "$base") ms, p99 $(field p99_ms "$base") ms, $(field rate "$base") req/s"

# 10 connections, each waiting PACE_MS between requests: about RATE req/s in all.
pace=$(python3 -c "print(max(0, round(10 * 1000 / $rate - 1)))")
paced=$(PACE_MS=$pace RUN=paced wrk -t2 -c10 -d"${secs}s" -s "$work/webhook.lua" "http://$addr" | grep RESULT)
echo "webhooks paced at ~$rate req/s: p50 $(field p50_ms "$paced") ms, p90 $(field p90_ms "$paced") ms, p99 $(field p99_ms "$paced") ms, max $(field max_ms "$paced") ms, $(field rate "$paced") req/s, $(field accepted "$paced") accepted, $(field other "$paced") other answers, $(field errors "$paced") socket errors"

full=$(PACE_MS=0 RUN=full wrk -t2 -c50 -d"${secs}s" -s "$work/webhook.lua" "http://$addr" | grep RESULT)
echo "webhooks unpaced, 50 connections: $(field rate "$full") req/s sustained, p50 $(field p50_ms "$full") ms, p99 $(field p99_ms "$full") ms, $(field accepted "$full") accepted, $(field other "$full") other answers"
echo "RSS after load: $(rss)"

kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
stored=$(python3 - "$work/data/kiln.db" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("select count(*) from events where delivery like 'bench-%'").fetchone()[0])
EOF
)
accepted=$(( $(field accepted "$paced") + $(field accepted "$full") ))
# Deliveries still in flight when wrk stopped were stored but not counted: stored >= accepted.
lost=$(( accepted > stored ? accepted - stored : 0 ))
echo "deliveries answered 202: $accepted; events in the store: $stored ($((stored > accepted ? stored - accepted : 0)) answered after wrk stopped counting); lost: $lost"
ratio=$(python3 -c "print(round($(field p99_ms "$paced") / max($(field p99_ms "$base"), 0.001), 1))")
echo "p99 ratio webhook (paced) / healthz baseline: ${ratio}x"
[ "$lost" = 0 ] || { echo "LOST DELIVERIES" >&2; exit 1; }
