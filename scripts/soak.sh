#!/usr/bin/env bash
# Load and soak runs of issue #11 against a release build, with the test kit's mock upstream
# (`dualrouter-mock`) and load generator (`dualrouter-load`), both in crates/testkit.
# Writes target/soak/summary.json (one number per result) and prints a human line per result.
#
#   scripts/soak.sh                 # every result with the issue's values (about 8 minutes)
#   SOAK_RESULTS="1 3" scripts/soak.sh
#
# Knobs (environment; defaults are the issue's values):
#   SOAK_SSE_STREAMS=10000 SOAK_SSE_CHUNKS=200 SOAK_SSE_BYTES=64 SOAK_SSE_CONCURRENCY=32   result 1
#   SOAK_503_RATE=300 SOAK_503_SECONDS=60 SOAK_503_COOLED_AFTER=10                         result 2
#   SOAK_CAPACITY_SECONDS=10 SOAK_CAPACITY_CONCURRENCY=64 SOAK_OVERLOAD_SECONDS=60          result 3
#   SOAK_OVERLOAD_CONNECTIONS=1024 (clients, one connection each; 0: a new one whenever none is idle)
#   SOAK_MAX_QUEUE_MS=200 (limits.max_queue_ms) SOAK_OVERLOAD_MAX_QUEUE_MS=50 (the same, for result 3)
#   SOAK_SLOW_CLIENTS=200 SOAK_SLOW_SECONDS=60 SOAK_SLOW_RATE=100 SOAK_SLOW_INTERVAL_MS=500 result 4
#   SOAK_DB_RATE=100 SOAK_DB_DOWN_SECONDS=60 SOAK_DB_MARGIN_SECONDS=20                     result 5
#   SOAK_PLUGIN_RATE=50 SOAK_PLUGIN_SECONDS=30 SOAK_PLUGIN_FAULT_RATE=5                    result 6
#   SOAK_MOCK_THREADS=1 (the mock upstream's worker threads)
#   SOAK_PROFILE=release (`debug` only to try the script itself), SOAK_OUT=target/soak;
#   binaries are built in (and taken from) $CARGO_TARGET_DIR, else target/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

RESULTS=${SOAK_RESULTS:-"1 2 3 4 5 6"}
SSE_STREAMS=${SOAK_SSE_STREAMS:-10000}
SSE_CHUNKS=${SOAK_SSE_CHUNKS:-200}
SSE_BYTES=${SOAK_SSE_BYTES:-64}
SSE_CONCURRENCY=${SOAK_SSE_CONCURRENCY:-32}
R503_RATE=${SOAK_503_RATE:-300}
R503_SECONDS=${SOAK_503_SECONDS:-60}
R503_COOLED_AFTER=${SOAK_503_COOLED_AFTER:-10}
CAP_SECONDS=${SOAK_CAPACITY_SECONDS:-10}
CAP_CONCURRENCY=${SOAK_CAPACITY_CONCURRENCY:-64}
OVERLOAD_SECONDS=${SOAK_OVERLOAD_SECONDS:-60}
OVERLOAD_CONNECTIONS=${SOAK_OVERLOAD_CONNECTIONS:-1024}
# limits.max_queue_ms: the default, and a tighter bound for result 3 (see docs/benchmarks.md#load-and-soak)
QUEUE_MS=${SOAK_MAX_QUEUE_MS:-200}
OVERLOAD_QUEUE_MS=${SOAK_OVERLOAD_MAX_QUEUE_MS:-50}
SLOW_CLIENTS=${SOAK_SLOW_CLIENTS:-200}
SLOW_SECONDS=${SOAK_SLOW_SECONDS:-60}
SLOW_RATE=${SOAK_SLOW_RATE:-100}
SLOW_INTERVAL_MS=${SOAK_SLOW_INTERVAL_MS:-500}
DB_RATE=${SOAK_DB_RATE:-100}
DB_DOWN=${SOAK_DB_DOWN_SECONDS:-60}
DB_MARGIN=${SOAK_DB_MARGIN_SECONDS:-20}
PLUGIN_RATE=${SOAK_PLUGIN_RATE:-50}
PLUGIN_SECONDS=${SOAK_PLUGIN_SECONDS:-30}
PLUGIN_FAULT_RATE=${SOAK_PLUGIN_FAULT_RATE:-5}
MOCK_THREADS=${SOAK_MOCK_THREADS:-1}

