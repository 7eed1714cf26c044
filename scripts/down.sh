#!/usr/bin/env bash
# Deletes the kind cluster "chatify" and everything in it (volumes included).
# Needs kind and docker; without them it stops before doing anything.
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
require_tools kind docker
require_docker_daemon
if ! kind_cluster_exists; then
  log "no kind cluster $KIND_CLUSTER: nothing to delete"
  exit 0
fi
log "deleting kind cluster $KIND_CLUSTER"
kind delete cluster --name "$KIND_CLUSTER"
