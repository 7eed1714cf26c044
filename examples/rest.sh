#!/usr/bin/env bash
# The REST API with curl: wait until ready, send, read the history, see a validation error.
#   pnpm --filter @chatify/examples rest      (or: bash examples/rest.sh)
#   (CHATIFY_URL, default http://localhost:8080; CHATIFY_TOKEN when the server requires authentication)
set -euo pipefail
server="${CHATIFY_URL:-http://localhost:8080}"
auth=()
if [ -n "${CHATIFY_TOKEN:-}" ]; then auth=(-H "authorization: Bearer $CHATIFY_TOKEN"); fi

echo "# wait until the server is ready (at most 60 s)"
deadline=$((SECONDS + 60))
until curl -sf "$server/health/ready" >/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then echo "$server is not ready" >&2; exit 1; fi
  sleep 1
done

echo "# send a message: its EnrichedChatEvent {chatEvent, partition, offset}"
curl -sS --fail-with-body "${auth[@]}" -X POST "$server/api/chat/send" -H 'content-type: application/json' \
     -d '{"scopeType":0,"scopeId":"general","text":"Hello from curl!"}'
echo

echo "# the scope's history, newest first (the history writer stores a send a moment after it)"
for _ in $(seq 50); do
  history=$(curl -sS --fail-with-body "${auth[@]}" "$server/api/chat/scopes/0/general/history?limit=3")
  [[ $history == *'Hello from curl!'* ]] && break
  sleep 0.1
done
echo "$history"

echo "# an invalid send: a 400 ProblemDetails naming each offending field"
curl -sS "${auth[@]}" -w '\nHTTP %{http_code}\n' -X POST "$server/api/chat/send" -H 'content-type: application/json' \
     -H 'x-correlation-id: demo-1' -d '{"scopeType":0,"scopeId":" ","text":""}'
