#!/usr/bin/env bash
# End-to-end for the Braze-compatible gateway: `go run ./cmd/sendid-worker -dev`
# on free loopback ports (never the defaults), then
#   1. the three ways people call Braze today (examples/), aimed at sendid:
#      curl.sh and create_send_id.py print 201 and Braze's success body;
#      the Postman collection, unchanged, runs under newman and gets 201;
#   2. 120 requests from 8 concurrent curl loops against a cap of 100 per day
#      with a burst of 100: exactly 100 × 201, 20 × 202 queued with ETAs on
#      the next day, and the simulator saw exactly 100 calls.
# Installs what is missing (python3, node/npm via apt-get; newman@6 into a
# temporary folder). Bounded: every wait has a timeout; everything started is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
groups=() # process groups of the workers started (go run and its child)
loops=()  # the curl loops
cleanup() {
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  for p in "${loops[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "e2e-gateway: FAIL: $*" >&2; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done >&2; exit 1; }

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v curl >/dev/null || need_apt+=(curl)
command -v setsid >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "e2e-gateway: installing ${need_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
echo "e2e-gateway: installing newman@6 into a temporary folder"
timeout 300 npm install --prefix "$work/newman" --no-audit --no-fund --loglevel=error newman@6 >"$work/npm.log" 2>&1 \
  || fail "npm install newman@6"
newman="$work/newman/node_modules/.bin/newman"
go build -o /dev/null ./cmd/sendid-worker # compile once, outside the timed waits

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_until() { # seconds, description, command...
  local n=$(( $1 * 10 )) what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

# start_dev NAME [ENV=VALUE...]: `go run ./cmd/sendid-worker -dev` in a
# process group of its own (so that SIGTERM reaches the worker, not only the
# go command), with every port free and a fresh data folder.
start_dev() {
  local name=$1; shift
  NATS_PORT=$(port); HTTP_PORT=$(port); GW_PORT=$(port); GWS_PORT=$(port)
  mkdir -p "$work/$name"
  cat >"$work/$name/sendid.yaml" <<EOF
gateway:
  addr: 127.0.0.1:$GW_PORT
dev:
  data_dir: $work/$name/data
  gateway_tls_addr: 127.0.0.1:$GWS_PORT
EOF
  env "$@" SENDID_CONFIG="$work/$name/sendid.yaml" SENDID_NATS_URL="nats://127.0.0.1:$NATS_PORT" \
    SENDID_HTTP_ADDR="127.0.0.1:$HTTP_PORT" SENDID_LOG_FORMAT=json \
    setsid go run ./cmd/sendid-worker -dev >"$work/$name.log" 2>&1 &
  DEV_PID=$!; groups+=("$DEV_PID")
  wait_until 90 "$name /readyz" curl -sf "http://127.0.0.1:$HTTP_PORT/readyz"
  wait_until 10 "$name banner" grep -q 'sends/id/create' "$work/$name.log"
  SIM_URL=$(grep -o 'Braze simulator *http://[0-9.:]*' "$work/$name.log" | grep -o 'http://.*')
}

stop_dev() { # name
  kill -TERM -- "-$DEV_PID"
  for _ in $(seq 300); do kill -0 -- "-$DEV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 -- "-$DEV_PID" 2>/dev/null && fail "$1 did not stop within 30s"
  grep -q '"sendid-worker stopped"' "$work/$1.log" || fail "$1: no clean-stop log line"
}

# 1. The three examples.
start_dev examples
GW="http://127.0.0.1:$GW_PORT"; GWS="127.0.0.1:$GWS_PORT"
success='{"message":"success","send_id":"send_identifier"}'

out=$(SENDID_URL="$GW" YOUR_REST_API_KEY=dev-key examples/curl.sh -sS -w '%{http_code}\n')
echo "curl.sh:"; echo "$out" | sed 's/^/  /'
[ "$(echo "$out" | sed -n 1p)" = "$success" ] && [ "$(echo "$out" | sed -n 2p)" = 201 ] || fail "curl.sh printed: $out"

out=$(SENDID_URL="https://$GWS" SENDID_INSECURE=1 YOUR_REST_API_KEY=dev-key python3 examples/create_send_id.py)
echo "create_send_id.py:"; echo "$out" | sed 's/^/  /'
[ "$(echo "$out" | sed -n 1p)" = 201 ] && [ "$(echo "$out" | sed -n 2p)" = "$success" ] || fail "create_send_id.py printed: $out"

timeout 120 "$newman" run examples/sendid.postman_collection.json --insecure \
  --env-var "instance_url=$GWS" --env-var api_key=dev-key \
  --reporters cli,json --reporter-json-export "$work/newman.json" >"$work/newman.log" 2>&1 || fail "newman run"
code=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["run"]; print(" ".join(str(e["response"]["code"]) for e in r["executions"]))' "$work/newman.json")
echo "newman: Create Send IDs For Message Send Tracking → $code"
[ "$code" = 201 ] || fail "newman's request got $code, want 201"
stop_dev examples

# 2. 120 requests, 8 concurrent curl loops, cap 100 per day, burst 100.
left=$(( 86400 - $(date -u +%s) % 86400 ))
if [ "$left" -lt 180 ]; then echo "e2e-gateway: waiting ${left}s for the UTC day to turn"; sleep $(( left + 2 )); fi
start_dev load SENDID_DAILY_CAP=100 SENDID_BURST=100
GW="http://127.0.0.1:$GW_PORT"
for loop in 1 2 3 4 5 6 7 8; do
  (
    for i in $(seq 15); do
      curl -sS -m 70 -o "$work/load-$loop-$i.json" -w '%{http_code}\n' -X POST "$GW/sends/id/create" \
        -H 'Content-Type: application/json' -H 'Authorization: Bearer dev-key' \
        -d "{\"campaign_id\":\"campaign_identifier\",\"send_id\":\"load-$loop-$i\"}"
    done >"$work/codes-$loop.txt"
  ) &
  loops+=($!)
done
wait "${loops[@]}" # bounded: 15 requests of at most 70s each per loop
[ "$(cat "$work"/codes-*.txt | wc -l)" -eq 120 ] || fail "the curl loops gave $(cat "$work"/codes-*.txt | wc -l) answers, want 120"
created=$(cat "$work"/codes-*.txt | grep -c '^201$' || true)
queued=$(cat "$work"/codes-*.txt | grep -c '^202$' || true)
tomorrow=$(date -u -d tomorrow +%F)
read -r etas_ok sim_calls < <(python3 - "$work" "$tomorrow" "$SIM_URL" <<'EOF'
import glob, json, sys, urllib.request
work, tomorrow, sim = sys.argv[1:4]
ok = 0
for f in glob.glob(work + "/load-*.json"):
    b = json.load(open(f))
    if b.get("message") == "queued" and b.get("eta", "").startswith(tomorrow) \
            and b.get("deferred_until") == tomorrow + "T00:00:00Z" and b.get("job_id"):
        ok += 1
stats = json.load(urllib.request.urlopen(sim + "/_sim/stats", timeout=10))
print(ok, stats["Calls"])
EOF
)
echo "load: $created × 201, $queued × 202 ($etas_ok with eta and deferred_until on $tomorrow); simulator calls: $sim_calls"
[ "$created" -eq 100 ] || fail "201 answers: $created, want 100"
[ "$queued" -eq 20 ] || fail "202 answers: $queued, want 20"
[ "$etas_ok" -eq 20 ] || fail "queued answers with an ETA on $tomorrow: $etas_ok, want 20"
[ "$sim_calls" -eq 100 ] || fail "simulator calls: $sim_calls, want 100"
stop_dev load

echo "e2e-gateway passed"