OUT=${SOAK_OUT:-$ROOT/target/soak}
PROFILE=${SOAK_PROFILE:-release}   # `debug` only to try the script itself: the numbers are for release
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE/dualrouter
MOCK_BIN=$TARGET_DIR/$PROFILE/dualrouter-mock
LOAD=$TARGET_DIR/$PROFILE/dualrouter-load
rm -rf "$OUT" && mkdir -p "$OUT"

say() { printf '\033[1m[soak]\033[0m %s\n' "$*" >&2; }
built=true
for b in "$BIN" "$MOCK_BIN" "$LOAD"; do
  if [ ! -x "$b" ] || [ -n "$(find src crates Cargo.toml Cargo.lock -newer "$b" -print -quit)" ]; then built=false; fi
done
if [ "$built" = false ]; then
  say "building the $PROFILE binaries"
  release=()
  if [ "$PROFILE" = release ]; then release=(--release); fi
  cargo build "${release[@]}" --bin dualrouter
  cargo build "${release[@]}" -p dualrouter-testkit --bins
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
PG_DATA=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$PG_DATA" ]; then pg pg_ctl -D "$PG_DATA" -m immediate stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# --- the mock upstream -----------------------------------------------------------------------
# Its model ids are behaviours (crates/testkit/src/lib.rs): `echo`, `sse:N:S[:MS]` (N pieces of
# S bytes, MS ms apart, byte for byte predictable), `error:503`, ...
MOCK_PORT=$(free_port)
"$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --threads "$MOCK_THREADS" >"$OUT/mock.log" 2>&1 &
PIDS+=($!)
MOCK=http://127.0.0.1:$MOCK_PORT
for _ in $(seq 100); do curl -sf "$MOCK/healthz" >/dev/null && break; sleep 0.1; done
mock_requests() { curl -sf "$MOCK/stats" | jq .requests; }
mock_force() { curl -sf -X PUT --data "$1" "$MOCK/force" >/dev/null; }

# --- a proxy --------------------------------------------------------------------------------
# start_proxy NAME DATABASE [EXTRA_YAML] → sets PROXY (URL), PROXY_ADDR, PROXY_PID
start_proxy() {
  local name=$1 database=$2 extra=${3:-}
  local dir=$OUT/$name
  mkdir -p "$dir"
  cat >"$dir/config.yaml" <<EOF
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
database: $database
decision_log: { spool_dir: $dir/spool }
server: { threads: 2, pid_file: $dir/pid, upgrade_sock: $dir/upgrade.sock }
limits:
  max_in_flight: 1024
  max_connections: 4096
  max_queue_ms: $QUEUE_MS
  overload_retry_after_s: 1
  client_header_ms: 10000
  client_body_ms: 10000
  first_byte_ms: 30000
  idle_ms: 60000
  total_ms: 600000
mirt:
  checkpoint: $ROOT/checkpoints/static.json
  encoder: { kind: static, models_dir: $ROOT/models }
routing: { breaker: { failures: 3, cooldown_ms: 30000 } }
providers:
  - name: mock
    kind: openai
    base_url: $MOCK/v1
    models:
      - { id: sse, upstream_id: "sse:${SSE_CHUNKS}:${SSE_BYTES}" }
      - { id: ok, upstream_id: echo }
      - { id: llm, upstream_id: "sse:20:64:10" }
      - { id: r-small, upstream_id: echo, cost_per_mtok: { input: 0.1, output: 0.4 }, mirt_model: mistralai/mixtral-8x7b-chat }
      - { id: r-mid, upstream_id: echo, cost_per_mtok: { input: 0.5, output: 1.5 }, mirt_model: gpt-3.5-turbo-1106 }
      - { id: r-large, upstream_id: echo, cost_per_mtok: { input: 2.5, output: 10 }, mirt_model: gpt-4-1106-preview }
policies:
  - { domain: chat, action: small-talk, description: "greetings and casual conversation", examples: ["hello, how are you?", "say hello"], models: [r-small, r-mid, r-large] }
  - { domain: programming, action: code-generation, description: "writing new code", examples: ["write a function that sorts a list"], models: [r-large, r-mid, r-small] }
$extra
EOF
  rm -f "$dir/ready.json"
  DUALROUTER_LOG=${DUALROUTER_LOG:-warn} "$BIN" serve --config "$dir/config.yaml" --ready-file "$dir/ready.json" >"$dir/proxy.log" 2>&1 &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  for _ in $(seq 300); do [ -s "$dir/ready.json" ] && break; sleep 0.1; done
  PROXY_ADDR=$(jq -r .proxy "$dir/ready.json")
  PROXY=http://$PROXY_ADDR
  for _ in $(seq 300); do curl -sf "$PROXY/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$PROXY/healthz" >/dev/null || { cat "$dir/proxy.log"; exit 1; }
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo null; }

