#!/usr/bin/env bash
# Forwards the services to localhost for a cluster without kind's host port mappings (the production
# overlay has no NodePorts): chat API 8080, AKHQ 8081, Flink UI 8082, Kibana 5601, Elasticsearch 9200,
# Redis 6379, ScyllaDB 9042 (PORT_OFFSET=10000 moves them all, e.g. next to a kind cluster that holds
# them). Kafka is not forwarded: its brokers advertise in-cluster names. Ctrl-C stops every forward.
# Needs kubectl; context kind-chatify (CHATIFY_KUBE_CONTEXT for another cluster).
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
require_tools kubectl
require_cluster
offset="${PORT_OFFSET:-0}"
[[ $offset =~ ^[0-9]+$ ]] || die "PORT_OFFSET must be a number (got '$offset')"

forwards=(
  "chatify-chat-api 8080 80"
  "chatify-akhq 8081 8080"
  "chatify-flink-jobmanager 8082 8081"
  "chatify-kibana 5601 5601"
  "chatify-elastic 9200 9200"
  "chatify-redis 6379 6379"
  "chatify-scylla 9042 9042"
)
pids=()
stop_forwards() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
}
trap stop_forwards EXIT
trap 'exit 130' INT TERM
for forward in "${forwards[@]}"; do
  read -r service local remote <<<"$forward"
  local_port=$((local + offset))
  kctl port-forward "service/$service" "$local_port:$remote" >/dev/null &
  pids+=("$!")
  log "$service: localhost:$local_port"
done
log "forwarding (Ctrl-C stops)"
wait
