#!/usr/bin/env bash
# Creates the kind cluster "chatify" (deploy/kind/kind-cluster.yaml) and deploys everything to it:
# builds the chat API and Flink job images, loads them into the cluster, applies the kind overlay
# (deploy/overlays/kind) one component at a time in dependency order and waits until each is ready.
# Idempotent: run it again after a change to rebuild, reload and re-apply.
# Needs kind, kubectl and docker (with its daemon running); without them it stops before doing anything.
#   scripts/up.sh                   (CHATIFY_SKIP_BUILD=1: use the images already built)
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
require_tools kind kubectl docker
require_docker_daemon
cd "$CHATIFY_ROOT"

if kind_cluster_exists; then
  log "kind cluster $KIND_CLUSTER exists"
else
  log "creating kind cluster $KIND_CLUSTER"
  kind create cluster --name "$KIND_CLUSTER" --config deploy/kind/kind-cluster.yaml --wait 180s
fi

if [ "${CHATIFY_SKIP_BUILD:-}" != 1 ]; then
  log "building $CHAT_API_IMAGE"
  docker build -f "$CHAT_API_DOCKERFILE" -t "$CHAT_API_IMAGE" .
  log "building $FLINK_JOBS_IMAGE"
  docker build -f "$FLINK_JOBS_DOCKERFILE" -t "$FLINK_JOBS_IMAGE" .
fi
log "loading the images into the cluster"
kind load docker-image --name "$KIND_CLUSTER" "$CHAT_API_IMAGE" "$FLINK_JOBS_IMAGE"

rendered="$(mktemp)"
trap 'rm -f "$rendered"' EXIT
kubectl kustomize deploy/overlays/kind >"$rendered"

kubectl --context "$KUBE_CONTEXT" apply -f deploy/k8s/00-namespace.yaml
# the JWT key: random, made once, kept across runs (tokens: see README "Deploy")
if ! kctl get secret chatify-chat-api-secrets >/dev/null 2>&1; then
  log "creating Secret chatify-chat-api-secrets (a random HS256 key)"
  kctl create secret generic chatify-chat-api-secrets \
    --from-literal=auth-hs256-secret="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
fi

# wait_for COMPONENT TIMEOUT: every Deployment and StatefulSet of the component rolled out, every Job done
wait_for() {
  local selector="app.kubernetes.io/component=$1" workload
  for workload in $(kctl get deployments,statefulsets -l "$selector" -o name); do
    kctl rollout status "$workload" --timeout="$2"
  done
  if [ -n "$(kctl get jobs -l "$selector" -o name)" ]; then
    kctl wait --for=condition=complete job -l "$selector" --timeout="$2"
  fi
}

# dependencies first: the chat API waits for Kafka's topics and ScyllaDB at startup
for step in message-broker:600s cache:180s database:600s logging:600s stream-processor:600s kafka-ui:300s api:600s; do
  component="${step%%:*}"
  log "applying $component"
  kctl apply -f "$rendered" -l "app.kubernetes.io/component=$component"
  wait_for "$component" "${step#*:}"
done

log "ready. Chat API http://localhost:8080 (health: /health/ready), Kafka localhost:9092, ScyllaDB localhost:9042,"
log "Redis localhost:6379, Elasticsearch http://localhost:9200, Kibana http://localhost:5601,"
log "AKHQ http://localhost:8081, Flink http://localhost:8082. scripts/status.sh, scripts/logs-chatify.sh, scripts/down.sh"
