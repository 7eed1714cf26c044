#!/usr/bin/env bash
# Follows the chat API's logs from every pod, each line prefixed with its pod (JSON lines).
# Extra arguments go to kubectl logs (e.g. --since=10m, --tail=-1, --previous).
# Needs kubectl; context kind-chatify (CHATIFY_KUBE_CONTEXT for another cluster).
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
require_tools kubectl
require_cluster
exec kubectl --context "$KUBE_CONTEXT" --namespace "$NAMESPACE" logs --follow --prefix --tail=100 \
  --max-log-requests=20 --selector app.kubernetes.io/name=chatify-chat-api --container chatify-chat-api "$@"