declare -A R
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
say "machine: $machine"

# --- 1. SSE streams byte for byte ---------------------------------------------------------
if [[ " $RESULTS " == *" 1 "* ]]; then
  start_proxy r1 "sqlite://$OUT/r1/d.db"
  say "1: $SSE_STREAMS SSE streams of $SSE_CHUNKS chunks"
  "$LOAD" --threads 1 sse --url "$PROXY" --model sse --upstream-model "sse:${SSE_CHUNKS}:${SSE_BYTES}" \
    --chunks "$SSE_CHUNKS" --size "$SSE_BYTES" --streams "$SSE_STREAMS" --concurrency "$SSE_CONCURRENCY" >"$OUT/r1.json"
  stop_proxy
  R[1]=$(jq -c '{byte_mismatches: .mismatched, failed: .failed, identical: .identical}' "$OUT/r1.json")
  echo "result 1: $(jq -r '"\(.streams) streams x \(.chunks) chunks: \(.mismatched) byte mismatches, \(.failed) failed, \(.identical) identical (\(.seconds) s)"' "$OUT/r1.json")"
fi

# --- 2. every upstream 503 ------------------------------------------------------------------
if [[ " $RESULTS " == *" 2 "* ]]; then
  start_proxy r2 "sqlite://$OUT/r2/d.db"
  mock_force error:503
  say "2: every upstream 503 for $R503_SECONDS s at $R503_RATE req/s (model auto, 3 candidates)"
  before=$(mock_requests)
  ( sleep "$R503_COOLED_AFTER"; mock_requests >"$OUT/r2.cooled" ) &
  "$LOAD" --threads 1 rate --url "$PROXY" --model auto --rate "$R503_RATE" --seconds "$R503_SECONDS" >"$OUT/r2.json"
  after=$(mock_requests)
  mock_force ""
  stop_proxy
  cooled=$(cat "$OUT/r2.cooled")
  jq --argjson b "$before" --argjson c "$cooled" --argjson a "$after" --argjson r "$R503_RATE" \
    --argjson s "$R503_SECONDS" --argjson w "$R503_COOLED_AFTER" \
    '. + {upstream_attempts: ($a - $b), attempts_per_request: (($a - $b) / .sent),
          attempts_after_cooldown: ($a - $c), requests_after_cooldown: ($r * ($s - $w)),
          attempts_per_request_after_cooldown: (($a - $c) / ($r * ($s - $w)))}' "$OUT/r2.json" >"$OUT/r2.full.json"
  R[2]=$(jq '.attempts_per_request_after_cooldown' "$OUT/r2.full.json")
  echo "result 2: $(jq -r '"\(.sent) requests, \(.upstream_attempts) upstream attempts in all (\(.attempts_per_request) per request); after the first \('"$R503_COOLED_AFTER"') s: \(.attempts_per_request_after_cooldown) per request; answers \(.status), refused without Retry-After \(.refused_without_retry_after)"' "$OUT/r2.full.json")"
fi

