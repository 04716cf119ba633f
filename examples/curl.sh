#!/bin/sh
# Braze's documented request for POST /sends/id/create ("Create send IDs for
# message send tracking"), with only the host changed: it goes to sendid's
# gateway, which answers in Braze's shapes but keeps the daily cap, never
# sends a pair twice, paces the calls and queues what does not fit today.
#
#   SENDID_URL=http://127.0.0.1:8081 YOUR_REST_API_KEY=dev-key examples/curl.sh
#
# Extra arguments go to curl (e.g. -k for the -dev HTTPS certificate, or
# -w '%{http_code}' to print the status).
SENDID_URL=${SENDID_URL:-http://127.0.0.1:8081}
YOUR_REST_API_KEY=${YOUR_REST_API_KEY:-dev-key}

curl --location --request POST "$SENDID_URL/sends/id/create" \
--header 'Content-Type: application/json' \
--header "Authorization: Bearer $YOUR_REST_API_KEY" \
--data-raw '{
  "campaign_id": "campaign_identifier",
  "send_id": "send_identifier"
}' "$@"
