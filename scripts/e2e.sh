#!/usr/bin/env bash
# End-to-end: real nats-server and brazesim processes, the sendid-worker
# binary, and jobs submitted and read with the standard nats CLI.
# Bounded: every wait has a timeout; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "e2e: FAIL: $*" >&2; for f in "$work"/*.log; do echo "--- $f"; tail -20 "$f"; done >&2; exit 1; }

export GOBIN="$work/bin"
echo "e2e: installing nats-server v2.15.2 and nats CLI v0.5.0"
go install github.com/nats-io/nats-server/v2@v2.15.2
go install github.com/nats-io/natscli/nats@v0.5.0
go build -o "$GOBIN/sendid-worker" ./cmd/sendid-worker
go build -o "$GOBIN/brazesim" ./cmd/brazesim
PATH="$GOBIN:$PATH"

port() { # a free loopback port (python3 when present, else a random high port)
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $(( 20000 + RANDOM % 20000 ))
}
NATS_PORT=$(port); SIM_PORT=$(port); HTTP_PORT=$(port)
NATS_URL="nats://127.0.0.1:$NATS_PORT"

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$work/js" >"$work/nats-server.log" 2>&1 & pids+=($!)
brazesim -addr "127.0.0.1:$SIM_PORT" -cap 5 -period 10s -keys e2e-key >"$work/brazesim.log" 2>&1 & pids+=($!)

wait_until() { # seconds, description, command...
  local n=$(( $1 * 10 )) what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}
wait_until 20 "nats-server" nats --server "$NATS_URL" server check connection
wait_until 20 "brazesim" curl -s "http://127.0.0.1:$SIM_PORT/"

SENDID_NATS_URL="$NATS_URL" SENDID_BRAZE_URL="http://127.0.0.1:$SIM_PORT" SENDID_BRAZE_API_KEY=e2e-key \
SENDID_DAILY_CAP=5 SENDID_BURST=5 SENDID_QUOTA_PERIOD=10s SENDID_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
  sendid-worker >"$work/worker.log" 2>&1 & worker=$!; pids+=($worker)
wait_until 30 "worker /readyz" curl -sf "http://127.0.0.1:$HTTP_PORT/readyz"

# 7 valid jobs (cap 5 per 10s: 2 are deferred to the next period), one
# repeated pair, one malformed job, one refused reply subject: 10 finals.
nats --server "$NATS_URL" sub 'e2e.>' --raw --count 12 >"$work/results.jsonl" 2>"$work/sub.log" & sub=$!; pids+=($sub)
sleep 0.5
# Start just after a 10 s period boundary, so the first five jobs share a period.
sleep "$(( 10 - $(date +%s) % 10 )).2"
for i in 1 2 3 4 5 6 7; do
  nats --server "$NATS_URL" pub sendid.jobs "{\"campaign_id\":\"c1\",\"send_id\":\"s$i\",\"id\":\"job-$i\",\"reply_to\":\"e2e.r.$i\"}" >/dev/null 2>&1
done
nats --server "$NATS_URL" pub sendid.jobs '{"campaign_id":"c1","send_id":"s1","id":"dup","reply_to":"e2e.r.dup"}' >/dev/null 2>&1
nats --server "$NATS_URL" pub sendid.jobs '{"campaign_id":42,"reply_to":"e2e.r.bad"}' >/dev/null 2>&1
nats --server "$NATS_URL" pub sendid.jobs '{"campaign_id":"c1","id":"loop","reply_to":"sendid.jobs.default"}' >/dev/null 2>&1

for _ in $(seq 400); do
  [ "$(grep -c '"status":"created"' "$work/results.jsonl" 2>/dev/null)" -ge 8 ] && break
  sleep 0.1
done
count() { grep -c "$1" "$work/results.jsonl" || true; }
created=$(count '"status":"created"')
deferred=$(count '"status":"deferred"')
dups=$(count '"duplicate":true')
invalid=$(count '"code":"invalid_job"')
[ "$created" -eq 8 ] || fail "created results: $created, want 8 (7 jobs + 1 duplicate)"
[ "$deferred" -eq 2 ] || fail "deferred notices: $deferred, want 2"
[ "$dups" -eq 1 ] || fail "duplicate answers: $dups, want 1"
[ "$invalid" -eq 1 ] || fail "invalid_job results: $invalid, want 1"
# The refused reply subject is answered on the group's results subject.
refused=$(nats --server "$NATS_URL" stream get SENDID_RESULTS --last-for sendid.results.default 2>/dev/null | grep -c invalid_reply_to || true)
[ "$refused" -ge 1 ] || fail "no invalid_reply_to result on sendid.results.default"

curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" | grep -q 'sendid_jobs_total{app_group="default",status="created"} 8' \
  || fail "metrics do not show 8 created jobs"

kill -TERM "$worker"
code=0; wait "$worker" || code=$?
[ "$code" -eq 0 ] || fail "worker exit code after SIGTERM: $code"
grep -q "sendid-worker stopped" "$work/worker.log" || fail "no clean-stop log line"

echo "e2e: 8 created (1 duplicate answered from the record), 2 deferred, 1 invalid_job, 1 invalid_reply_to; worker exited 0"
echo "e2e passed"