# --- 3. twice the capacity ------------------------------------------------------------------
if [[ " $RESULTS " == *" 3 "* ]]; then
  QUEUE_MS=$OVERLOAD_QUEUE_MS start_proxy r3 "sqlite://$OUT/r3/d.db"
  say "3: capacity (closed loop, $CAP_CONCURRENCY workers, $CAP_SECONDS s)"
  "$LOAD" --threads 1 capacity --url "$PROXY" --model ok --concurrency "$CAP_CONCURRENCY" --seconds "$CAP_SECONDS" >"$OUT/r3.capacity.json"
  cap=$(jq .rps "$OUT/r3.capacity.json")
  rate=$(python3 -c "print(round(2*$cap))")
  say "3: $rate req/s (twice $cap) for $OVERLOAD_SECONDS s"
  rss0=$(rss_mb "$PROXY_PID")
  ( while kill -0 "$PROXY_PID" 2>/dev/null; do echo "$(date +%s.%N) $(rss_mb "$PROXY_PID")"; sleep 1; done ) >"$OUT/r3.rss" &
  admin=http://$(jq -r .admin "$OUT/r3/ready.json")
  ( sleep "$(( OVERLOAD_SECONDS / 2 ))"; curl -s "$admin/metrics" >"$OUT/r3.metrics.mid" ) &
  "$LOAD" --threads 1 rate --url "$PROXY" --model ok --rate "$rate" --seconds "$OVERLOAD_SECONDS" --timeout-ms 30000 \
    --connections "$OVERLOAD_CONNECTIONS" >"$OUT/r3.json"
  curl -s "$admin/metrics" >"$OUT/r3.metrics"
  alive=$(kill -0 "$PROXY_PID" 2>/dev/null && curl -sf "$PROXY/healthz" >/dev/null && echo true || echo false)
  rss1=$(rss_mb "$PROXY_PID")
  stop_proxy
  # Memory: the resident size over the run (after the first 10 s, once the pools have grown).
  python3 - "$OUT/r3.rss" "$OUT/r3.json" "$OUT/r3.capacity.json" "$alive" "$rss0" "$rss1" "$OUT/r3.metrics" >"$OUT/r3.full.json" <<'PY'
import json, re, sys
# The proxy's own queueing delay (dualrouter_queue_delay_seconds): the bucket bound under
# which 50 % and 99 % of the samples fall.
buckets, count = [], 0
for line in open(sys.argv[7]):
    m = re.match(r'dualrouter_queue_delay_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
    if m:
        buckets.append((float(m.group(1)), int(m.group(2))))
    m = re.match(r"dualrouter_queue_delay_seconds_count (\d+)", line)
    if m:
        count = int(m.group(1))
def upto(q):
    return next((le * 1e3 for le, n in buckets if count and n >= q * count), None)
queue = {"samples": count, "p50_ms_at_most": upto(0.5), "p99_ms_at_most": upto(0.99)}
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 2 and l.split()[1] != "null"]
t0 = float(rows[0][0]) if rows else 0
rss = [(float(t) - t0, float(m)) for t, m in rows]
late = [m for t, m in rss if t >= 10] or [m for _, m in rss]
run = json.load(open(sys.argv[2])); cap = json.load(open(sys.argv[3]))
refused = sum(v for k, v in run["status"].items() if k in ("429", "503"))
out = dict(run, capacity_rps=cap["rps"], capacity=cap, alive_after=sys.argv[4] == "true",
           rss_mb_before=float(sys.argv[5]), rss_mb_after=float(sys.argv[6]),
           rss_mb_min_after_10s=min(late), rss_mb_max_after_10s=max(late),
           rss_mb_growth_after_10s=round(max(late) - min(late), 1),
           refused=refused, refused_share=round(refused / run["sent"], 4),
           proxy_queue_delay=queue,
           answered_rps=round(sum(run["status"].values()) / run["done_in_s"], 1))
