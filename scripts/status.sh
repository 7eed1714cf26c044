#!/usr/bin/env bash
# What runs in namespace chatify: workloads, pods, services, volumes, jobs, and the latest events.
# Needs kubectl; context kind-chatify (CHATIFY_KUBE_CONTEXT for another cluster).
set -euo pipefail
source "$(dirname "$0")/../deploy/lib.sh"
require_tools kubectl
require_cluster
kctl get deployments,statefulsets,jobs,horizontalpodautoscalers,poddisruptionbudgets
echo
kctl get pods -o wide
echo
kctl get services,persistentvolumeclaims
echo
echo "latest events:"
kctl get events --sort-by=.lastTimestamp | tail -n 20