print(json.dumps(out))
PY
  R[3]=$(jq '{alive_after, rss_mb_growth_after_10s, refused_service_p99_ms: .service_ms.refused.p99, served_service_p99_ms: .service_ms.ok.p99, proxy_queue_delay_p99_ms_at_most: .proxy_queue_delay.p99_ms_at_most, transport_errors, refused_without_retry_after}' -c "$OUT/r3.full.json")
  echo "result 3: $(jq -r '"capacity \(.capacity_rps) req/s; \(.rate) req/s offered for \(.seconds) s by \(.connections) connections (sent in \(.sent_in_s) s, answered by \(.done_in_s) s: \(.answered_rps) req/s): answers \(.status), transport errors \(.transport_errors); refused \(.refused) (\(.refused_share)); from send to answer: refused p50/p99 \(.service_ms.refused.p50)/\(.service_ms.refused.p99) ms, served \(.service_ms.ok.p50)/\(.service_ms.ok.p99) ms; waiting for a free connection in the generator p50 \(.connection_wait_ms.p50) ms; proxy queue delay p50 ≤ \(.proxy_queue_delay.p50_ms_at_most) ms, p99 ≤ \(.proxy_queue_delay.p99_ms_at_most) ms; refused without Retry-After \(.refused_without_retry_after); alive \(.alive_after); RSS \(.rss_mb_before) → \(.rss_mb_after) MB, range after 10 s \(.rss_mb_min_after_10s)–\(.rss_mb_max_after_10s) MB"' "$OUT/r3.full.json")"
fi

# --- 4. slow clients beside normal traffic ---------------------------------------------------
if [[ " $RESULTS " == *" 4 "* ]]; then
  start_proxy r4 "sqlite://$OUT/r4/d.db"
  say "4: $SLOW_CLIENTS slow-header + $SLOW_CLIENTS slow-body clients beside $SLOW_RATE req/s for $SLOW_SECONDS s"
  "$LOAD" --threads 1 slow --addr "$PROXY_ADDR" --what header --clients "$SLOW_CLIENTS" --interval-ms "$SLOW_INTERVAL_MS" --seconds "$SLOW_SECONDS" >"$OUT/r4.header.json" &
  sh=$!
  "$LOAD" --threads 1 slow --addr "$PROXY_ADDR" --what body --clients "$SLOW_CLIENTS" --interval-ms "$SLOW_INTERVAL_MS" --seconds "$SLOW_SECONDS" >"$OUT/r4.body.json" &
  sb=$!
  "$LOAD" --threads 1 rate --url "$PROXY" --model llm --stream --rate "$SLOW_RATE" --seconds "$SLOW_SECONDS" >"$OUT/r4.json"
  wait "$sh" "$sb"
  stop_proxy
  jq -s '.[0] + {success_share: (.[0].ok / .[0].sent), slow_header: .[1], slow_body: .[2]}' \
    "$OUT/r4.json" "$OUT/r4.header.json" "$OUT/r4.body.json" >"$OUT/r4.full.json"
  R[4]=$(jq -c '{normal_success_share: .success_share, slow_header_closed: .slow_header.closed_by_proxy, slow_body_closed: .slow_body.closed_by_proxy, header_closed_p50_ms: .slow_header.closed_after_ms.p50, body_closed_p50_ms: .slow_body.closed_after_ms.p50}' "$OUT/r4.full.json")
  echo "result 4: $(jq -r '"normal traffic \(.ok)/\(.sent) = \(.success_share) succeeded (p99 \(.latency_ms.ok.p99) ms); slow headers: \(.slow_header.closed_by_proxy)/\(.slow_header.clients) closed by the proxy after \(.slow_header.closed_after_ms.p50) ms (p50, max \(.slow_header.closed_after_ms.max)); slow bodies: \(.slow_body.closed_by_proxy)/\(.slow_body.clients) closed after \(.slow_body.closed_after_ms.p50) ms (answers \(.slow_body.answers))"' "$OUT/r4.full.json")"
fi

# --- 5. the database down under load --------------------------------------------------------
if [[ " $RESULTS " == *" 5 "* ]]; then
  PG_BIN=${DUALROUTER_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 1; }
  # A throwaway cluster, as the tests start one (dualrouter_testkit::db): run as `postgres` when root.
  PG_DIR=$(mktemp -d /tmp/dualrouter-soak-pg-XXXXXX)
  chmod 755 "$PG_DIR"
  mkdir -p "$PG_DIR/data" "$PG_DIR/run"
  chmod 700 "$PG_DIR/data" "$PG_DIR/run"
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PG_DIR/data" "$PG_DIR/run"; as_pg=(runuser -u postgres --); fi
  pg() { local cmd=$1; shift; "${as_pg[@]}" "$PG_BIN/$cmd" "$@"; }
  PG_PORT=$(free_port)
  pg initdb -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-locale --no-sync >"$PG_DIR/initdb.log"
  PG_DATA=$PG_DIR/data
  pg_start() { pg pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/run/server.log" -o "-p $PG_PORT -h 127.0.0.1 -k $PG_DIR/run" -w -t 60 start >/dev/null; }
  pg_start
  DB_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
  start_proxy r5 "$DB_URL"
  total=$((DB_MARGIN + DB_DOWN + DB_MARGIN))
  say "5: $DB_RATE req/s for $total s; PostgreSQL stopped from $DB_MARGIN s to $((DB_MARGIN + DB_DOWN)) s"
  (
    sleep "$DB_MARGIN"; pg pg_ctl -D "$PG_DIR/data" -m fast -w stop >/dev/null; echo "stopped $(date +%s)"
    sleep "$DB_DOWN"; pg_start; echo "started $(date +%s)"
  ) >"$OUT/r5.db.log" 2>&1 &
  dbjob=$!
  "$LOAD" --threads 1 rate --url "$PROXY" --model ok --rate "$DB_RATE" --seconds "$total" --ids-out "$OUT/r5.ids" >"$OUT/r5.json"
  wait "$dbjob"
  sent_ids=$(sort -u "$OUT/r5.ids" | wc -l)
  # The spool is replayed once the database answers again (probing backs off up to 5 s).
  q() { psql -At "$DB_URL" -c "$1"; }
  for _ in $(seq 120); do
    [ "$(q 'select count(*) from routing_decisions')" -ge "$sent_ids" ] && break
    sleep 1
  done
  stop_proxy   # drains what is left
  q "select decision_id from routing_decisions" | sort >"$OUT/r5.db.ids"
  sort -u "$OUT/r5.ids" >"$OUT/r5.sent.ids"
  rows=$(q 'select count(*) from routing_decisions')
  distinct=$(q 'select count(distinct decision_id) from routing_decisions')
  lost=$(comm -23 "$OUT/r5.sent.ids" "$OUT/r5.db.ids" | wc -l)
  unknown=$(comm -13 "$OUT/r5.sent.ids" "$OUT/r5.db.ids" | wc -l)
  jq --argjson sent_ids "$sent_ids" --argjson rows "$rows" --argjson distinct "$distinct" \
     --argjson lost "$lost" --argjson unknown "$unknown" \
     '. + {decision_ids_received: $sent_ids, rows: $rows, doubled: ($rows - $distinct), lost: $lost,
           rows_not_sent: $unknown, client_errors: (.sent - .ok)}' "$OUT/r5.json" >"$OUT/r5.full.json"
  R[5]=$(jq -c '{client_errors, lost, doubled}' "$OUT/r5.full.json")
  echo "result 5: $(jq -r '"\(.sent) requests (\(.rate)/s for \(.seconds) s, PostgreSQL down '"$DB_DOWN"' s of it): answers \(.status), transport errors \(.transport_errors), client errors \(.client_errors); \(.decision_ids_received) decision ids, \(.rows) rows: lost \(.lost), doubled \(.doubled), rows without a sent id \(.rows_not_sent)"' "$OUT/r5.full.json")"
fi

# --- 6. plugin faults under load ------------------------------------------------------------
# Healthy traffic: routed requests (the code-features extractor runs on each) and requests to a
# healthy executor plugin (tw). Beside it, in the second run, requests to three faulty executor
# plugins: one loops (stopped at its 200 ms deadline), one allocates without end (stopped at
# 32 MiB), one traps. Each faulty plugin is out for 1 s after a failure, then tried again.
if [[ " $RESULTS " == *" 6 "* ]]; then
  exec_entry() { echo "  - { name: $1, plugin: $ROOT/plugins/dist/test_executor.wasm, timeout_ms: 200, memory_mb: 32, max_instances: 8, config: { prefix: \"$1-\" } }"; }
  PLUGINS="plugin_host: { cache_dir: $OUT/plugin-cache, unhealthy_cooldown_ms: 1000, health_interval_ms: 0 }
executors:
$(exec_entry tw)
$(exec_entry tl)
$(exec_entry ta)
$(exec_entry tt)
feature_extractors:
  - { name: code, plugin: $ROOT/plugins/dist/code_features.wasm }"
  start_proxy r6 "sqlite://$OUT/r6/d.db" "$PLUGINS"
  healthy_load() {  # $1: file prefix
    "$LOAD" --threads 1 rate --url "$PROXY" --model auto --rate "$PLUGIN_RATE" --seconds "$PLUGIN_SECONDS" >"$OUT/$1.auto.json" &
    local a=$!
    "$LOAD" --threads 1 rate --url "$PROXY" --model tw-test-echo --rate "$PLUGIN_RATE" --seconds "$PLUGIN_SECONDS" >"$OUT/$1.exec.json"
    wait "$a"
  }
  say "6: $PLUGIN_RATE req/s routed + $PLUGIN_RATE req/s to a healthy executor plugin, $PLUGIN_SECONDS s, without faults"
  healthy_load r6.base
  say "6: the same beside $PLUGIN_FAULT_RATE req/s to each of a looping, an allocating and a trapping plugin"
  fpids=()
  for m in tl-test-loop ta-test-alloc tt-test-trap; do
    "$LOAD" --threads 1 rate --url "$PROXY" --model "$m" --rate "$PLUGIN_FAULT_RATE" --seconds "$PLUGIN_SECONDS" >"$OUT/r6.fault.$m.json" &
    fpids+=($!)
  done
  healthy_load r6.faults
  wait "${fpids[@]}"
  alive=$(curl -sf "$PROXY/healthz" >/dev/null && echo true || echo false)
  errors=$(curl -sf "http://$(jq -r .admin "$OUT/r6/ready.json")/metrics" | grep '^dualrouter_plugin_errors_total' | tr '\n' ';' || true)
  stop_proxy
  python3 - "$OUT" "$alive" "$errors" >"$OUT/r6.full.json" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda f: json.load(open(f"{out}/{f}"))
r = {"alive_after": sys.argv[2] == "true", "plugin_errors": sys.argv[3]}
for kind in ("auto", "exec"):
    b, f = load(f"r6.base.{kind}.json"), load(f"r6.faults.{kind}.json")
    pb, pf = b["latency_ms"]["ok"]["p99"], f["latency_ms"]["ok"]["p99"]
    r[kind] = {"p99_ms_without": pb, "p99_ms_with": pf, "ratio": round(pf / pb, 2) if pb else None,
               "ok_without": b["ok"], "ok_with": f["ok"], "sent_with": f["sent"]}
r["faulty"] = {m: load(f"r6.fault.{m}.json")["status"] for m in ("tl-test-loop", "ta-test-alloc", "tt-test-trap")}
print(json.dumps(r))
PY
  R[6]=$(jq -c '{routed_p99_ratio: .auto.ratio, executor_p99_ratio: .exec.ratio, alive_after}' "$OUT/r6.full.json")
  echo "result 6: $(jq -r '"routed p99 \(.auto.p99_ms_without) → \(.auto.p99_ms_with) ms (\(.auto.ratio)x, \(.auto.ok_with)/\(.auto.sent_with) ok); healthy executor p99 \(.exec.p99_ms_without) → \(.exec.p99_ms_with) ms (\(.exec.ratio)x, \(.exec.ok_with)/\(.exec.sent_with) ok); faulty plugins answered \(.faulty); alive \(.alive_after)"' "$OUT/r6.full.json")"
fi

# --- summary ---------------------------------------------------------------------------------
{
  echo "{"
  echo "  \"machine\": \"$machine\","
  echo "  \"load_average_at_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
  first=1
  for k in 1 2 3 4 5 6; do
    [ -n "${R[$k]:-}" ] || continue
    [ $first = 1 ] || echo ","
    first=0
    printf '  "result_%s": %s' "$k" "${R[$k]}"
  done
  echo ""
  echo "}"
} >"$OUT/summary.json"
jq . "$OUT/summary.json"
